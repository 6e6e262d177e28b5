"""Another process of the site, for test_django_redis_api's cross-process coherence test.

Run as `python extended_worker.py` with TIERCACHE_TEST_REDIS_URL set. Each stdin line is
`hold KEY` (read KEY into this process's L1, answer what it read and whether L1 holds
it) or `await KEY VALUE` (read KEY until it is VALUE, or 10 s pass; answer what it read).
VALUE is JSON (`null` for a miss). Answers are JSON lines on stdout.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.django_tiercache.django_setup import configure_django

DEADLINE = 10.0


def main() -> None:
    """Answer the test's commands until stdin closes."""
    configure_django()
    from django.core.cache import cache

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        verb, key, *rest = line.split(maxsplit=2)
        if verb == "hold":
            value = cache.get(key)
            held = cache.l1.entry(f"dj:{cache.make_and_validate_key(key)}") is not None
            print(json.dumps({"value": value, "held": held}), flush=True)
            continue
        wanted = json.loads(rest[0])
        started = time.monotonic()
        while (value := cache.get(key)) != wanted and time.monotonic() - started < DEADLINE:
            time.sleep(0.002)
        print(json.dumps({"value": value}), flush=True)


if __name__ == "__main__":
    main()
