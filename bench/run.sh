#!/usr/bin/env bash
# dpproxy side by side with direct PostgreSQL and PgBouncer, in one run.
#
# Starts its own throwaway PostgreSQL (bench/cmd/benchctl, on a free loopback
# port), PgBouncer (transaction mode) and two dpproxy processes (answer cache
# off and on), runs the same pgbench scripts (bench/pgbench/*.sql) against
# each, then times the rewritten SQL against the raw aggregates directly on
# PostgreSQL, and measures 1,000 idle client connections on dpproxy.
# Everything it starts is stopped on exit, and its directory removed.
#
#   bench/run.sh                 # default: matrix at 100k purchases, DB cost at 1M (~13 min on 2 cores)
#   bench/run.sh --quick         # ~2-3 minutes: shorter runs, 1 and 32 clients
#   bench/run.sh --scale 1m --cost-scale 10m --duration 10 --clients "1 8 32"
#
# Options: --scale S (purchases rows of the pgbench matrix: 100k, 1m, 10m),
# --cost-scale S (database-side cost), --duration SECONDS (per pgbench run),
# --clients "1 8 32", --protocols "simple extended", --queries "tiny_count ...",
# --conns N (idle connections, 0 skips), --skip-matrix, --skip-cost,
# --scale-out (1, 2 and 3 proxies on one Redis ledger),
# --cache-hit-audit sync|batched (how the cache-on proxy audits hits; default
# batched, the policy's default is sync), --keep (keep the working directory), --dir D.
# --check-bounds caps people.income at its policy bound and adds a CHECK constraint
# proving it, so dpproxy sums it unclamped (proven bounds, rewrite/bounds.go).
# --pg-setting NAME=VALUE (repeatable) sets a PostgreSQL setting on the throwaway
# cluster for every target (ALTER SYSTEM), e.g. max_parallel_workers_per_gather=0.
# --profile D writes CPU profiles of the two dpproxy processes to D/cpu-nocache.pprof
# and D/cpu-cache.pprof (go tool pprof). DPPROXY_BIN=path runs that dpproxy binary
# instead of one built from this tree. --repeat N runs each cell N times, the four
# targets interleaved round by round, and prints each column's median.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCALE=100k
COST_SCALE=1m
DURATION=4
CLIENTS="1 8 32"
PROTOCOLS="simple extended"
QUERIES="tiny_count selective_count groupby_avg user_groupby join_public"
CONNS=1000
MATRIX=1
COST=1
SCALEOUT=0
HIT_AUDIT=batched
PROFILE_DIR=""
CHECK_BOUNDS=0
REPEAT=1
PG_SETTINGS=()
KEEP=0
DIR=""
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) DURATION=1; CLIENTS="1 32"; COST_SCALE=100k; shift ;;
	--scale) SCALE=$2; shift 2 ;;
	--cost-scale) COST_SCALE=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--clients) CLIENTS=$2; shift 2 ;;
	--protocols) PROTOCOLS=$2; shift 2 ;;
	--queries) QUERIES=$2; shift 2 ;;
	--conns) CONNS=$2; shift 2 ;;
	--skip-matrix) MATRIX=0; shift ;;
	--skip-cost) COST=0; shift ;;
	--scale-out) SCALEOUT=1; shift ;;
	--cache-hit-audit) HIT_AUDIT=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	--check-bounds) CHECK_BOUNDS=1; shift ;;
	--repeat) REPEAT=$2; shift 2 ;;
	--profile) PROFILE_DIR=$2; shift 2 ;;
	--dir) DIR=$2; shift 2 ;;
	--pg-setting) PG_SETTINGS+=("$2"); shift 2 ;;
	-h | --help) sed -n '2,29p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	esac
done

for tool in pgbench psql; do
	command -v $tool >/dev/null || { echo "run.sh: $tool missing: apt-get install -y postgresql-client" >&2; exit 1; }
done
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
	echo "installing pgbouncer ..." >&2
	if [ "$(id -u)" = 0 ]; then apt-get install -y pgbouncer >/dev/null; else sudo apt-get install -y pgbouncer >/dev/null; fi
fi
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

if [ -z "$DIR" ]; then DIR=$(mktemp -d /tmp/dpproxy-bench.XXXXXX); fi
mkdir -p "$DIR"
chmod 755 "$DIR" # the postgres user (PostgreSQL, PgBouncer) must reach it when we are root
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	[ -f "$DIR/bouncer/pgbouncer.pid" ] && kill "$(cat "$DIR/bouncer/pgbouncer.pid")" 2>/dev/null || true
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	[ -x "$DIR/benchctl" ] && "$DIR/benchctl" down --dir "$DIR" || true
	if [ "$KEEP" = 0 ]; then rm -rf "$DIR"; else echo "kept $DIR" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
	local i
	for i in $(seq 1 300); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "run.sh: nothing listens on port $1" >&2
	return 1
}

log "building dpproxy and benchctl"
(cd "$ROOT" && go build -o "$DIR/dpproxy" ./cmd/dpproxy && go build -o "$DIR/benchctl" ./bench/cmd/benchctl)
if [ -n "${DPPROXY_BIN:-}" ]; then # A/B runs: another build of dpproxy against the same setup
	cp "$DPPROXY_BIN" "$DIR/dpproxy"
fi

log "PostgreSQL: bench=$SCALE, bench_cost=$COST_SCALE"
eval "$("$DIR/benchctl" up --dir "$DIR" --load "bench=$SCALE,bench_cost=$COST_SCALE")"
READER_DSN="host=127.0.0.1 port=$PGPORT user=bench_reader dbname=bench sslmode=disable"
if [ "$CHECK_BOUNDS" = 1 ]; then
	# The DBA's side of proven bounds: incomes capped at the policy's upper
	# bound (0.2% of rows) and a CHECK constraint that proves it, so dpproxy
	# sums them unclamped. Every target reads the same changed data.
	log "people.income: CHECK (income BETWEEN 0 AND 250000)"
	psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d bench -v ON_ERROR_STOP=1 \
		-c "UPDATE people SET income = 250000 WHERE income > 250000" \
		-c "ALTER TABLE people ADD CONSTRAINT people_income_bounds CHECK (income BETWEEN 0 AND 250000)" \
		-c "VACUUM ANALYZE people" >&2
fi

for setting in "${PG_SETTINGS[@]}"; do
	log "PostgreSQL setting: $setting"
	psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d bench -v ON_ERROR_STOP=1 \
		-c "ALTER SYSTEM SET ${setting%%=*} = '${setting#*=}'" -c "SELECT pg_reload_conf()" >/dev/null
done

# PgBouncer, transaction mode, on loopback, with the same upstream pool size
# as dpproxy (16).
BOUNCER_PORT=$(free_port)
cat >"$DIR/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PGPORT dbname=bench user=bench_reader
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 16
max_client_conn = 200
logfile = $DIR/bouncer/pgbouncer.log
pidfile = $DIR/bouncer/pgbouncer.pid
EOF
mkdir -p "$DIR/bouncer"
if [ "$(id -u)" = 0 ]; then
	# PgBouncer refuses to run as root; it runs as postgres, which must
	# write its log and pid file.
	chown postgres "$DIR/bouncer"
	runuser -u postgres -- "$PGBOUNCER" -d "$DIR/pgbouncer.ini"
else
	"$PGBOUNCER" -d "$DIR/pgbouncer.ini"
fi
wait_port "$BOUNCER_PORT"

# Two dpproxy processes: answer cache off and on (cache_window 10m, hits
# audited as --cache-hit-audit says).
start_proxy() { # name cache_window -> sets PORT_<name>, PID_<name>
	local name=$1 window=$2 port
	port=$(free_port)
	"$DIR/benchctl" policy --listen "127.0.0.1:$port" --ledger "$DIR/ledger-$name.db" --cache-window "$window" \
		--cache-hit-audit "$HIT_AUDIT" >"$DIR/policy-$name.yaml"
	local profile=""
	[ -n "${PROFILE_DIR:-}" ] && mkdir -p "$PROFILE_DIR" && profile=$(realpath "$PROFILE_DIR")/cpu-$name.pprof
	DPPROXY_CPUPROFILE=$profile DPPROXY_UPSTREAM_DSN="$READER_DSN" "$DIR/dpproxy" serve --policy "$DIR/policy-$name.yaml" --admin "" \
		--max-connections 1100 --max-statements-per-analyst 64 2>"$DIR/dpproxy-$name.log" &
	local pid=$!
	PIDS+=("$pid")
	wait_port "$port"
	eval "PORT_$name=$port PID_$name=$pid"
}
start_proxy nocache 0s
start_proxy cache 10m
log "PostgreSQL :$PGPORT, PgBouncer :$BOUNCER_PORT, dpproxy :$PORT_nocache (cache off, pid $PID_nocache), :$PORT_cache (cache on, hits audited $HIT_AUDIT, pid $PID_cache)"

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# host_ticks: the machine's busy CPU time (every process: PostgreSQL, the
# proxy, pgbench), from /proc/stat. On a saturated machine it is steadier
# than TPS: what one transaction costs in all, whoever spends it.
host_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# run_pgbench target script proto clients -> "tps mean_ms p99_ms txns cpu_us_per_txn host_ms_per_txn"
run_pgbench() {
	local target=$1 script=$2 proto=$3 clients=$4 port user pid="" t0 t1 h0 h1 out rc logdir
	case $target in
	direct) port=$PGPORT user=bench_reader ;;
	pgbouncer) port=$BOUNCER_PORT user=bench_reader pid=$(cat "$DIR/bouncer/pgbouncer.pid") ;;
	dpproxy) port=$PORT_nocache user=bench pid=$PID_nocache ;;
	dpproxy+cache) port=$PORT_cache user=bench pid=$PID_cache ;;
	esac
	logdir=$(mktemp -d "$DIR/log.XXXXXX")
	[ -n "$pid" ] && t0=$(cpu_ticks "$pid")
	h0=$(host_ticks)
	rc=0
	out=$(cd "$logdir" && PGPASSWORD=bench-pass pgbench -n -M "$proto" -c "$clients" -j "$((clients < 2 ? clients : 2))" \
		-T "$DURATION" -l -f "$ROOT/bench/pgbench/$script.sql" -h 127.0.0.1 -p "$port" -U "$user" bench 2>&1) || rc=$?
	[ -n "$pid" ] && t1=$(cpu_ticks "$pid")
	h1=$(host_ticks)
	local txns tps
	txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
	if [ "$rc" != 0 ] || [ -z "$txns" ] || [ "$txns" = 0 ]; then
		echo "pgbench failed ($target $script $proto $clients): $(grep -m1 -iE 'error|abort|fatal' <<<"$out")" >&2
		echo "- - - 0 - -"
		rm -rf "$logdir"
		return
	fi
	local lat
	lat=$(cat "$logdir"/pgbench_log.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1; s+=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.3f %.3f", s/NR/1000, a[i]/1000}')
	local cpu="-"
	[ -n "$pid" ] && cpu=$(awk -v d="$((t1 - t0))" -v hz="$CLK_TCK" -v n="$txns" 'BEGIN {printf "%.0f", d * 1e6 / hz / n}')
	local host
	host=$(awk -v d="$((h1 - h0))" -v hz="$CLK_TCK" -v n="$txns" 'BEGIN {printf "%.3f", d * 1e3 / hz / n}')
	echo "$tps $lat $txns $cpu $host"
	rm -rf "$logdir"
}

# median_columns: lines of "tps mean_ms p99_ms txns cpu_us host_ms" -> one line of
# each column's median ("-" where a column has no number).
median_columns() {
	awk 'NF { for (i = 1; i <= NF; i++) if ($i != "-") v[i, ++n[i]] = $i; if (NF > nf) nf = NF }
	function median(i,   m, j, k, t, a) {
		m = n[i]; if (m == 0) return "-"
		for (j = 1; j <= m; j++) a[j] = v[i, j] + 0
		for (j = 2; j <= m; j++) { t = a[j]; for (k = j - 1; k >= 1 && a[k] > t; k--) a[k + 1] = a[k]; a[k + 1] = t }
		return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
	}
	END { for (i = 1; i <= nf; i++) printf "%s%s", median(i), (i < nf ? " " : "\n") }'
}

if [ "$MATRIX" = 1 ]; then
	RESULTS="$DIR/results.txt"
	printf "%-16s %-8s %3s %-14s %9s %9s %9s %8s %8s %7s %8s\n" query protocol cl target tps mean_ms p99_ms x_direct x_pgbnc cpu_us host_ms | tee "$RESULTS"
	for q in $QUERIES; do
		for proto in $PROTOCOLS; do
			for c in $CLIENTS; do
				declare -A R=()
				for ((rep = 0; rep < REPEAT; rep++)); do # rounds interleave the targets
					for target in direct pgbouncer dpproxy dpproxy+cache; do
						R[$target]+="$(run_pgbench "$target" "$q" "$proto" "$c")"$'\n'
					done
				done
				for target in direct pgbouncer dpproxy dpproxy+cache; do
					R[$target]=$(median_columns <<<"${R[$target]}")
				done
				d=$(awk '{print $1}' <<<"${R[direct]}")
				b=$(awk '{print $1}' <<<"${R[pgbouncer]}")
				for target in direct pgbouncer dpproxy dpproxy+cache; do
					read -r tps mean p99 _ cpu host <<<"${R[$target]}"
					awk -v q="$q" -v p="$proto" -v c="$c" -v t="$target" -v tps="$tps" -v m="$mean" -v p99="$p99" -v d="$d" -v b="$b" -v cpu="$cpu" -v host="$host" 'BEGIN {
						xd = (d+0 > 0 && tps+0 > 0) ? sprintf("%.2f", tps/d) : "-"
						xb = (b+0 > 0 && tps+0 > 0) ? sprintf("%.2f", tps/b) : "-"
						f3 = "%.3f"
						printf "%-16s %-8s %3s %-14s %9s %9s %9s %8s %8s %7s %8s\n", q, p, c, t, tps == "-" ? "-" : sprintf("%.1f", tps),
							m == "-" ? "-" : sprintf(f3, m), p99 == "-" ? "-" : sprintf(f3, p99), xd, xb, cpu == "-" ? "-" : sprintf("%.0f", cpu),
							host == "" || host == "-" ? "-" : sprintf(f3, host)
					}' | tee -a "$RESULTS"
				done
				unset R
			done
		done
	done
fi

if [ "$COST" = 1 ]; then
	# Database-side cost: the SQL dpproxy sends upstream (taken from
	# `dpproxy explain`, first sql: line) against the raw aggregate, both
	# directly on PostgreSQL in a read-only transaction; median of 5 runs,
	# interleaved, after one warm-up round.
	COST_DSN="host=127.0.0.1 port=$PGPORT user=bench_reader dbname=bench_cost sslmode=disable"
	# explain_sql POLICY SQL: the statement serve would send, after the
	# plan's planner settings as SET LOCAL (dbcost runs it in a transaction).
	explain_sql() {
		DPPROXY_UPSTREAM_DSN="$COST_DSN" "$DIR/dpproxy" explain --upstream --policy "$1" "$2" |
			awk '/^planner: / { sub(/^planner: /, ""); pre = pre $0 "; " } /^sql: / && !s { sub(/^sql: /, ""); s = $0 } END { print pre s }'
	}
	echo
	log "database-side cost at $COST_SCALE purchases (median of 5, ms)"
	printf "%-14s %-34s %9s %9s %9s %7s\n" query variant median_ms min_ms max_ms x_raw
	# dpproxy's own shadow copy of purchases (`shadow: true`, filled by
	# `dpproxy shadow refresh`: at most max_rows_per_unit random rows per
	# person, amounts clamped and proven by a CHECK constraint).
	sed 's/^    unit: person_id$/    unit: person_id\n    shadow: true/' "$DIR/policy-nocache.yaml" >"$DIR/policy-shadow.yaml"
	grep -q '^    shadow: true$' "$DIR/policy-shadow.yaml" || { echo "run.sh: could not mark purchases shadow: true" >&2; exit 1; }
	DPPROXY_UPSTREAM_DSN="$COST_DSN" "$DIR/dpproxy" shadow refresh --policy "$DIR/policy-shadow.yaml" \
		--dsn "host=127.0.0.1 port=$PGPORT user=postgres dbname=bench_cost sslmode=disable" --reader bench_reader >&2
	for q in groupby_avg user_groupby join_public join_filtered; do
		sql=$(grep -v '^--' "$ROOT/bench/pgbench/$q.sql" | tr '\n' ' ' | sed 's/; *$//')
		# --upstream: the SQL serve would send, with the catalog's facts.
		dp=$(explain_sql "$DIR/policy-nocache.yaml" "$sql")
		shadow=""
		if [ "$q" = user_groupby ]; then
			shadow=$(explain_sql "$DIR/policy-shadow.yaml" "$sql")
		fi
		"$DIR/benchctl" dbcost --dsn "$COST_DSN" --runs 5 \
			"raw=$sql" \
			"rewritten=$dp" \
			"rewritten+jit_off=SET LOCAL jit = off; $dp" \
			"rewritten+work_mem_64MB=SET LOCAL work_mem = '64MB'; $dp" \
			"rewritten+no_parallel=SET LOCAL max_parallel_workers_per_gather = 0; $dp" \
			${shadow:+"shadow_table=$shadow"} |
			awk -v q="$q" '$1 == "raw" {raw = $2} {printf "%-14s %-34s %9s %9s %9s %7.2f\n", q, $1, $2, $3, $4, $2 / raw}'
	done
	# On-the-fly bounding with a DBA's index on (unit, group key) covering
	# the summed column: the per-unit aggregate then reads the rows in unit
	# order, without hashing 600k groups (docs/dba-guide.md).
	psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d bench_cost -v ON_ERROR_STOP=1 \
		-c "CREATE INDEX IF NOT EXISTS purchases_unit_category ON purchases (person_id, category) INCLUDE (amount)" \
		-c "VACUUM ANALYZE purchases" >&2
	sql=$(grep -v '^--' "$ROOT/bench/pgbench/user_groupby.sql" | tr '\n' ' ' | sed 's/; *$//')
	dp=$(explain_sql "$DIR/policy-nocache.yaml" "$sql")
	"$DIR/benchctl" dbcost --dsn "$COST_DSN" --runs 5 "raw+unit_index=$sql" "rewritten+unit_index=$dp" |
		awk '$1 == "raw+unit_index" {raw = $2} {printf "%-14s %-34s %9s %9s %9s %7.2f\n", "user_groupby", $1, $2, $3, $4, $2 / raw}'
	psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d bench_cost -c "DROP INDEX purchases_unit_category" >&2
fi

if [ "$CONNS" -gt 0 ]; then
	echo
	log "$CONNS idle client connections on dpproxy (cache off)"
	"$DIR/benchctl" conns --n "$CONNS" --pid "$PID_nocache" \
		--dsn "host=127.0.0.1 port=$PORT_nocache user=bench password=bench-pass dbname=bench sslmode=disable"
fi

if [ "$SCALEOUT" = 1 ]; then
	# One, two and three dpproxy processes sharing one Redis ledger (AOF on),
	# 32 pgbench clients in all split across them, the trivial count (cache
	# off). Total TPS, and the check that the ledger charged exactly the
	# answered statements: epsilon spent = transactions x 0.1.
	command -v redis-server >/dev/null || { echo "run.sh: redis-server missing: apt-get install -y redis-server" >&2; exit 1; }
	REDIS_PORT=$(free_port)
	mkdir -p "$DIR/redis"
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DIR/redis" --appendonly yes --save "" --daemonize no >"$DIR/redis.log" 2>&1 &
	PIDS+=("$!")
	wait_port "$REDIS_PORT"
	echo
	log "scale-out: dpproxy processes on one Redis ledger, tiny_count, 32 clients in all, ${DURATION}s"
	printf "%-8s %9s %12s %14s %10s\n" proxies tps txns epsilon_spent charged_ok
	for n in 1 2 3; do
		redis-cli -p "$REDIS_PORT" flushall >/dev/null
		ports=() ppids=()
		for i in $(seq 1 "$n"); do
			port=$(free_port)
			"$DIR/benchctl" policy --listen "127.0.0.1:$port" --redis "127.0.0.1:$REDIS_PORT" --cache-window 0s >"$DIR/policy-redis-$i.yaml"
			DPPROXY_UPSTREAM_DSN="$READER_DSN" "$DIR/dpproxy" serve --policy "$DIR/policy-redis-$i.yaml" --admin "" \
				--max-connections 1100 --max-statements-per-analyst 64 2>"$DIR/dpproxy-redis-$i.log" &
			ppids+=("$!")
			PIDS+=("$!")
			wait_port "$port"
			ports+=("$port")
		done
		per=$((32 / n))
		outs=()
		for i in $(seq 0 $((n - 1))); do
			(cd "$DIR" && PGPASSWORD=bench-pass pgbench -n -M simple -c "$per" -j 2 -T "$DURATION" \
				-f "$ROOT/bench/pgbench/tiny_count.sql" -h 127.0.0.1 -p "${ports[$i]}" -U bench bench >"$DIR/scaleout-$n-$i.out" 2>&1) &
			outs+=("$!")
		done
		for pid in "${outs[@]}"; do wait "$pid" || true; done
		txns=0
		tps=0
		for i in $(seq 0 $((n - 1))); do
			t=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$DIR/scaleout-$n-$i.out")
			r=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$DIR/scaleout-$n-$i.out")
			txns=$((txns + ${t:-0}))
			tps=$(awk -v a="$tps" -v b="${r:-0}" 'BEGIN {print a + b}')
		done
		spent=$(DPPROXY_UPSTREAM_DSN="$READER_DSN" "$DIR/dpproxy" ledger report --policy "$DIR/policy-redis-1.yaml" --format csv 2>/dev/null |
			awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "spent_epsilon") c = i} NR > 1 && $1 == "bench" {print $c}')
		ok=$(awk -v s="${spent:-0}" -v t="$txns" 'BEGIN {d = s - t * 0.1; if (d < 0) d = -d; print (d < 1e-6 ? "yes" : "NO")}')
		printf "%-8s %9.1f %12s %14s %10s\n" "$n" "$tps" "$txns" "${spent:-?}" "$ok"
		for pid in "${ppids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
	done
fi
