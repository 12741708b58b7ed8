#!/usr/bin/env python3
"""Side-by-side benchmark: outcore against DataFusion, Polars, DuckDB, chDB and Dask on the same
CSV and JSON-lines files (the b* queries are bags of JSON records: dask.bag for Dask).

    python3 benches/peers/run.py [--smoke] [--engines outcore,datafusion,polars,duckdb,chdb,dask]
                                 [--runs 3] [--data DIR] [--timeout 900] [--sweep]
                                 [--queries b1,b2,b3,b4] [--records 1.2e6]

Each (engine, query) runs as its own process under `/usr/bin/time -f '%e %M'` (peak RSS
from outside); CSV files are read inside the timed region. Fair timing: a peer's script
reports its own time from after its imports to after writing the answer (inproc.py), so
interpreter start-up and imports never count against it (they are listed apart); outcore
is timed as a whole process writing CSV. Each run is one round: every engine answers a
query once before any answers it again. Prints a markdown table (median seconds, median
peak RSS in MB, agreement with the majority checksum, outcore / fastest peer) and appends
every raw run as a JSON line to benches/peers/runs/<YYYY-MM-DD>-<hostname>.jsonl.
Standard library only; the peer engines (pinned versions, PIP_PACKAGES) run in
benches/peers/.venv (made when needed).
"""
import argparse
import collections
import csv
import datetime
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BIN = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")).resolve() / "release" / "outcore"
VENV = HERE / ".venv"
VPY = VENV / "bin" / "python"
# Pinned, so that a table says which versions it measured.
PIP_PACKAGES = ["dask[dataframe]==2026.8.0", "polars==2.1.0", "duckdb==2.0.1", "pandas==3.1.1",
                "pyarrow==26.0.1", "datafusion==55.0.0"]
# ClickHouse in process: optional, installed only when the engine is selected (a failed
# install leaves it out of the run, with a warning, instead of stopping the others).
CHDB_PACKAGES = ["chdb==4.4.0", "chdb-core==26.9.0"]
ENGINES = ["outcore", "datafusion", "polars", "duckdb", "chdb", "dask"]
PEERS = ["datafusion", "polars", "duckdb", "chdb", "dask"]
# Queries a peer script does not answer (shown as "not yet").
UNSUPPORTED = {("datafusion", "ts4"), ("chdb", "ts4"), ("chdb", "ts5")}

# (row label, query name, data set key)
QUERIES = [
    ("q1 sum v1 by id1", "q1", "g1"),
    ("q2 sum v1 by id1,id2", "q2", "g1"),
    ("q3 sum v1, mean v3 by id3", "q3", "g1"),
    ("q4 mean v1,v2,v3 by id4", "q4", "g1"),
    ("q5 sum v1,v2,v3 by id6", "q5", "g1"),
    ("q6 median, std v3 by id4,id5", "q6", "g1"),
    ("q7 max v1 - min v2 by id3", "q7", "g1"),
    ("q8 largest two v3 by id6", "q8", "g1"),
    ("q9 corr(v1,v2)^2 by id2,id4", "q9", "g1"),
    ("q10 sum v3, count by id1..id6", "q10", "g1"),
    ("q1 (K=1e5)", "q1", "g1k"),
    ("q2 (K=1e5)", "q2", "g1k"),
    ("q3 (K=1e5)", "q3", "g1k"),
    ("q4 (K=1e5)", "q4", "g1k"),
    ("q5 (K=1e5)", "q5", "g1k"),
    ("q6 (K=1e5)", "q6", "g1k"),
    ("q7 (K=1e5)", "q7", "g1k"),
    ("q8 (K=1e5)", "q8", "g1k"),
    ("q9 (K=1e5)", "q9", "g1k"),
    ("q10 (K=1e5)", "q10", "g1k"),
    ("ts1 std(x) by name where y > 0", "ts1", "ts"),
    ("ts2 hourly mean of x, y", "ts2", "ts"),
    ("ts3 set index to id (sort)", "ts3", "ts"),
    ("j1 x ⋈ small on id1 (inner)", "j1", "j1"),
    ("j2 x ⋈ medium on id2 (inner)", "j2", "j1"),
    ("j3 x ⟕ medium on id2 (left)", "j3", "j1"),
    ("j4 x ⋈ medium on id5 (string)", "j4", "j1"),
    ("j5 x ⋈ big on id3 (inner)", "j5", "j1"),
    ("b1 count records with age > 30", "b1", "rec"),
    ("b2 frequencies of occupation", "b2", "rec"),
    ("b3 mean of all transaction amounts", "b3", "rec"),
    ("b4 sum of amounts by name", "b4", "rec"),
    ("ts4 repartition by day (1D), to CSV", "ts4", "ts"),
    ("ts5 persist, then 3 resamples", "ts5", "ts"),
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny data in a temp dir, outcore only, 1 run")
    p.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of " + ",".join(ENGINES))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--data", default=str(ROOT / "benches" / "data"), help="data sets folder (default benches/data)")
    p.add_argument("--queries", default="", help="comma-separated query names to run (default all), e.g. q1,ts1")
    p.add_argument("--rows", default="1e7", help="G1 rows (default 1e7; --smoke uses 20000)")
    p.add_argument("--days", default="30", help="timeseries days (default 30; --smoke uses 1)")
    p.add_argument("--records", default="1.2e6",
                   help="JSON records for the bag queries (default 1.2e6, about 300 MB; --smoke uses 2000)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per run before it counts as failed")
    p.add_argument("--build", action="store_true", help="cargo build --release first (else only if missing)")
    p.add_argument("--sweep", action="store_true",
                   help="memory-limit sweep: q1 and q3 on the 1e8-row G1 set at 4GB, 2GB, 1GB and "
                        "512MB (outcore, DuckDB; Dask once), by benches/outofcore.sh")
    a = p.parse_args()
    a.engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    bad = [e for e in a.engines if e not in ENGINES]
    if bad:
        p.error(f"unknown engine(s) {bad}; choose from {ENGINES}")
    if a.smoke:
        a.engines, a.runs, a.rows, a.days, a.records = ["outcore"], 1, "20000", "1", "2000"
    return a


# ---------------------------------------------------------------- setup

def ensure_binary(force):
    if force or not BIN.exists():
        log("building outcore (cargo build --release) ...")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


def ensure_venv():
    probe = "import polars, duckdb, dask.dataframe, pandas, pyarrow, datafusion"
    if VPY.exists() and subprocess.run([str(VPY), "-c", probe], capture_output=True).returncode == 0:
        return
    if not VPY.exists():
        log(f"creating {VENV} ...")
        venv.EnvBuilder(with_pip=True).create(VENV)
    log("pip install " + " ".join(PIP_PACKAGES) + " (may take a few minutes) ...")
    r = subprocess.run([str(VPY), "-m", "pip", "install", "--quiet", *PIP_PACKAGES])
    if r.returncode != 0:
        sys.exit("pip install failed; run with --engines outcore, or fix the venv at " + str(VENV))


def ensure_chdb():
    """True when chDB is importable in the venv (installing the pinned packages if not)."""
    probe = [str(VPY), "-c", "import chdb"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return True
    log("pip install " + " ".join(CHDB_PACKAGES) + " ...")
    r = subprocess.run([str(VPY), "-m", "pip", "install", "--quiet", *CHDB_PACKAGES])
    if r.returncode != 0 or subprocess.run(probe, capture_output=True).returncode != 0:
        log("chdb could not be installed: leaving it out of this run")
        return False
    return True


def make_data(data, rows, days, records, keys):
    """The data sets the selected queries use (`keys`), made if missing."""
    data.mkdir(parents=True, exist_ok=True)
    sets = {
        "g1": (data / f"g1_{rows}_1e2", ["groupby", "--rows", rows, "--k", "100", "--files", "8"]),
        "g1k": (data / f"g1_{rows}_1e5", ["groupby", "--rows", rows, "--k", "1e5", "--files", "8"]),
        "ts": (data / f"ts_{days}d", ["timeseries", "--days", days]),
        # The J1 join tables in x/, small/, medium/, big/ (N = --rows).
        "j1": (data / f"j1_{rows}", ["join", "--rows", rows, "--files", "8"]),
        "rec": (data / f"records_{records}", ["records", "--records", records, "--files", "8"]),
    }
    out = {}
    for key, (folder, args) in sets.items():
        if key not in keys:
            continue
        if not (folder.is_dir() and any(folder.iterdir())):
            log(f"making {folder} ...")
            tmp = folder.with_name(folder.name + ".partial")
            subprocess.run([str(BIN), "datasets", *args, "--out", str(tmp)], check=True, stdout=subprocess.DEVNULL)
            tmp.rename(folder)
        out[key] = folder
    return out


# ---------------------------------------------------------------- running

_HELP = {}


def outcore_has(flag):
    """True if `outcore query --help` lists `flag` (for entries that need a flag being
    added on another branch: they count as "not yet" until the binary takes it)."""
    if "query" not in _HELP:
        r = subprocess.run([str(BIN), "query", "--help"], capture_output=True, text=True)
        _HELP["query"] = r.stdout
    return flag in _HELP["query"]


def command(engine, query, key, folder, answer):
    """The argv for one run, or None if the engine cannot answer this query yet."""
    if engine == "outcore":
        spec = json.loads((HERE / "q_outcore.json").read_text())
        args = spec.get(query)
        if isinstance(args, dict) and "needs" in args:  # {"needs": [flags], "args": [...]}
            if not all(outcore_has(f) for f in args.get("needs", [])):
                return None
            args = args["args"]
        if args is None:
            return None
        if isinstance(args, dict):
            # A whole command line: {"argv": [...]} or {"sh": "..."}, with {bin},
            # {glob}, {answer} (the answer file; a folder answer goes to {answer}.d)
            # and {tmp} (a scratch folder, emptied before each run) filled in.
            fill = dict(bin=str(BIN), glob=f"{folder}/*.csv", answer=str(answer), tmp=str(scratch(answer)))
            if "sh" in args:
                return ["sh", "-c", args["sh"].format(**fill)]
            return [x.format(**fill) for x in args["argv"]]
        # Join queries read x/ as the main table; {data} is the data set's folder.
        # JSON records are a bag (`outcore bag`); the CSV sets are frames.
        if key == "rec":
            sub, glob = "bag", f"{folder}/*.json"
        else:
            sub, glob = "query", (f"{folder}/x/*.csv" if key == "j1" else f"{folder}/*.csv")
        args = [a.replace("{data}", str(folder)) for a in args]
        return [str(BIN), sub, glob, *args, "--format", "csv", "--output-to", str(answer)]
    if (engine, query) in UNSUPPORTED:
        return None
    return [str(VPY), str(HERE / f"q_{engine}.py"), query, str(folder), str(answer)]


def scratch(answer):
    return Path(str(answer) + ".tmp")


def answer_dir(answer):
    """Where a query whose answer is a folder of CSV files (ts4) writes it."""
    return Path(str(answer) + ".d")


def clear(answer):
    answer.unlink(missing_ok=True)
    for d in (answer_dir(answer), scratch(answer)):
        shutil.rmtree(d, ignore_errors=True)
    scratch(answer).mkdir()


def run_once(argv, timeout):
    """Runs argv under GNU time; returns (seconds, rss_mb, returncode, stderr tail)."""
    stdout_path = None
    if "--output-to" in argv:  # outcore writes its answer to stdout
        i = argv.index("--output-to")
        stdout_path, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    marker = "@@time@@"
    full = ["/usr/bin/time", "-f", marker + " %e %M", *argv]
    out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
    try:
        p = subprocess.Popen(full, stdout=out, stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            return None, None, "timeout", f"killed after {timeout:.0f} s"
    finally:
        if stdout_path:
            out.close()
    err = err.decode(errors="replace")
    lines = err.splitlines()
    timing = [l for l in lines if l.startswith(marker)]
    rest = "\n".join(l for l in lines if not l.startswith(marker) and "Command exited with" not in l)
    if not timing:
        return None, None, p.returncode, rest[-2000:]
    secs, kb = timing[-1].split()[1:3]
    return float(secs), int(kb) / 1024, p.returncode, rest[-2000:]


def split_inproc(err):
    """(import seconds, query seconds) from a peer script's `@@inproc@@` line (inproc.py),
    or (None, None) for a whole process (outcore); and the stderr without that line."""
    imp = q = None
    keep = []
    for line in err.splitlines():
        if line.startswith("@@inproc@@"):
            _, a, b = line.split()[:3]
            imp, q = float(a), float(b)
        else:
            keep.append(line)
    return imp, q, "\n".join(keep)


def is_missing(v):
    return v == "" or v.lower() in ("nan", "null", "none", "na", "<na>")


def checksum(path):
    """Row count and the sorted multiset of numeric column sums (4 significant digits).

    A column is numeric if every non-missing value parses as a float. Key columns that are
    numeric (id4..id6) are included: every engine outputs the same keys, so they agree too.
    Column names and order are ignored, so engines may name and order columns freely.
    A folder answer (`{answer}.d`, ts4) is every CSV file under it, each with a header."""
    path = Path(path)
    files = [path] if path.exists() else sorted(answer_dir(path).rglob("*.csv"))
    n = 0
    sums, numeric = [], []
    for file in files:
        with open(file, newline="") as f:
            rows = csv.reader(f)
            head = next(rows, None)
            if head is None:
                continue
            if not sums:
                sums, numeric = [0.0] * len(head), [True] * len(head)
            for r in rows:
                n += 1
                for i, v in enumerate(r[: len(sums)]):
                    if numeric[i] and not is_missing(v):
                        try:
                            sums[i] += float(v)
                        except ValueError:
                            numeric[i] = False
    if not sums:
        return "rows=0"
    vals = []
    for i, s in enumerate(sums):
        if numeric[i]:
            v = float(f"{s:.4g}") if math.isfinite(s) else s
            vals.append("%.4g" % (v + 0.0))  # + 0.0 turns -0.0 into 0
    return f"rows={n} sums=[{' '.join(sorted(vals, key=lambda x: (float(x), x)))}]"


def median(xs):
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- reporting

def fmt_cell(res, verdict):
    if res is None:
        return "not yet"
    if res["secs"] is None:
        return f"failed ({res['rc']})"
    mark = {"ok": " ✓", "bad": " ✗", "tie": " ?", None: ""}[verdict]
    return f"{res['secs']:.2f} ({res['rss']:.0f}){mark}"


def ratio(a, b):
    if a is None or b is None:
        return "–"
    if b == 0:
        return "–" if a == 0 else "∞"
    return f"{a / b:.2f}×"


def main():
    a = parse_args()
    if a.sweep:
        # The sweep needs the 5 GB set and runs each engine under a limit; one script
        # owns that (it also makes the data), so the two cannot drift apart.
        ensure_venv()
        env = dict(os.environ, SWEEP=os.environ.get("SWEEP", "4GB 2GB 1GB 512MB"),
                   TIMEOUT=str(a.timeout))
        script = Path(__file__).resolve().parent.parent / "outofcore.sh"
        return subprocess.call([str(script)], env=env)
    ensure_binary(a.build)
    if any(e != "outcore" for e in a.engines):
        ensure_venv()
    if "chdb" in a.engines and not ensure_chdb():
        a.engines = [e for e in a.engines if e != "chdb"]
    tmp = tempfile.TemporaryDirectory(prefix="outcore-peers-")
    data = Path(tmp.name) / "data" if a.smoke else Path(a.data).resolve()
    wanted = {q.strip() for q in a.queries.split(",") if q.strip()}
    queries = [q for q in QUERIES if not wanted or q[1] in wanted or q[0] in wanted]
    sets = make_data(data, a.rows, a.days, a.records, {q[2] for q in queries})
    answers = Path(tmp.name) / "answers"
    answers.mkdir()

    host = socket.gethostname()
    today = datetime.date.today().isoformat()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or "?"
    runs_dir = HERE / "runs"
    runs_dir.mkdir(exist_ok=True)
    jsonl = runs_dir / f"{today}-{host}.jsonl"
    results = {}  # (label, engine) -> {"secs", "rss", "rc", "checksum"} or None (not yet)
    with open(jsonl, "a") as jl:
        for label, query, key in queries:
            # One round per run: every engine answers the query once before any answers it
            # again, so the machine's noise (page cache, another process) hits all alike.
            argvs, answers_of, secs, rss, imports, sums, rcs, failed = {}, {}, {}, {}, {}, {}, {}, set()
            for engine in a.engines:
                answer = answers / f"{engine}-{query}-{key}.csv"
                argv = command(engine, query, key, sets[key], answer)
                if argv is None:
                    results[label, engine] = None
                    log(f"{label:34} {engine:10} not yet")
                    continue
                argvs[engine], answers_of[engine] = argv, answer
                secs[engine], rss[engine], imports[engine], sums[engine] = [], [], [], None
            for i in range(a.runs):
                for engine, argv in argvs.items():
                    if engine in failed:
                        continue
                    answer = answers_of[engine]
                    clear(answer)
                    t, m, rc, err = run_once(argv, a.timeout)
                    imp, q, err = split_inproc(err)
                    if q is not None:
                        t = q  # a peer: the in-process time, imports excluded
                    rcs[engine] = rc
                    ok = rc == 0 and t is not None and (answer.exists() or answer_dir(answer).is_dir())
                    if ok:
                        secs[engine].append(t)
                        rss[engine].append(m)
                        if imp is not None:
                            imports[engine].append(imp)
                        if sums[engine] is None:
                            sums[engine] = checksum(answer)
                    else:
                        failed.add(engine)
                    rec = {"date": today, "host": host, "commit": commit, "cores": os.cpu_count(),
                           "smoke": a.smoke, "query": query, "label": label, "data": str(sets[key]),
                           "engine": engine, "run": i, "seconds": t, "import_seconds": imp,
                           "timing": "whole process" if imp is None else "in process, imports excluded",
                           "rss_mb": m and round(m, 1),
                           "rc": rc, "ok": ok, "checksum": sums[engine] if ok else None,
                           "argv": [str(x) for x in argv], "stderr": None if ok else err}
                    jl.write(json.dumps(rec) + "\n")
                    jl.flush()
                    status = f"{t:.2f} s {m:.0f} MB" if ok else f"FAILED rc={rc}: {err.strip()[-300:]}"
                    log(f"{label:34} {engine:10} run {i + 1}/{a.runs}: {status}")
            for engine in argvs:
                done = len(secs[engine]) == a.runs
                results[label, engine] = {
                    "secs": median(secs[engine]) if done else None,
                    "rss": median(rss[engine]) if done else None,
                    "imports": median(imports[engine]) if imports[engine] else None,
                    "rc": rcs.get(engine),
                    "checksum": sums[engine] if done else None,
                }

    # ---- table
    peers = [e for e in a.engines if e != "outcore"]
    print()
    print(f"outcore {commit}, {os.cpu_count()} cores, {host}, {today}; data {data}; "
          f"median of {a.runs} run(s), one round per run; cells: seconds (peak RSS MB), ✓/✗ = "
          f"agrees/disagrees with the majority checksum, ? = no majority. outcore is timed as a "
          f"whole process writing CSV; peers in process, interpreter start and imports excluded "
          f"(listed below the table)")
    head = ["query"] + [f"{e} s (MB)" for e in a.engines] + ["agree"]
    if "outcore" in a.engines and peers:
        head += ["outcore / fastest peer"]
        if "dask" in peers:
            head += ["outcore / dask"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for label, query, key in queries:
        answered = {e: results[label, e]["checksum"] for e in a.engines
                    if results.get((label, e)) and results[label, e]["checksum"]}
        counts = collections.Counter(answered.values()).most_common()
        majority = None
        if len(answered) >= 2:
            if len(counts) == 1 or counts[0][1] > counts[1][1]:
                majority = counts[0][0]
        verdicts = {}
        for e in answered:
            if len(answered) < 2:
                verdicts[e] = None
            elif majority is None:
                verdicts[e] = "tie"
            else:
                verdicts[e] = "ok" if answered[e] == majority else "bad"
        cells = [label] + [fmt_cell(results.get((label, e)), verdicts.get(e)) for e in a.engines]
        agree = sum(v == "ok" for v in verdicts.values())
        cells.append(f"{agree}/{len(answered)}" if len(answered) >= 2 else "–")
        if "outcore" in a.engines and peers:
            o = results.get((label, "outcore"))
            o = o and o["secs"]
            ps = [results[label, e]["secs"] for e in peers
                  if results.get((label, e)) and results[label, e]["secs"] is not None]
            cells.append(ratio(o, min(ps) if ps else None))
            if "dask" in peers:
                d = results.get((label, "dask"))
                cells.append(ratio(o, d and d["secs"]))
        print("| " + " | ".join(cells) + " |")
    print()
    print("checksums (rows; sorted rounded sums of numeric columns):")
    for label, query, key in queries:
        for e in a.engines:
            r = results.get((label, e))
            if r and r["checksum"]:
                print(f"  {label:34} {e:8} {r['checksum']}")
    imps = collections.defaultdict(list)
    for (label, e), r in results.items():
        if r and r.get("imports") is not None:
            imps[e].append(r["imports"])
    if imps:
        print("\nimports excluded from the peers' times (median seconds): " +
              ", ".join(f"{e} {median(v):.2f}" for e, v in sorted(imps.items())))
    print(f"\nraw runs appended to {jsonl.relative_to(ROOT)}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
