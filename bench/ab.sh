#!/usr/bin/env bash
# Alternating A/B runs of pgbench against targets you started yourself (a
# benchctl cluster, PgBouncer, dpproxy builds): each round runs every target
# once, in turn, so the machine's drift lands on all of them alike. Prints,
# per target, the median (and range) of TPS and of the machine's busy CPU
# per transaction (every process, from /proc/stat; steadier than TPS on a
# saturated machine).
#
#   bench/ab.sh ROUNDS SECONDS "name|pgbench arguments" ...
#   bench/ab.sh 3 10 "direct32|-p 5433 -U bench_reader -c 32 -f bench/pgbench/groupby_avg.sql bench" \
#                    "dp32|-p 7432 -U bench -c 32 -f bench/pgbench/groupby_avg.sql bench"
#
# PGHOST defaults to 127.0.0.1 and PGPASSWORD to the bench password.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,13p' "$0"; exit 2; }
rounds=$1 secs=$2
shift 2
export PGHOST=${PGHOST:-127.0.0.1} PGPASSWORD=${PGPASSWORD:-bench-pass}
hz=$(getconf CLK_TCK)
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
declare -A tps cpu
for ((r = 1; r <= rounds; r++)); do
	for spec in "$@"; do
		name=${spec%%|*} args=${spec#*|}
		a=$(busy)
		# shellcheck disable=SC2086 # args are pgbench's, split on purpose
		out=$(pgbench -n -j 2 -T "$secs" $args 2>&1) || { echo "$name: pgbench failed: $out" >&2; exit 1; }
		b=$(busy)
		n=$(awk '/actually processed/{print $NF}' <<<"$out")
		t=$(awk '/^tps/{print $3}' <<<"$out")
		ms=$(awk -v d="$((b - a))" -v hz="$hz" -v n="$n" 'BEGIN {printf "%.3f", d * 1000 / hz / n}')
		tps[$name]+=" $t" cpu[$name]+=" $ms"
		echo "round $r $name tps=$t host_ms=$ms" >&2
	done
done
med() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR] = $1} END {m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.3f (%s..%s)", m, a[1], a[NR]}'; }
for spec in "$@"; do
	name=${spec%%|*}
	echo "$name tps $(med <<<"${tps[$name]}") host_ms $(med <<<"${cpu[$name]}")"
done
