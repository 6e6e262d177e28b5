"""Another process holding a key in L1, for tests/tiercache/test_topology_failover.py.

Run as ``python -m tests.tiercache.topology_worker URL OPTIONS_JSON KEY[,KEY...]`` from
the repository root. It answers each line on stdin with the value it reads now of the
first KEY and whether L1 still holds a copy, and the same for every KEY ("values",
"held_keys"); a read fills L1.
"""

from __future__ import annotations

import json
import sys

from tiercache import TieredCache
from tiercache.memory import MISSING


def main() -> None:
    url, options, keys = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3].split(",")
    if "sentinels" in options:
        options["sentinels"] = [tuple(pair) for pair in options["sentinels"]]
    cache = TieredCache.from_url(url, l1_ttl=300, **options)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        values = {key: cache.get(key).value_or(None) for key in keys}
        held = [k for k in keys if cache.l1 is not None and cache.l1.get("tc:" + k) is not MISSING]
        answer = {"value": values[keys[0]], "held": keys[0] in held}
        print(json.dumps({**answer, "values": values, "held_keys": held}), flush=True)
    cache.close()


if __name__ == "__main__":
    main()
