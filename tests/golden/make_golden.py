"""Writes the resample goldens: tests/golden/resample/input.csv and one expected
answer per case (<case>.csv), computed with pandas.

Run from the repository root with any Python that has pandas (>= 2.2) and numpy:
    python tests/golden/make_golden.py
CI does not run pandas; the outputs are committed. The Rust test
(tests/it/timeseries.rs) reads input.csv, resamples it with outcore split into
many partitions, and compares with these files (floats to 1e-9 relative).

The data: 4,000 rows over about 75 days from 2000-01-01 with irregular gaps (many
short, some of several days, so empty bins occur at every rule), duplicate
timestamps, rows exactly on bin edges, an int column `n`, and a float column `x` with 5% missing values.
"""
import os

import numpy as np
import pandas as pd

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resample")

rng = np.random.default_rng(6)
rows = 4000
gaps = rng.exponential(1500.0, rows)  # seconds
gaps[rng.random(rows) < 0.004] += 3 * 86400  # a few multi-day holes
gaps[rng.random(rows) < 0.05] = 0  # duplicates
t0 = pd.Timestamp("2000-01-01 00:17:00")
ts = t0 + pd.to_timedelta(np.cumsum(gaps).round(3), unit="s")
# Rows exactly on bin edges (midnights, Mondays, month starts, 6-hour marks), where
# closed='right' and the W/ME edge adjustment matter.
edges = pd.to_datetime(["2000-01-02", "2000-01-03", "2000-01-05 06:00", "2000-01-05 12:00",
                        "2000-01-10", "2000-01-31", "2000-02-01", "2000-03-01", "2000-03-06"], format="ISO8601")
ts = pd.DatetimeIndex(np.sort(np.concatenate([ts.values, edges.values])))[:rows]
x = rng.normal(0.0, 1.0, rows).round(6)
x[rng.random(rows) < 0.05] = np.nan
n = rng.integers(-50, 1000, rows)
df = pd.DataFrame({"timestamp": ts, "n": n, "x": x})
df.to_csv(os.path.join(HERE, "input.csv"), index=False, date_format="%Y-%m-%d %H:%M:%S.%f")
df = df.set_index("timestamp")

AGGS = ["sum", "mean", "count", "min", "max", "std", "var", "first", "last"]
CASES = {
    # name: (rule, closed, label[, aggregations]); fine rules get fewer columns
    # to keep the files small.
    "h": ("h", None, None, ["count", "mean"]),
    "3h": ("3h", None, None),
    "45min": ("45min", None, None, ["count", "mean"]),
    "6h_right": ("6h", "right", "right"),
    "6h_closed_right": ("6h", "right", None),
    "37min": ("37min", None, None, ["count", "sum"]),
    "D": ("D", None, None),
    "2D": ("2D", None, None),
    "W": ("W", None, None),
    "ME": ("ME", None, None),
    "MS": ("MS", None, None),
}
for name, (rule, closed, label, *aggs) in CASES.items():
    aggs = aggs[0] if aggs else AGGS
    r = df.resample(rule, closed=closed, label=label)
    out = pd.DataFrame(index=r.sum().index)
    for col in ["x", "n"]:
        for a in aggs:
            out[f"{a}({col})"] = getattr(r[col], a)()
    if aggs is AGGS:
        ohlc = r["x"].ohlc()
        for k in ["open", "high", "low", "close"]:
            out[f"{k}(x)"] = ohlc[k]
    out.index.name = "timestamp"
    out.to_csv(os.path.join(HERE, f"{name}.csv"), date_format="%Y-%m-%d %H:%M:%S", float_format="%.17g")
print("wrote", len(CASES), "cases to", HERE)
