#!/usr/bin/env bash
# Generates the Python gRPC stubs for Verdict's protos into gen/ (not committed), with
# grpcio-tools from the active Python (a venv with requirements.txt installed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto=$here/../../proto
python=${PYTHON:-python3}
rm -rf "$here/gen"
mkdir -p "$here/gen"
"$python" -m grpc_tools.protoc -I "$proto" --python_out="$here/gen" --grpc_python_out="$here/gen" \
    "$proto"/verdict/v1/*.proto
echo "python-participant: stubs generated in $here/gen" >&2
