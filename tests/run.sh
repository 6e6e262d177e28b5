#!/usr/bin/env bash
# Set up everything, then run lint, format check, types and the whole test suite.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k breaker -x`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash .ci/setup.sh

step() {
    printf '==> %s\n' "$*" >&2
    "$@"
}

step .venv/bin/ruff check .
step .venv/bin/ruff format --check .
step .venv/bin/mypy --strict tiercache django_tiercache

# The tests start their own redis-server on free ports; never the one on 6379.
status=0
step .venv/bin/python -m pytest -q "$@" || status=$?
if [[ "$status" -eq 5 ]]; then
    echo "tests/run.sh: pytest collected no tests; that is a failure here." >&2
    exit 1
fi
exit "$status"
