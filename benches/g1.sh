#!/usr/bin/env bash
# Times outcore on the db-benchmark groupby questions q1-q5 over the G1 table
# (1e7 rows, K=100, 8 CSV files, ~510 MB) and on `std(x) by name where y > 0` over
# 30 days of per-second timeseries, reading the CSV files inside the timed region.
# Prints, per query: median seconds of 3 runs, peak RSS (GNU time, from outside the
# process) and a checksum of the answer (rows; rounded sums of numeric columns).
#
#   benches/g1.sh [DATA_DIR]      # DATA_DIR defaults to benches/data (git-ignored)
#   ROWS=1e6 RUNS=1 benches/g1.sh # smaller, for a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-benches/data}
rows=${ROWS:-1e7}
days=${DAYS:-30}
runs=${RUNS:-3}
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/outcore"
g1="$data/g1_${rows}"
ts="$data/ts_${days}d"
[ -d "$g1" ] || "$bin" datasets groupby --rows "$rows" --k 100 --files 8 --out "$g1" >/dev/null
[ -d "$ts" ] || "$bin" datasets timeseries --days "$days" --out "$ts" >/dev/null

checksum() {
  python3 -c '
import csv, sys
rows = list(csv.reader(sys.stdin))
head, body = rows[0], rows[1:]
sums = []
for i, name in enumerate(head):
    try:
        sums.append("%s=%.6g" % (name, sum(float(r[i]) for r in body if r[i] != "")))
    except ValueError:
        pass
print("rows=%d %s" % (len(body), " ".join(sums)))'
}

run() {
  local name=$1; shift
  local times=() rss=() out
  for _ in $(seq "$runs"); do
    out=$( { /usr/bin/time -f "%e %M" "$bin" query "$@" --format csv > /tmp/outcore-bench.csv; } 2>&1 | tail -1)
    times+=("${out% *}"); rss+=("${out#* }")
  done
  local med_t med_rss
  med_t=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  med_rss=$(printf '%s\n' "${rss[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  printf '| %-38s | %6.2f | %6d | %s |\n' "$name" "$med_t" "$((med_rss / 1024))" "$(checksum < /tmp/outcore-bench.csv)"
}

echo "outcore $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, $(date -u +%F)"
echo "| query | seconds | peak MB | checksum |"
echo "|---|---|---|---|"
run "q1 sum v1 by id1"                 "$g1/*.csv" --groupby id1 --agg 'sum(v1)'
run "q2 sum v1 by id1, id2"            "$g1/*.csv" --groupby id1,id2 --agg 'sum(v1)'
run "q3 sum v1, mean v3 by id3"        "$g1/*.csv" --groupby id3 --agg 'sum(v1), mean(v3)'
run "q4 mean v1, v2, v3 by id4"        "$g1/*.csv" --groupby id4 --agg 'mean(v1), mean(v2), mean(v3)'
run "q5 sum v1, v2, v3 by id6"         "$g1/*.csv" --groupby id6 --agg 'sum(v1), sum(v2), sum(v3)'
run "std(x) by name where y > 0"       "$ts/*.csv" --filter 'y > 0' --groupby name --agg 'std(x)'
