#!/usr/bin/env bash
# Set up (idempotent) and run the main job. Extra arguments are passed on as config overrides.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
source scripts/env.sh
exec .venv/bin/python scripts/sandbox_demo.py "$@"
