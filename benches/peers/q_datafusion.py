"""DataFusion answers: python q_datafusion.py QUERY DATA_DIR OUT_CSV (SQL over CSV folders
registered as tables; JSON lines for the b* queries). The answer streams batch by batch
into OUT_CSV through pyarrow's CSV writer. Partitions = the machine's cores."""
import inproc  # noqa: I001  (first: times the imports below)
import os
import sys

from datafusion import SessionConfig, SessionContext
from stream_csv import write

inproc.imported()

query, data, out = sys.argv[1:4]
ctx = SessionContext(SessionConfig().with_target_partitions(os.cpu_count()))

SQL = {
    "q1": "SELECT id1, sum(v1) AS v1 FROM t GROUP BY id1",
    "q2": "SELECT id1, id2, sum(v1) AS v1 FROM t GROUP BY id1, id2",
    "q3": "SELECT id3, sum(v1) AS v1, avg(v3) AS v3 FROM t GROUP BY id3",
    "q4": "SELECT id4, avg(v1) AS v1, avg(v2) AS v2, avg(v3) AS v3 FROM t GROUP BY id4",
    "q5": "SELECT id6, sum(v1) AS v1, sum(v2) AS v2, sum(v3) AS v3 FROM t GROUP BY id6",
    "q6": "SELECT id4, id5, median(v3) AS median_v3, stddev_samp(v3) AS sd_v3 FROM t GROUP BY id4, id5",
    "q7": "SELECT id3, max(v1) - min(v2) AS range_v1_v2 FROM t GROUP BY id3",
    "q8": "SELECT id6, v3 AS largest2_v3 FROM (SELECT id6, v3, row_number() OVER "
          "(PARTITION BY id6 ORDER BY v3 DESC) AS rk FROM t WHERE v3 IS NOT NULL) WHERE rk <= 2",
    "q9": "SELECT id2, id4, power(corr(v1, v2), 2) AS r2 FROM t GROUP BY id2, id4",
    "q10": "SELECT id1, id2, id3, id4, id5, id6, sum(v3) AS v3, count(*) AS count FROM t "
           "GROUP BY id1, id2, id3, id4, id5, id6",
    "ts1": "SELECT name, stddev_samp(x) AS x FROM t WHERE y > 0 GROUP BY name",
    "ts2": "SELECT date_trunc('hour', timestamp) AS timestamp, avg(x) AS x, avg(y) AS y FROM t GROUP BY 1",
    "ts3": "SELECT * FROM t ORDER BY id",
    "b1": "SELECT count(*) AS count FROM r WHERE age > 30",
    "b2": "SELECT occupation, count(*) AS count FROM r GROUP BY occupation",
    "b3": "SELECT avg(u['amount']) AS mean FROM (SELECT unnest(transactions) AS u FROM r)",
    "b4": "SELECT name, sum(u['amount']) AS amount FROM (SELECT name, unnest(transactions) AS u FROM r) "
          "GROUP BY name",
}
JOINS = {"j1": ("small", "id1", "INNER"), "j2": ("medium", "id2", "INNER"),
         "j3": ("medium", "id2", "LEFT"), "j4": ("medium", "id5", "INNER"),
         "j5": ("big", "id3", "INNER")}
for q, (right, on, how) in JOINS.items():
    SQL[q] = (f"SELECT count(*) AS n, sum(v1) AS v1, sum(v2) AS v2, count(v2) AS n_v2 "
              f"FROM x {how} JOIN y USING ({on})")


if query in JOINS:
    ctx.register_csv("x", f"{data}/x", file_extension=".csv")
    ctx.register_csv("y", f"{data}/{JOINS[query][0]}", file_extension=".csv")
elif query.startswith("b"):
    ctx.register_json("r", data, file_extension=".json")
else:
    ctx.register_csv("t", data, file_extension=".csv")

if query == "ts5":
    # DataFusion's persist: the table cached in memory, then three aggregations of it.
    ctx.register_table("c", ctx.sql("SELECT * FROM t").cache())
    qs = ["SELECT date_trunc('hour', timestamp) AS timestamp, avg(x) AS a, avg(y) AS b FROM c GROUP BY 1",
          "SELECT date_trunc('day', timestamp) AS timestamp, max(x) AS a, min(y) AS b FROM c GROUP BY 1",
          "SELECT date_bin(INTERVAL '6 hours', timestamp) AS timestamp, CAST(count(x) AS DOUBLE) AS a, "
          "CAST(sum(id) AS DOUBLE) AS b FROM c GROUP BY 1"]
    df = ctx.sql(" UNION ALL ".join(f"({q})" for q in qs))
elif query in SQL:
    df = ctx.sql(SQL[query])
else:
    sys.exit(f"datafusion: query {query} is not in this script")
write(df, out)
