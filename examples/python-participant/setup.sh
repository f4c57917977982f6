#!/usr/bin/env bash
# Makes a venv with requirements.txt (cached under ~/.cache/verdict, remade when the file
# changes), generates the stubs, and prints the line that tells the tests where it is:
#   eval "$(examples/python-participant/setup.sh)" && cargo test --test python_participant
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${XDG_CACHE_HOME:-$HOME/.cache}/verdict/python-participant-venv
if ! cmp -s "$here/requirements.txt" "$venv/requirements.txt" 2>/dev/null; then
    echo "python-participant: making a venv with requirements.txt in $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
    cp "$here/requirements.txt" "$venv/requirements.txt"
fi
PYTHON="$venv/bin/python" "$here/build.sh"
echo "export VERDICT_TEST_PYTHON='$venv/bin/python'"
