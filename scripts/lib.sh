# Shared setup for scripts/quickstart.sh and scripts/test.sh: install what is
# missing from Debian's packages and find a Go toolchain new enough for go.mod.
# Sourced, not run.

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ensure_packages installs the PostgreSQL server and client, Redis, a C
# compiler (pg_query_go uses cgo) and the clients of the client matrix when
# they are missing.
ensure_packages() {
  local need=()
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
  command -v psql >/dev/null || need+=(postgresql-client)
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v redis-cli >/dev/null || need+=(redis-tools)
  command -v gcc >/dev/null || need+=(gcc libc6-dev)
  command -v git >/dev/null || need+=(git)
  command -v runuser >/dev/null || need+=(util-linux)
  command -v curl >/dev/null || need+=(ca-certificates curl)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} ..." >&2
    apt_install "${need[@]}"
  fi
}

# ensure_test_packages installs what only the test suite needs: the client
# matrix (integration/clients_test.go: pgbench, JDBC, psycopg2 + SQLAlchemy +
# pandas, node-postgres via npm ci at test time) and docker-compose to
# validate docker-compose.yml.
ensure_test_packages() {
  local need=()
  command -v pgbench >/dev/null || need+=(postgresql-client)
  command -v javac >/dev/null || need+=(default-jdk-headless)
  [ -f /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)
  /usr/bin/python3 -c 'import psycopg2, sqlalchemy, pandas' 2>/dev/null || need+=(python3-psycopg2 python3-sqlalchemy python3-pandas)
  command -v node >/dev/null || need+=(nodejs)
  command -v npm >/dev/null || need+=(npm)
  command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} ..." >&2
    apt_install "${need[@]}"
  fi
}

# ensure_go puts a Go toolchain that satisfies go.mod first on PATH. Debian's
# golang-go is older than go.mod needs, so when only that is available the
# official toolchain is fetched as the module golang.org/toolchain through the
# Go module proxy (the same mechanism as GOTOOLCHAIN=auto).
ensure_go() {
  local want have gobin
  want=$(awk '/^go /{print $2; exit}' go.mod)
  [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"
  if command -v go >/dev/null; then
    have=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
    if [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" = "$want" ]; then
      return 0
    fi
  else
    echo "installing golang-go to bootstrap Go $want ..." >&2
    apt_install golang-go ca-certificates
  fi
  local mod="golang.org/toolchain@v0.0.1-go${want}.linux-$(dpkg --print-architecture)"
  echo "fetching Go $want ($mod) through the Go module proxy ..." >&2
  gobin=$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "$mod" | awk -F'"' '/"Dir"/{print $4}')
  [ -x "$gobin/bin/go" ] || { echo "could not get Go $want; install it in /usr/local/go" >&2; return 1; }
  chmod +x "$gobin"/bin/* "$gobin"/pkg/tool/*/* 2>/dev/null || true
  export PATH="$gobin/bin:$PATH" GOTOOLCHAIN=local
}
