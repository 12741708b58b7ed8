"""Polars answers: python q_polars.py QUERY DATA_DIR OUT_CSV (lazy scan, streaming collect)."""
import inproc  # noqa: I001  (first: times the imports below)
import sys

import polars as pl

inproc.imported()

query, data, out = sys.argv[1:4]
c = pl.col
JOINS = {  # db-benchmark's join questions on the J1 tables: (right table, key, how)
    "j1": ("small", "id1", "inner"),
    "j2": ("medium", "id2", "inner"),
    "j3": ("medium", "id2", "left"),
    "j4": ("medium", "id5", "inner"),
    "j5": ("big", "id3", "inner"),
}
if query in JOINS:
    right, on, how = JOINS[query]
    x = pl.scan_csv(f"{data}/x/*.csv")
    y = pl.scan_csv(f"{data}/{right}/*.csv")
    # Reduced to one row: rows, sum v1, sum v2, non-null v2.
    q = x.join(y, on=on, how=how).select(
        pl.len().alias("n"), c("v1").sum(), c("v2").sum(), c("v2").count().alias("n_v2"))
elif query.startswith("b"):
    src = pl.scan_ndjson(f"{data}/*.json")
else:
    src = pl.scan_csv(f"{data}/*.csv", try_parse_dates=query in ("ts2", "ts4", "ts5"))

if query in JOINS:
    pass
elif query == "q1":
    q = src.group_by("id1").agg(c("v1").sum())
elif query == "q2":
    q = src.group_by("id1", "id2").agg(c("v1").sum())
elif query == "q3":
    q = src.group_by("id3").agg(c("v1").sum(), c("v3").mean())
elif query == "q4":
    q = src.group_by("id4").agg(c("v1").mean(), c("v2").mean(), c("v3").mean())
elif query == "q5":
    q = src.group_by("id6").agg(c("v1").sum(), c("v2").sum(), c("v3").sum())
elif query == "q6":
    q = src.group_by("id4", "id5").agg(c("v3").median().alias("median_v3"), c("v3").std().alias("sd_v3"))
elif query == "q7":
    q = src.group_by("id3").agg((c("v1").max() - c("v2").min()).alias("range_v1_v2"))
elif query == "q8":
    q = src.group_by("id6").agg(c("v3").top_k(2).alias("largest2_v3")).explode("largest2_v3")
elif query == "q9":
    q = src.group_by("id2", "id4").agg((pl.corr("v1", "v2") ** 2).alias("r2"))
elif query == "q10":
    q = src.group_by("id1", "id2", "id3", "id4", "id5", "id6").agg(c("v3").sum(), pl.len().alias("count"))
elif query == "ts1":
    q = src.filter(c("y") > 0).group_by("name").agg(c("x").std())
elif query == "ts2":
    q = src.group_by(c("timestamp").dt.truncate("1h")).agg(c("x").mean(), c("y").mean())
elif query == "ts3":
    q = src.sort("id")
elif query == "b1":
    q = src.filter(c("age") > 30).select(pl.len().alias("count"))
elif query == "b2":
    q = src.group_by("occupation").agg(pl.len().alias("count"))
elif query == "b3":
    q = src.select(c("transactions").explode().struct.field("amount").mean())
elif query == "b4":
    q = (src.select("name", "transactions").explode("transactions")
         .group_by("name").agg(c("transactions").struct.field("amount").sum()))
elif query == "ts4":
    # One CSV per day into OUT.d.
    import os
    os.makedirs(f"{out}.d", exist_ok=True)
    df = src.with_columns(day=c("timestamp").dt.date()).collect()
    for (day,), part in df.partition_by("day", as_dict=True, maintain_order=True).items():
        part.drop("day").write_csv(f"{out}.d/{day}.csv")
    sys.exit(0)
elif query == "ts5":
    df = src.collect()  # in memory: Polars' persist
    t = c("timestamp")
    a = df.group_by(t.dt.truncate("1h")).agg(c("x").mean().alias("a"), c("y").mean().alias("b"))
    b = df.group_by(t.dt.truncate("1d")).agg(c("x").max().alias("a"), c("y").min().alias("b"))
    d = df.group_by(t.dt.truncate("6h")).agg(c("x").count().cast(pl.Float64).alias("a"),
                                            c("id").sum().cast(pl.Float64).alias("b"))
    q = pl.concat([a, b, d]).lazy()
else:
    sys.exit(f"unknown query {query}")

try:
    df = q.collect(engine="streaming")
except TypeError:  # older Polars: no engine= argument
    df = q.collect()
df.write_csv(out)
