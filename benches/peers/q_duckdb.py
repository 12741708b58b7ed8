"""DuckDB answers: python q_duckdb.py QUERY DATA_DIR OUT_CSV (SQL over read_csv_auto(glob), and
read_json(glob) for the b* queries on JSON lines)."""
import inproc  # noqa: I001  (first: times the imports below)
import sys

import duckdb

inproc.imported()

query, data, out = sys.argv[1:4]
T = f"read_csv_auto('{data}/*.csv')"
J = f"read_json('{data}/*.json', format='newline_delimited')"
SQL = {
    "q1": f"SELECT id1, sum(v1) AS v1 FROM {T} GROUP BY id1",
    "q2": f"SELECT id1, id2, sum(v1) AS v1 FROM {T} GROUP BY id1, id2",
    "q3": f"SELECT id3, sum(v1) AS v1, avg(v3) AS v3 FROM {T} GROUP BY id3",
    "q4": f"SELECT id4, avg(v1) AS v1, avg(v2) AS v2, avg(v3) AS v3 FROM {T} GROUP BY id4",
    "q5": f"SELECT id6, sum(v1) AS v1, sum(v2) AS v2, sum(v3) AS v3 FROM {T} GROUP BY id6",
    "q6": f"SELECT id4, id5, median(v3) AS median_v3, stddev_samp(v3) AS sd_v3 FROM {T} GROUP BY id4, id5",
    "q7": f"SELECT id3, max(v1) - min(v2) AS range_v1_v2 FROM {T} GROUP BY id3",
    "q8": f"SELECT id6, v3 AS largest2_v3 FROM (SELECT id6, v3, row_number() OVER "
          f"(PARTITION BY id6 ORDER BY v3 DESC) AS rk FROM {T} WHERE v3 IS NOT NULL) WHERE rk <= 2",
    "q9": f"SELECT id2, id4, pow(corr(v1, v2), 2) AS r2 FROM {T} GROUP BY id2, id4",
    "q10": f"SELECT id1, id2, id3, id4, id5, id6, sum(v3) AS v3, count(*) AS count FROM {T} "
           f"GROUP BY id1, id2, id3, id4, id5, id6",
    "ts1": f"SELECT name, stddev_samp(x) AS x FROM {T} WHERE y > 0 GROUP BY name",
    "ts2": f"SELECT date_trunc('hour', timestamp) AS timestamp, avg(x) AS x, avg(y) AS y FROM {T} GROUP BY 1",
    "ts3": f"SELECT * FROM {T} ORDER BY id",
    "b1": f"SELECT count(*) AS count FROM {J} WHERE age > 30",
    "b2": f"SELECT occupation, count(*) AS count FROM {J} GROUP BY occupation",
    "b3": f"SELECT avg(u.amount) AS mean FROM (SELECT unnest(transactions) AS u FROM {J})",
    "b4": f"SELECT name, sum(u.amount) AS amount FROM (SELECT name, unnest(transactions) AS u FROM {J}) GROUP BY name",
}
# db-benchmark's join questions on the J1 tables, each reduced to one row: rows, sum v1,
# sum v2, non-null v2.
X = f"read_csv_auto('{data}/x/*.csv')"
for q, (right, on, how) in {
    "j1": ("small", "id1", "INNER"),
    "j2": ("medium", "id2", "INNER"),
    "j3": ("medium", "id2", "LEFT"),
    "j4": ("medium", "id5", "INNER"),
    "j5": ("big", "id3", "INNER"),
}.items():
    SQL[q] = (f"SELECT count(*) AS n, sum(v1) AS v1, sum(v2) AS v2, count(v2) AS n_v2 "
              f"FROM {X} AS x {how} JOIN read_csv_auto('{data}/{right}/*.csv') AS y USING ({on})")
if query == "ts4":
    # One CSV per day into OUT.d/day=.../ (the day column becomes the folder).
    duckdb.sql(f"COPY (SELECT *, strftime(timestamp, '%Y-%m-%d') AS day FROM {T}) TO '{out}.d' "
               f"(FORMAT csv, HEADER, PARTITION_BY (day))")
    sys.exit(0)
if query == "ts5":
    con = duckdb.connect()
    con.sql(f"CREATE TABLE t AS SELECT * FROM {T}")  # DuckDB's persist: a table in memory
    qs = ["SELECT date_trunc('hour', timestamp), avg(x), avg(y) FROM t GROUP BY 1",
          "SELECT date_trunc('day', timestamp), max(x), min(y) FROM t GROUP BY 1",
          "SELECT time_bucket(INTERVAL '6 hours', timestamp), count(x), sum(id) FROM t GROUP BY 1"]
    import csv
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "a", "b"])
        for q in qs:
            w.writerows(con.execute(q).fetchall())
    sys.exit(0)
if query not in SQL:
    sys.exit(f"unknown query {query}")
duckdb.sql(f"COPY ({SQL[query]}) TO '{out}' (HEADER, DELIMITER ',')")
