"""Summarise a py-spy ``--format raw`` profile: where the GIL-holding time goes.

    python profile_summary.py PROFILE.raw [TOP]

Prints the share of samples spent under each part of the stack (inclusive), and the
functions with the most samples of their own (self).
"""

from __future__ import annotations

import collections
import re
import sys

#: Parts of the hot path, by a pattern on a frame ("function (file:line)").
PARTS = {
    "oslo.messaging poll + kombu/amqp receive": r"_runner|poll \(oslo_messaging|drain_events",
    "dispatch of a batch (read, filter)": r"PoisonSafeDispatcher\.dispatch ",
    "our endpoint (info, a whole batch)": r"NotificationEndpoint\.info",
    "  decide (parse + validate)": r"k2hr3_osnl/events\.py",
    "  K2HR3 calls: hand-off to the loop and back, log lines": r"RoleClient\.delete_many",
    "  logging": r"Logger\._log|Logger\.info|Logger\.log|Handler\.handle \(logging",
    "  breaker / dedup": r"breaker\.py|recent\.py",
    "K2HR3 calls on the event loop thread (aiohttp)": r"BaseEventLoop\.run_forever",
    "ack / requeue on the connection thread": r"acknowledge|_do_ack|message_operations",
    "futurist executor / thread pool": r"futurist",
}


def main(path: str, top: str = "25") -> int:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as raw:
        for line in raw:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            own[re.sub(r":\d+\)", ")", frames[-1])] += n
            for part, pattern in PARTS.items():
                if any(re.search(pattern, frame) for frame in frames):
                    inclusive[part] += n
    print(f"{total} samples")
    for part in PARTS:
        print(f"{100 * inclusive[part] / total:5.1f}%  {part}")
    print("\nself time:")
    for frame, n in own.most_common(int(top)):
        print(f"{100 * n / total:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
