#!/usr/bin/env bash
# bash run.sh [APP OPTIONS]      set up .venv when needed, then serve the web app (http://127.0.0.1:7860)
# bash run.sh test [PYTEST ARGS] set up .venv plus test dependencies, then run the test suite
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV=.venv
PYTHON=${PYTHON:-python3}

install() {  # install requirement files once per content; re-runs are a hash check
    local stamp="$VENV/.installed-$(cat "$@" pyproject.toml | sha256sum | cut -c1-16)"
    [ -f "$stamp" ] && return 0
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    for file in "$@"; do "$VENV/bin/python" -m pip install --quiet -r "$file"; done
    # setuptools warns that a folder named like the package may shadow it: here that folder is the package.
    PYTHONWARNINGS="ignore:Editable installation" "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
    touch "$stamp"
}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"

if [ "${1:-}" = "test" ]; then
    shift
    install requirements.txt requirements-test.txt
    exec "$VENV/bin/python" -m pytest "$@"
fi
install requirements.txt
exec "$VENV/bin/python" app.py "$@"
