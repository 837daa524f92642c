#!/usr/bin/env bash
# The test command: installs everything into .venv, makes sure PostgreSQL and Redis run, then runs
# the linters, the type checker and the whole test suite (real PostgreSQL, Redis, S3 server process,
# simulator and Celery worker). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh
ensure_venv test

bash scripts/services.sh

echo "== ruff" && .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy" && .venv/bin/mypy
echo "== pytest" && .venv/bin/pytest "$@"
