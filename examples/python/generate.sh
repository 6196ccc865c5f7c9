#!/usr/bin/env sh
# Generates the Python modules for numguard.v1 from ../../proto into gen/ (grpcio-tools).
set -eu
cd "$(dirname "$0")"
rm -rf gen && mkdir gen
python -m grpc_tools.protoc -I../../proto --python_out=gen --grpc_python_out=gen --pyi_out=gen \
  ../../proto/numguard/v1/*.proto
