#!/usr/bin/env bash
# Out of core: the db-benchmark G1 table at 1e8 rows, K=100 (about 5 GB in 32 CSV
# files), queried with a 1 GB memory limit. Prints seconds, peak RSS measured from
# outside the process (GNU time) and outcore's own --stats line, for
#   q1  sum(v1) by id1
#   q3  sum(v1), mean(v3) by id3
#   q10 sum(v3), count by id1..id6 (~1e8 groups, written to a folder; only
#       --memory-limit is given: the groupby picks its radix parts itself)
#   set_index  every row indexed by id6 (sampled divisions, range shuffle, each
#       partition sorted), written to a folder as CSV
# and, when the peers' virtual environment exists (benches/peers/run.py makes it),
# the same queries in DuckDB with memory_limit='1GB', in DataFusion (a fair spill
# pool of the limit, one partition per core; benches/memory/q_peer.py) and in Dask
# (threads; Dask has no memory limit to set). Each engine gets TIMEOUT seconds per
# query; PEERS picks the peers ("duckdb datafusion dask" by default), NO_PEERS=1 runs
# outcore alone. SPLIT_OUT=N gives q10 an explicit --split-out (and Dask's split_out,
# 128 when unset).
#
#   benches/outofcore.sh [DATA_DIR]        # DATA_DIR defaults to benches/data
#   ROWS=1e6 FILES=4 LIMIT=64MB benches/outofcore.sh   # a quick check
#   SWEEP="4GB 2GB 1GB 512MB" benches/outofcore.sh     # q1, q3 at several limits
#   QUERIES="set_index" benches/outofcore.sh           # some of q1 q3 q10 set_index
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-benches/data}
rows=${ROWS:-1e8}
files=${FILES:-32}
limit=${LIMIT:-1GB}
split_out=${SPLIT_OUT:-}
timeout_s=${TIMEOUT:-1800}
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/outcore"
g1="$data/g1_${rows}_k100_${files}files"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/outcore-ooc-XXXXXX")
trap 'rm -rf "$scratch"' EXIT
if [ ! -d "$g1" ]; then
  echo "making $g1 ..." >&2
  "$bin" datasets groupby --rows "$rows" --k 100 --files "$files" --out "$g1" >/dev/null
fi
size_mb=$(du -sm "$g1" | cut -f1)
py="benches/peers/.venv/bin/python"

# measure NAME ENGINE COMMAND...: one run under GNU time; prints a table row.
measure() {
  local name=$1 engine=$2; shift 2
  local status=ok rc=0
  timeout "$timeout_s" /usr/bin/time -f "%e %M" -o "$scratch/time" "$@" \
      > "$scratch/out" 2> "$scratch/err" || rc=$?
  if [ "$rc" -eq 124 ]; then
    status="no: timed out after ${timeout_s} s"
  elif [ "$rc" -ne 0 ]; then
    status="no: $( (grep -v '^Command' "$scratch/err" || true) | tail -1 | cut -c1-80)"
  fi
  grep -qE '^[0-9.]+ [0-9]+$' "$scratch/time" 2>/dev/null || echo "$timeout_s 0" > "$scratch/time"
  local t rss
  read -r t rss < <(grep -E '^[0-9.]+ [0-9]+$' "$scratch/time" | tail -1)
  local stats
  stats=$( (grep '^stats:' "$scratch/err" || true) | sed 's/^stats: //')
  printf '| %-30s | %-8s | %8.2f | %7d | %s | %s |\n' \
    "$name" "$engine" "$t" "$((rss / 1024))" "$status" "$stats"
}

ooc=("$bin" query "$g1/*.csv" --memory-limit "$limit" --spill-dir "$scratch" --stats)

cat > "$scratch/q_duckdb_ooc.py" <<'EOF'
import sys, duckdb
q, data, scratch, limit = sys.argv[1:5]
T = f"read_csv_auto('{data}/*.csv')"
sql = {
    "q1": f"SELECT id1, sum(v1) AS v1 FROM {T} GROUP BY id1",
    "q3": f"SELECT id3, sum(v1) AS v1, avg(v3) AS v3 FROM {T} GROUP BY id3",
    "q10": f"SELECT id1, id2, id3, id4, id5, id6, sum(v3) AS v3, count(*) AS count FROM {T} "
           "GROUP BY id1, id2, id3, id4, id5, id6",
    "set_index": f"SELECT * FROM {T} ORDER BY id6",
}[q]
con = duckdb.connect()
con.execute(f"SET memory_limit='{limit}'")
con.execute("SET threads=2")
con.execute(f"SET temp_directory='{scratch}/duckdb.tmp'")
con.execute(f"COPY ({sql}) TO '{scratch}/duck-{q}.csv' (HEADER, DELIMITER ',')")
EOF

cat > "$scratch/q_dask_ooc.py" <<'EOF'
import sys, dask, dask.dataframe as dd
dask.config.set(scheduler="threads")
q, data, scratch, split_out = sys.argv[1:5]
ddf = dd.read_csv(f"{data}/*.csv")
if q == "q1":
    ddf.groupby("id1").agg({"v1": "sum"}).compute().to_csv(f"{scratch}/dask-q1.csv")
elif q == "q3":
    ddf.groupby("id3").agg({"v1": "sum", "v3": "mean"}).compute().to_csv(f"{scratch}/dask-q3.csv")
elif q == "set_index":
    ddf.set_index("id6").to_csv(f"{scratch}/dask-si-*.csv")
else:
    keys = ["id1", "id2", "id3", "id4", "id5", "id6"]
    ddf.groupby(keys).agg({"v3": "sum", "v1": "size"}, split_out=int(split_out)) \
       .to_csv(f"{scratch}/dask-q10-*.csv")
EOF

# df_spec QUERY: the JSON that benches/memory/q_peer.py takes for DataFusion.
df_spec() {
  local sql
  case $1 in
    q1) sql="SELECT id1, sum(v1) AS v1 FROM t GROUP BY id1" ;;
    q3) sql="SELECT id3, sum(v1) AS v1, avg(v3) AS v3 FROM t GROUP BY id3" ;;
    q10) sql="SELECT id1, id2, id3, id4, id5, id6, sum(v3) AS v3, count(*) AS count FROM t GROUP BY id1, id2, id3, id4, id5, id6" ;;
    set_index) sql="SELECT * FROM t ORDER BY id6" ;;
  esac
  local bytes
  bytes=$(python3 -c "import re,sys; n,u=re.fullmatch(r'([0-9.]+)\s*([A-Za-z]*)',sys.argv[1]).groups(); print(int(float(n)*{'':1,'B':1,'KB':1e3,'MB':1e6,'GB':1e9,'KIB':1024,'MIB':2**20,'GIB':2**30}[u.upper()]))" "$limit")
  printf '{"sql": "%s", "tables": {"t": "%s"}, "limit": %s, "threads": %s, "spill": "%s"}' \
    "$sql" "$g1" "$bytes" "$(nproc)" "$scratch/df.tmp"
}

echo "outcore $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM; $(date -u +%F)"
peers=${PEERS:-duckdb datafusion dask}
has_peer() { [ -x "$py" ] && [ -z "${NO_PEERS:-}" ] && [[ " $peers " == *" $1 "* ]]; }

# The files are read once before the first run, so that no engine pays for a
# cold page cache that the next one finds warm (4.96 GB fits the RAM of the
# machines this was measured on; on a smaller one every engine reads from disk).
cat "$g1"/*.csv > /dev/null
if [ -n "${SWEEP:-}" ]; then
  # The memory-limit sweep: q1 and q3 at each limit in SWEEP (outcore, DuckDB), and
  # Dask once (it has no limit).
  echo "data: $g1 ($size_mb MB); memory-limit sweep: $SWEEP"
  echo
  echo "| query @ limit | engine | seconds | peak MB | finished | outcore --stats |"
  echo "|---|---|---|---|---|---|"
  for l in $SWEEP; do
    run_ooc=("$bin" query "$g1/*.csv" --memory-limit "$l" --spill-dir "$scratch" --stats --format csv)
    measure "q1 @ $l" outcore "${run_ooc[@]}" --groupby id1 --agg 'sum(v1)'
    measure "q3 @ $l" outcore "${run_ooc[@]}" --groupby id3 --agg 'sum(v1), mean(v3)'
    if has_peer duckdb; then
      for q in q1 q3; do
        measure "$q @ $l" duckdb "$py" "$scratch/q_duckdb_ooc.py" "$q" "$g1" "$scratch" "$l"
        rm -f "$scratch"/duck-*.csv
      done
    fi
  done
  if has_peer dask; then
    for q in q1 q3; do
      measure "$q (no limit)" dask "$py" "$scratch/q_dask_ooc.py" "$q" "$g1" "$scratch" "$split_out"
      rm -f "$scratch"/dask-*.csv
    done
  fi
  exit 0
fi
echo "data: $g1 ($size_mb MB); memory limit $limit; q10 split_out ${split_out:-not given}"
echo
echo "| query | engine | seconds | peak MB | finished | outcore --stats |"
echo "|---|---|---|---|---|---|"
queries=${QUERIES:-q1 q3 q10 set_index}
wants() { [[ " $queries " == *" $1 "* ]]; }
if wants q1; then
  measure "q1 sum v1 by id1" outcore "${ooc[@]}" --groupby id1 --agg 'sum(v1)' --format csv
fi
if wants q3; then
  measure "q3 sum v1, mean v3 by id3" outcore "${ooc[@]}" --groupby id3 --agg 'sum(v1), mean(v3)' --format csv
fi
if wants q10; then
  rm -rf "$scratch/q10"
  measure "q10 sum v3, count by id1..id6" outcore "${ooc[@]}" --groupby id1,id2,id3,id4,id5,id6 \
    --agg 'sum(v3), size() as count' ${split_out:+--split-out "$split_out"} --out "$scratch/q10" --format csv
  if [ -d "$scratch/q10" ]; then
    echo "  q10 answer: $(cat "$scratch"/q10/*.csv | grep -vc '^id1,') groups in $(ls "$scratch/q10" | wc -l) files" >&2
  fi
  rm -rf "$scratch/q10"
fi
if wants set_index; then
  rm -rf "$scratch/si"
  measure "set_index id6" outcore "${ooc[@]}" --set-index id6 --out "$scratch/si" --format csv
  if [ -d "$scratch/si" ]; then
    echo "  set_index answer: $(cat "$scratch"/si/*.csv | grep -vc '^id1,') rows in $(ls "$scratch/si" | wc -l) files" >&2
  fi
  rm -rf "$scratch/si"
fi
for q in q1 q3 q10 set_index; do
  wants "$q" || continue
  if has_peer duckdb; then
    measure "$q" duckdb "$py" "$scratch/q_duckdb_ooc.py" "$q" "$g1" "$scratch" "$limit"; rm -f "$scratch"/duck-*.csv
  fi
  if has_peer dask; then
    measure "$q" dask "$py" "$scratch/q_dask_ooc.py" "$q" "$g1" "$scratch" "${split_out:-128}"; rm -f "$scratch"/dask-*.csv
  fi
  if has_peer datafusion; then
    mkdir -p "$scratch/df.tmp"
    measure "$q" datafusion "$py" benches/memory/q_peer.py datafusion "$(df_spec "$q")" "$scratch/df-$q.csv"
    if [ -f "$scratch/df-$q.csv" ]; then
      echo "  datafusion $q answer: $(($(wc -l < "$scratch/df-$q.csv") - 1)) rows" >&2
    fi
    rm -rf "$scratch"/df-*.csv "$scratch/df.tmp"
  fi
done
