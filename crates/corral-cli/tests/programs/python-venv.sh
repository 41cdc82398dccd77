#!/bin/sh
# Creates the virtualenv the corral command's tests run uvicorn and gunicorn from (PyPI, pinned),
# and prints its python. Idempotent: an existing venv with the pinned packages is reused.
#   crates/corral-cli/tests/programs/python-venv.sh [DIR]   (default: target/corral-cli-venv)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../.." && pwd)
venv=${1:-$root/target/corral-cli-venv}
want="uvicorn==0.54.0 h11==0.16.0 click==8.3.1 gunicorn==27.0.1"
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.corral-pins" 2>/dev/null)" = "$want" ]; then
    echo "$venv/bin/python"
    exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check $want >&2
echo "$want" > "$venv/.corral-pins"
echo "$venv/bin/python"
