#!/usr/bin/env bash
# Sets up and runs the dpproxy demo on a fresh Debian machine: installs what
# is missing, builds dpproxy, starts a throwaway PostgreSQL with the demo
# data and serves it on 127.0.0.1:6432 with the embedded ledger.
# Extra arguments go to `dpproxy demo` (see `bin/dpproxy demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_packages
ensure_go
echo "building dpproxy ..." >&2
./scripts/build.sh bin              # the same build as the Dockerfile and CI
exec ./bin/dpproxy demo "$@"
