"""A producer process that outlives outages: ``python -m tests.producer``.

Each line on stdin is ``URL<TAB>EVENT-JSON``. The process calls
``deliver.delay(url, event)`` for it, and when that fails (Redis unreachable, a
failover under way) calls it again with the same event, which creating a
delivery is idempotent on, until it is accepted or ``PRODUCER_GIVE_UP_SECONDS``
(30) pass. For each line it prints one JSON line: the delivery ``id``, the
``at`` time (epoch seconds) it was accepted, and how many calls were ``refused``
first; or ``{"error": ...}`` when it gave up. It reads the environment's
``WEBHOOKS_*`` settings like any producer.
"""

from __future__ import annotations

import json
import os
import sys
import time

from webhooks import deliver


def main() -> None:
    give_up = float(os.environ.get("PRODUCER_GIVE_UP_SECONDS", "30"))
    for line in sys.stdin:
        url, _, body = line.rstrip("\n").partition("\t")
        event = json.loads(body)
        refused, deadline = 0, time.monotonic() + give_up
        while True:
            try:
                delivery_id = deliver.delay(url, event).id
            except Exception as error:
                refused += 1
                if time.monotonic() > deadline:
                    print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
                    break
                time.sleep(0.05)
                continue
            print(json.dumps({"id": delivery_id, "at": time.time(), "refused": refused}),
                  flush=True)
            break


if __name__ == "__main__":
    main()
