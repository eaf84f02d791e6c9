#!/usr/bin/env bash
# One command for a new user: set up, then run the agent on simulated sensors against a private
# mosquitto on 127.0.0.1 and print every message a subscriber receives.
# Extra arguments go to `edgeagent demo` (default: --seconds 30; use --seconds 0 to run until Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
if [ "$#" -eq 0 ]; then set -- --seconds 30; fi
exec .venv/bin/edgeagent demo "$@"
