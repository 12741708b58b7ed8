#!/usr/bin/env python3
"""The memory benchmark: does each engine answer each query shape under a memory limit,
how fast, and how far above the limit does its process go?

    python3 benches/memory/run.py [--smoke] [--limits 64MB,200MB] [--shapes q3,q10,...]
                                  [--engines outcore,duckdb,datafusion] [--rows 1e7]
                                  [--data DIR] [--timeout 900]

For every (shape, limit) each engine runs once, in its own process, under
`/usr/bin/time -f '%e %M'` (peak RSS measured from outside the process), on the same
files:
  outcore     `outcore query|bag ... --memory-limit LIMIT` (no other tuning flag)
  duckdb      SET memory_limit = LIMIT, threads = cores, a temp_directory to spill into
  datafusion  a FairSpillPool of LIMIT bytes, target_partitions = cores, an OS disk manager
Each answer is written to a CSV file (streamed, never gathered in Python) and reduced to
a checksum (rows; rounded sums of the numeric columns), which must agree across engines.
The table prints seconds, peak RSS / limit, and whether the engine answered (✓ agrees
with the other answers, ✗ disagrees, "refused" with the first line of its error).
Raw runs are appended to benches/memory/runs/<YYYY-MM-DD>-<host>.jsonl.

Shapes (G1 = the db-benchmark groupby table, J1 = the join tables, records = JSON lines):
  q1      sum v1 by id1                      few groups (100)
  q3      sum v1, mean v3 by id3             1e5 groups at 1e7 rows
  q10     sum v3, count by id1..id6          about one group per row
  q2k     sum v1 by id1,id2 at K=1e5         about 1e7 groups
  q6      median, std v3 by id4,id5          holistic: every value kept until the median
  hotjoin G1 joined on id4 with 3 rows per key, aggregated: many matches per key
  j5      J1 x joined with big on id3 (N x N rows, unique keys), aggregated
  setidx  set_index(id6): every row out, sorted by id6
  sort    every row out, sorted by v3
  nulls   set_index(k) of 4e6 rows where k is 90 % null: every row out, nulls last
  bag     sum of transactions[].amount by name over JSON records (a bag groupby)

Engines run from benches/peers/.venv (made by benches/peers/run.py, or here when missing).
"""
import argparse
import datetime
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent / "peers"))
import run as peers  # noqa: E402  (the peers driver: binary, venv, data sets, timing, checksums)

BIN = peers.BIN
ENGINES = ["outcore", "duckdb", "datafusion"]

# name -> (data set, how outcore runs it, the SQL the peers run, table names)
# SQL tables: t = the main table, y = the right side of a join; records = the JSON set.
AGG_JOIN = "size() as n, sum(v1) as v1, sum(v2) as v2, count(v2) as n_v2"
SHAPES = {
    "q1": ("g1", ["query", "{glob}", "--groupby", "id1", "--agg", "sum(v1)"],
           "SELECT id1, sum(v1) AS v1 FROM t GROUP BY id1"),
    "q3": ("g1", ["query", "{glob}", "--groupby", "id3", "--agg", "sum(v1), mean(v3)"],
           "SELECT id3, sum(v1) AS v1, avg(v3) AS v3 FROM t GROUP BY id3"),
    "q10": ("g1", ["query", "{glob}", "--groupby", "id1,id2,id3,id4,id5,id6", "--agg", "sum(v3), size()"],
            "SELECT id1, id2, id3, id4, id5, id6, sum(v3) AS v3, count(*) AS n FROM t "
            "GROUP BY id1, id2, id3, id4, id5, id6"),
    "q2k": ("g1k", ["query", "{glob}", "--groupby", "id1,id2", "--agg", "sum(v1)"],
            "SELECT id1, id2, sum(v1) AS v1 FROM t GROUP BY id1, id2"),
    "q6": ("g1", ["query", "{glob}", "--groupby", "id4,id5", "--agg", "median(v3) as m, std(v3) as s"],
           "SELECT id4, id5, median(v3) AS m, stddev_samp(v3) AS s FROM t GROUP BY id4, id5"),
    "hotjoin": ("g1", ["query", "{glob}", "--join", "{hot}", "--on", "id4", "--agg",
                       "size() as n, sum(v1) as v1, sum(w) as w"],
                "SELECT count(*) AS n, sum(v1) AS v1, sum(w) AS w FROM t JOIN y USING (id4)"),
    "j5": ("j1", ["query", "{x}", "--join", "{big}", "--on", "id3", "--agg", AGG_JOIN],
           "SELECT count(*) AS n, sum(t.v1) AS v1, sum(y.v2) AS v2, count(y.v2) AS n_v2 "
           "FROM t JOIN y USING (id3)"),
    "setidx": ("g1", ["query", "{glob}", "--set-index", "id6"], "SELECT * FROM t ORDER BY id6"),
    "sort": ("g1", ["query", "{glob}", "--sort", "v3"], "SELECT * FROM t ORDER BY v3"),
    "nulls": ("nulls", ["query", "{glob}", "--set-index", "k"],
              "SELECT * FROM t ORDER BY k NULLS LAST"),
    "bag": ("rec", ["bag", "{json}", "--groupby", "name", "--agg", "sum(transactions[].amount)"],
            "SELECT name, sum(u.amount) AS amount FROM "
            "(SELECT name, unnest(transactions) AS u FROM records) GROUP BY name"),
}
HOT_ROWS_PER_KEY = 3

PEER_SCRIPT = HERE / "q_peer.py"
NULL_ROWS = 4_000_000


def nulls_table(data):
    """NULL_ROWS rows in 4 CSV files (about 90 MB): `i` the row number, `k` set on
    one row in ten (an integer below 1e6), `x` a float, `s` one of 1000 strings."""
    folder = data / "nulls_4e6"
    if not folder.is_dir():
        import random
        rng = random.Random(7)
        tmp = data / (folder.name + ".partial")
        tmp.mkdir(parents=True, exist_ok=True)
        per = NULL_ROWS // 4
        for f in range(4):
            lines = ["i,k,x,s\n"]
            for i in range(f * per, (f + 1) * per):
                k = str(rng.randrange(1_000_000)) if rng.random() < 0.1 else ""
                lines.append(f"{i},{k},{rng.random():.6f},k{rng.randrange(1000)}\n")
            (tmp / f"part-{f}.csv").write_text("".join(lines))
        tmp.rename(folder)
    return folder


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny data in a temp folder, outcore only, 2 shapes")
    p.add_argument("--limits", default="64MB,200MB")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--rows", default="1e7")
    p.add_argument("--records", default="1.2e6")
    p.add_argument("--data", default=str(ROOT / "benches" / "data"))
    p.add_argument("--timeout", type=float, default=900)
    a = p.parse_args()
    a.limits = [x.strip() for x in a.limits.split(",") if x.strip()]
    a.shapes = [x.strip() for x in a.shapes.split(",") if x.strip()]
    a.engines = [x.strip() for x in a.engines.split(",") if x.strip()]
    for s in a.shapes:
        if s not in SHAPES:
            p.error(f"unknown shape {s!r}; the shapes are {', '.join(SHAPES)}")
    if a.smoke:
        a.rows, a.records, a.engines = "2e4", "2e3", ["outcore"]
        a.limits, a.shapes = ["16MB"], ["q1", "q10"]
    return a


def parse_bytes(text):
    units = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "KIB": 1024, "MIB": 1 << 20, "GIB": 1 << 30, "B": 1}
    t = text.strip().upper()
    for u in sorted(units, key=len, reverse=True):
        if t.endswith(u):
            return int(float(t[: -len(u)]) * units[u])
    return int(float(t))


def hot_table(data):
    """A right side with HOT_ROWS_PER_KEY rows for each id4 in 1..100: every G1 row
    (K=100) matches that many rows."""
    folder = data / f"hot_{HOT_ROWS_PER_KEY}"
    if not folder.is_dir():
        tmp = data / (folder.name + ".partial")
        tmp.mkdir(parents=True, exist_ok=True)
        with open(tmp / "hot.csv", "w") as f:
            f.write("id4,w\n")
            for k in range(1, 101):
                for j in range(HOT_ROWS_PER_KEY):
                    f.write(f"{k},{j + 0.5}\n")
        tmp.rename(folder)
    return folder


def command(engine, shape, sets, answer, limit, spill):
    key, argv, sql = SHAPES[shape]
    folder = sets[key]
    if engine == "outcore":
        fill = {
            "glob": f"{folder}/*.csv",
            "json": f"{folder}/*.json",
            "hot": f"{sets.get('hot')}/*.csv",
            "x": f"{folder}/x/*.csv",
            "big": f"{folder}/big/*.csv",
        }
        args = [x.format(**fill) for x in argv]
        return [str(BIN), *args, "--memory-limit", limit, "--spill-dir", str(spill),
                "--stats", "--format", "csv", "--output-to", str(answer)]
    tables = {"g1": {"t": f"{folder}"}, "g1k": {"t": f"{folder}"}, "nulls": {"t": f"{folder}"},
              "j1": {"t": f"{folder}/x", "y": f"{folder}/big"},
              "rec": {"records": f"{folder}"}}[key]
    if shape == "hotjoin":
        tables = {"t": str(folder), "y": str(sets["hot"])}
    spec = json.dumps({"sql": sql, "tables": tables, "limit": parse_bytes(limit),
                       "threads": os.cpu_count(), "spill": str(spill)})
    return [str(peers.VPY), str(PEER_SCRIPT), engine, spec, str(answer)]


def peak_reserved_mib(err):
    """outcore's own peak of the memory account, from its `--stats` line (MiB)."""
    m = re.search(r"peak reserved ([0-9.]+) (B|KiB|MiB|GiB)", err or "")
    if not m:
        return None
    scale = {"B": 1 / 1048576, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[m.group(2)]
    return float(m.group(1)) * scale


def first_error_line(err):
    for line in err.splitlines():
        s = line.strip()
        if s and not s.startswith("Traceback") and not s.startswith("File "):
            if "rror" in s or "memory" in s.lower() or "exhausted" in s.lower():
                return s[:160]
    lines = [l.strip() for l in err.splitlines() if l.strip()]
    return lines[-1][:160] if lines else ""


def main():
    a = parse_args()
    peers.ensure_binary(False)
    if any(e != "outcore" for e in a.engines):
        peers.PIP_PACKAGES.append("datafusion")
        ensure_venv()
    tmp = tempfile.TemporaryDirectory(prefix="outcore-memory-")
    data = Path(tmp.name) / "data" if a.smoke else Path(a.data).resolve()
    keys = {SHAPES[s][0] for s in a.shapes}
    sets = peers.make_data(data, a.rows, "1", a.records, keys - {"nulls"})
    if "nulls" in keys:
        sets["nulls"] = nulls_table(data)
    if "hotjoin" in a.shapes:
        sets["hot"] = hot_table(data)
    answers = Path(tmp.name) / "answers"
    answers.mkdir()
    host = socket.gethostname()
    today = datetime.date.today().isoformat()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or "?"
    (HERE / "runs").mkdir(exist_ok=True)
    jsonl = HERE / "runs" / f"{today}-{host}.jsonl"
    results = {}
    with open(jsonl, "a") as jl:
        for limit in a.limits:
            for shape in a.shapes:
                for engine in a.engines:
                    answer = answers / f"{engine}-{shape}-{limit}.csv"
                    spill = answers / f"spill-{engine}-{shape}-{limit}"
                    peers.clear(answer)
                    spill.mkdir(exist_ok=True)
                    argv = command(engine, shape, sets, answer, limit, spill)
                    t, m, rc, err = peers.run_once(argv, a.timeout)
                    ok = rc == 0 and t is not None and answer.exists()
                    sums = peers.checksum(answer) if ok else None
                    res = {"secs": t, "rss": m, "ok": ok, "checksum": sums,
                           "reserved": peak_reserved_mib(err) if engine == "outcore" else None,
                           "error": None if ok else (first_error_line(err) or f"exit {rc}")}
                    results[limit, shape, engine] = res
                    rec = {"date": today, "host": host, "commit": commit, "cores": os.cpu_count(),
                           "smoke": a.smoke, "shape": shape, "limit": limit, "engine": engine,
                           "data": str(sets[SHAPES[shape][0]]), "seconds": t,
                           "rss_mb": m and round(m, 1), "reserved_mib": res["reserved"] and round(res["reserved"], 1), "rc": rc, "ok": ok, "checksum": sums,
                           "argv": [str(x) for x in argv], "stderr": None if ok else err[-2000:]}
                    jl.write(json.dumps(rec) + "\n")
                    jl.flush()
                    # Both in MiB: GNU time's %M is KiB, and "64MB" is 64e6 bytes.
                    ratio = m / (parse_bytes(limit) / 2**20) if m else None
                    status = (f"{t:.2f} s, {m:.0f} MiB = {ratio:.2f}x the limit" if ok
                              else f"refused: {res['error']}")
                    peers.log(f"{limit:>6} {shape:8} {engine:10} {status}")
                    subprocess.run(["rm", "-rf", str(spill), str(answer)])

    print()
    print(f"outcore {commit}, {os.cpu_count()} cores, {host}, {today}; data {data}. "
          f"Cells: seconds, peak RSS / limit (measured from outside), ✓ = the answer agrees "
          f"with every other engine's, ✗ = it does not, refused = no answer (the error).")
    head = ["limit", "shape"] + a.engines
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * len(a.engines)) + "|")
    for limit in a.limits:
        lim_mb = parse_bytes(limit) / 2**20  # MiB, as the peak RSS
        for shape in a.shapes:
            answered = [results[limit, shape, e]["checksum"] for e in a.engines
                        if results[limit, shape, e]["ok"]]
            cells = [limit, shape]
            for e in a.engines:
                r = results[limit, shape, e]
                if not r["ok"]:
                    cells.append(f"refused ({(r['error'] or '')[:60]})")
                    continue
                mark = ""
                if len(answered) >= 2:
                    mark = " ✓" if all(c == r["checksum"] for c in answered) else " ✗"
                cells.append(f"{r['secs']:.1f} s, {r['rss'] / lim_mb:.2f}×{mark}")
            print("| " + " | ".join(cells) + " |")
    print()
    for limit in a.limits:
        for shape in a.shapes:
            for e in a.engines:
                r = results[limit, shape, e]
                if r["ok"]:
                    print(f"  {limit:>6} {shape:8} {e:10} {r['checksum']}")
    if "outcore" in a.engines:
        print("\noutcore's account against the process: peak reserved (--stats) / peak RSS")
        for limit in a.limits:
            for shape in a.shapes:
                r = results[limit, shape, "outcore"]
                if r["ok"] and r["reserved"] and r["rss"]:
                    print(f"  {limit:>6} {shape:8} reserved {r['reserved']:.1f} MiB, "
                          f"RSS {r['rss']:.1f} MiB: {r['reserved'] / r['rss']:.2f}")
    print(f"\nraw runs appended to {jsonl.relative_to(ROOT)}")
    tmp.cleanup()
    if a.smoke:
        bad = [k for k, r in results.items() if not r["ok"]]
        if bad:
            sys.exit(f"smoke run failed: {bad}")
    return 0


def ensure_venv():
    probe = "import duckdb, datafusion, pyarrow"
    if peers.VPY.exists() and subprocess.run([str(peers.VPY), "-c", probe],
                                             capture_output=True).returncode == 0:
        return
    peers.ensure_venv()
    subprocess.run([str(peers.VPY), "-m", "pip", "install", "--quiet", "datafusion"], check=True)


if __name__ == "__main__":
    sys.exit(main())
