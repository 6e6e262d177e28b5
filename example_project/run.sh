#!/usr/bin/env bash
# Set up everything, then run the example site (start Redis if needed, migrate,
# create the demo admin, serve http://127.0.0.1:8000/). Arguments go to tiercache_demo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash .ci/setup.sh
exec .venv/bin/python example_project/manage.py tiercache_demo "$@"
