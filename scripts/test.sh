#!/usr/bin/env bash
# The test command: installs everything into .venv, makes sure PostgreSQL and Redis run, then runs
# the linters, the type checker and the whole test suite (real PostgreSQL, Redis, S3 server process,
# simulator and Celery worker). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh
ensure_venv test

bash scripts/services.sh

# One command per line: under `set -e` a failure that is not the last command of an `a && b` list
# does not stop the script (a lint error once went through CI that way).
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== docs"
site=$(mktemp -d)
.venv/bin/mkdocs build --strict --quiet --site-dir "$site"
rm -rf "$site"
echo "== pytest"
# Two test processes (pytest-xdist), each with its own stack, database and Redis databases
# (tests/support/stack.py); an idle process takes tests from a busy one's queue (worksteal: the two
# long tests, backfill and faults, about 3 minutes each, end up apart). ARCHIVER_TEST_WORKERS=0: one.
workers=${ARCHIVER_TEST_WORKERS:-2}
if [ "$workers" = "0" ]; then
  .venv/bin/pytest -p no:xdist "$@"
else
  .venv/bin/pytest -n "$workers" --dist worksteal "$@"
fi
