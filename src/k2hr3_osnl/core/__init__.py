"""The pure part: what each notification means and how its deletion is settled.

The decision per notification (events), the delivery policy (handler) with its breaker,
parking lot and duplicate window, the status policy of K2HR3's answers, and the shared
types. Nothing here imports oslo.messaging, oslo.config, kombu or aiohttp (a test checks
it): the edges hand it notifications and a client, and act on the results it returns.
"""
