"""chDB (ClickHouse in process) answers: python q_chdb.py QUERY DATA_DIR OUT_CSV (SQL over the
file() table function: CSVWithNames for the CSV sets, JSONEachRow for the b* queries). The
answer is written as CSV with a header. Optional peer: run.py installs chdb only when the
engine is selected (CHDB_PACKAGES) and shows "not installed" if that fails."""
import inproc  # noqa: I001  (first: times the imports below)
import sys

import chdb

inproc.imported()

query, data, out = sys.argv[1:4]
T = f"file('{data}/*.csv', 'CSVWithNames')"
J = f"file('{data}/*.json', 'JSONEachRow')"
SQL = {
    "q1": f"SELECT id1, sum(v1) AS v1 FROM {T} GROUP BY id1",
    "q2": f"SELECT id1, id2, sum(v1) AS v1 FROM {T} GROUP BY id1, id2",
    "q3": f"SELECT id3, sum(v1) AS v1, avg(v3) AS v3 FROM {T} GROUP BY id3",
    "q4": f"SELECT id4, avg(v1) AS v1, avg(v2) AS v2, avg(v3) AS v3 FROM {T} GROUP BY id4",
    "q5": f"SELECT id6, sum(v1) AS v1, sum(v2) AS v2, sum(v3) AS v3 FROM {T} GROUP BY id6",
    # ClickHouse's median() is approximate; the exact one that averages the two middle
    # values (as pandas) is quantileExactInclusive.
    "q6": f"SELECT id4, id5, quantileExactInclusive(0.5)(v3) AS median_v3, stddevSamp(v3) AS sd_v3 "
          f"FROM {T} GROUP BY id4, id5",
    "q7": f"SELECT id3, max(v1) - min(v2) AS range_v1_v2 FROM {T} GROUP BY id3",
    "q8": f"SELECT id6, v3 AS largest2_v3 FROM (SELECT id6, v3, row_number() OVER "
          f"(PARTITION BY id6 ORDER BY v3 DESC) AS rk FROM {T} WHERE v3 IS NOT NULL) WHERE rk <= 2",
    "q9": f"SELECT id2, id4, pow(corr(v1, v2), 2) AS r2 FROM {T} GROUP BY id2, id4",
    "q10": f"SELECT id1, id2, id3, id4, id5, id6, sum(v3) AS v3, count() AS count FROM {T} "
           f"GROUP BY id1, id2, id3, id4, id5, id6",
    "ts1": f"SELECT name, stddevSamp(x) AS x FROM {T} WHERE y > 0 GROUP BY name",
    "ts2": f"SELECT toStartOfHour(timestamp) AS timestamp, avg(x) AS x, avg(y) AS y FROM {T} GROUP BY 1",
    "ts3": f"SELECT * FROM {T} ORDER BY id",
    "b1": f"SELECT count() AS count FROM {J} WHERE age > 30",
    "b2": f"SELECT occupation, count() AS count FROM {J} GROUP BY occupation",
    "b3": f"SELECT avg(u.amount) AS mean FROM (SELECT arrayJoin(transactions) AS u FROM {J})",
    "b4": f"SELECT name, sum(u.amount) AS amount FROM (SELECT name, arrayJoin(transactions) AS u "
          f"FROM {J}) GROUP BY name",
}
# db-benchmark's join questions, each reduced to one row; join_use_nulls gives SQL's NULLs
# (not ClickHouse's default values) to a left join's unmatched rows.
for q, (right, on, how) in {
    "j1": ("small", "id1", "INNER"),
    "j2": ("medium", "id2", "INNER"),
    "j3": ("medium", "id2", "LEFT"),
    "j4": ("medium", "id5", "INNER"),
    "j5": ("big", "id3", "INNER"),
}.items():
    # Aliases differ from the columns' names: ClickHouse resolves a name to an alias
    # first, so `sum(v2) AS v2, count(v2)` nested one aggregation in another.
    SQL[q] = (f"SELECT count() AS n, sum(x.v1) AS sum_v1, sum(y.v2) AS sum_v2, "
              f"count(y.v2) AS n_v2 "
              f"FROM file('{data}/x/*.csv', 'CSVWithNames') AS x {how} JOIN "
              f"file('{data}/{right}/*.csv', 'CSVWithNames') AS y USING ({on}) "
              f"SETTINGS join_use_nulls = 1")
if query not in SQL:
    sys.exit(f"unknown query {query}")
res = chdb.query(SQL[query], "CSVWithNames")
with open(out, "wb") as f:
    f.write(res.bytes() if hasattr(res, "bytes") else str(res).encode())
