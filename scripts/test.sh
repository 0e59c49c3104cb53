#!/usr/bin/env bash
# Runs the whole test suite. The tests start their own PostgreSQL clusters and
# redis-servers on free loopback ports; this script only makes sure the
# binaries are installed. Extra arguments go to `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_packages
ensure_test_packages
ensure_go
echo "building bin/dpproxy (scripts/build.sh, as the Dockerfile does) ..." >&2; ./scripts/build.sh bin
echo "go vet ..." >&2
go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted" >&2; exit 1; fi
go test -count=1 -timeout 30m "$@" ./...
# The packages whose state sessions share, again under the race detector: a
# data race there is a crash ("concurrent map writes" is fatal) or a wrong
# charge, and the tests above would pass over it. About a minute and a half,
# most of it the race build.
echo "go test -race (wire ledger answer audit policy) ..." >&2
go test -race -count=1 -timeout 20m "$@" ./wire/ ./ledger/ ./answer/ ./audit/ ./policy/
# A short bounded fuzz run of each fuzz target, in CI (CI=true) or with
# DPPROXY_FUZZ=1; DPPROXY_FUZZTIME sets the time per target (default 15s).
#
# Go 1.26's fuzz coordinator can end a run at the -fuzztime boundary with a
# bare "context deadline exceeded" and no failing input (golang/go#75804,
# fixed in Go 1.27): such a run, and only such a run, is retried once. A
# real finding writes a failing input and fails at once.
fuzz_once() {
  local out rc=0
  out=$(go test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" "./$1/" 2>&1) || rc=$?
  echo "$out" >&2
  if [ "$rc" != 0 ] && grep -q '^    context deadline exceeded$' <<<"$out" &&
    ! grep -qE 'Failing input written|panic:' <<<"$out"; then
    echo "fuzzing $1 $2: the Go fuzz coordinator's deadline race (golang/go#75804), no failing input; once more" >&2
    return 1
  fi
  [ "$rc" = 0 ] || exit "$rc"
}
if [ "${CI:-}" = "true" ] || [ "${DPPROXY_FUZZ:-}" = "1" ]; then
  fuzztime=${DPPROXY_FUZZTIME:-15s}
  for target in rewrite:FuzzClassify policy:FuzzParse wire:FuzzFrontend ledger:FuzzReadJournal \
    internal/jsonstr:FuzzAppend cmd/dpproxy:FuzzLineHandler; do
    pkg=${target%%:*} fn=${target#*:}
    if grep -q "^func $fn(" "$pkg"/*_test.go 2>/dev/null; then
      echo "fuzzing $pkg $fn for $fuzztime ..." >&2
      fuzz_once "$pkg" "$fn" || fuzz_once "$pkg" "$fn"
    fi
  done
fi
