"""A stand-in for one worker process of a site: serve requests, push metrics, report.

Run as `python metrics_worker.py REQUESTS` with TIERCACHE_TEST_REDIS_URL set; prints this
process's own stats as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.django_tiercache.django_setup import configure_django


def main(requests: int) -> None:
    """Serve `requests` requests through the middleware, use the cache once outside one, push."""
    configure_django()
    from django.core.cache import cache
    from django.test import Client

    from django_tiercache.metrics import metrics_for

    client = Client()
    for _ in range(requests):
        assert client.get("/user-and-provider/").status_code == 200
    cache.get("accounts:outside-any-request")
    metrics = metrics_for("default")
    assert metrics.push(), "the push into Redis failed"
    print(json.dumps({"stats": metrics.get_all_stats(), "counts": metrics.snapshot()}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
