#!/bin/sh
# The one command line that builds dpproxy, shared by the Dockerfile,
# scripts/quickstart.sh and scripts/test.sh (CI), so that the container and
# CI ship the same binary. cgo is required: pg_query_go compiles the
# PostgreSQL parser. Usage: scripts/build.sh [OUTDIR] (default bin; relative
# paths are relative to the repository root). Writes OUTDIR/dpproxy.
set -eu
cd "$(dirname "$0")/.."
out=${1:-bin}
CGO_ENABLED=1 go build -trimpath -o "$out/dpproxy" ./cmd/dpproxy
