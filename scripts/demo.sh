#!/usr/bin/env bash
# The demo command: installs the archiver into .venv and runs the whole pipeline locally on embedded
# defaults (SQLite, a local S3 server, the simulator as Bandwidth), with demo traffic. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh
ensure_venv demo

exec .venv/bin/archiver demo "$@"
