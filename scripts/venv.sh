#!/usr/bin/env bash
# Sourced by the other scripts: create .venv if needed and install the exact versions CI tested
# (requirements/<extra>.txt, made by scripts/lock.sh from pyproject.toml), then the project itself.
ensure_venv() {
  local extra=$1
  local python=${PYTHON:-python3}
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "requirements/$extra.txt"
  .venv/bin/python -m pip install -q --no-deps -e .
}
