#!/usr/bin/env bash
# Sourced by the other scripts: create .venv if needed and install the project with the given extra.
ensure_venv() {
  local extra=$1
  local python=${PYTHON:-python3}
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extra]"
}
