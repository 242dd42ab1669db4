#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/env.sh
# The local SWE-style set's images (their sdists come from the package index): built here, so tests never download.
.venv/bin/roll eval swebench-local build
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${@:-tests}"
