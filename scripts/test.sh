#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: installs what it needs, lints, then pytest.
# Extra arguments go to pytest, e.g. bash scripts/test.sh -k outbox -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/ruff check .
exec .venv/bin/pytest "$@"  # not "python -m": the installed package must win over ./edgeagent
