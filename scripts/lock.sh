#!/usr/bin/env bash
# Re-pin every dependency (requirements/*.txt) from pyproject.toml's ranges, with pip-tools.
# Upgrade: bash scripts/lock.sh --upgrade   (or --upgrade-package kombu to move one package),
# then run the tests (bash scripts/test.sh) and commit the lock files with the change.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=${PIP_TOOLS_VENV:-.venv-lock}
[ -x "$tools/bin/pip-compile" ] || { python3 -m venv "$tools" && "$tools/bin/pip" install -q pip-tools; }
compile() { "$tools/bin/pip-compile" -q --strip-extras --no-emit-index-url "$@" pyproject.toml; }
compile --extra flower -o requirements/runtime.txt "$@"          # the image (deploy/Dockerfile)
compile --extra demo -o requirements/demo.txt "$@"               # archiver demo (scripts/demo.sh)
compile --extra test --extra demo -o requirements/test.txt "$@"  # the tests and CI (scripts/test.sh)
