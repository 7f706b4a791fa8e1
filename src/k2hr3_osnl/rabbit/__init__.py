"""The edge to RabbitMQ: oslo.messaging's listener, and the one seam to its internals.

A batch is polled (batching), read and judged message by message (dispatcher), handed to
the endpoint's priority-named methods (endpoint), and acknowledged or handed back from
the results the core returns. seam.py is the only module that touches oslo.messaging's
private parts.
"""
