"""Another process holding a key in L1, for tests/tiercache/test_topology_failover.py.

Run as ``python -m tests.tiercache.topology_worker URL OPTIONS_JSON KEY`` from the
repository root. It reads KEY (filling its L1), prints one JSON line, then answers each
line on stdin with the value it reads now and whether L1 still holds a copy.
"""

from __future__ import annotations

import json
import sys

from tiercache import TieredCache


def main() -> None:
    url, options, key = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    if "sentinels" in options:
        options["sentinels"] = [tuple(pair) for pair in options["sentinels"]]
    cache = TieredCache.from_url(url, l1_ttl=300, **options)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        value = cache.get(key).value_or(None)
        held = cache.l1 is not None and cache.l1.get("tc:" + key) is not None
        print(json.dumps({"value": value, "held": held}), flush=True)
    cache.close()


if __name__ == "__main__":
    main()
