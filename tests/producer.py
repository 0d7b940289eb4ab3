"""A producer process that outlives outages: ``python -m tests.producer``, and
:class:`Producer`, the tests' handle on one.

Each line on stdin is ``URL<TAB>EVENT-JSON``. The process calls
``deliver.apply_async((url, event), queue=PRODUCER_QUEUE)`` for it (the default
queue when that is unset), and when that fails (Redis unreachable, a
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
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    from webhooks import deliver

    give_up = float(os.environ.get("PRODUCER_GIVE_UP_SECONDS", "30"))
    queue = os.environ.get("PRODUCER_QUEUE") or None
    for line in sys.stdin:
        url, _, body = line.rstrip("\n").partition("\t")
        event = json.loads(body)
        refused, deadline = 0, time.monotonic() + give_up
        while True:
            try:
                delivery_id = deliver.apply_async((url, event), queue=queue).id
            except Exception as error:
                refused += 1
                if time.monotonic() > deadline:
                    print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
                    break
                time.sleep(0.05)
                continue
            print(
                json.dumps({"id": delivery_id, "at": time.time(), "refused": refused}), flush=True
            )
            break


class Producer:
    """``python -m tests.producer``: a long-lived producer process, fed line by line.
    (The process must not import tests.conftest, which sets WEBHOOKS_REDIS_URL.)"""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.producer"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.accepted: list[dict[str, object]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.accepted.append(json.loads(line))

    def send(self, url: str, events: list[dict[str, object]]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("".join(f"{url}\t{json.dumps(e)}\n" for e in events))
        self.process.stdin.flush()

    def wait(self, count: int, seconds: float) -> list[dict[str, object]]:
        """The first ``count`` answers, once there are that many."""
        deadline = time.monotonic() + seconds
        while len(self.accepted) < count:
            assert time.monotonic() < deadline, (
                f"the producer had {len(self.accepted)} of {count} accepted"
            )
            time.sleep(0.02)
        return self.accepted[:count]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


if __name__ == "__main__":
    main()
