"""One memory-benchmark run of a peer engine under a memory limit:

    python q_peer.py duckdb|datafusion SPEC_JSON OUT_CSV

SPEC_JSON: {"sql": ..., "tables": {name: folder}, "limit": bytes, "threads": n,
"spill": folder}. Folders hold *.csv files (or *.json lines for the table `records`).
The answer is streamed to OUT_CSV batch by batch, never gathered in Python.
"""
import json
import sys
from pathlib import Path

engine, spec, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
sql, tables, limit = spec["sql"], spec["tables"], spec["limit"]

if engine == "duckdb":
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{limit // 1024}KiB'")
    con.execute(f"SET threads = {spec['threads']}")
    con.execute(f"SET temp_directory = '{spec['spill']}'")
    con.execute("SET preserve_insertion_order = false")
    for name, folder in tables.items():
        src = (f"read_json('{folder}/*.json', format='newline_delimited')" if name == "records"
               else f"read_csv_auto('{folder}/*.csv')")
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {src}")
    con.execute(f"COPY ({sql}) TO '{out}' (HEADER, DELIMITER ',')")
elif engine == "datafusion":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "peers"))
    from stream_csv import write
    from datafusion import RuntimeEnvBuilder, SessionConfig, SessionContext

    runtime = RuntimeEnvBuilder().with_disk_manager_specified(spec["spill"]).with_fair_spill_pool(limit)
    config = SessionConfig().with_target_partitions(spec["threads"])
    ctx = SessionContext(config, runtime)
    for name, folder in tables.items():
        if name == "records":
            ctx.register_json(name, folder, file_extension=".json")
        else:
            ctx.register_csv(name, folder, file_extension=".csv")
    if "unnest(transactions) AS u" in sql:  # DataFusion spells struct field access with []
        sql = sql.replace("u.amount", "u['amount']")
    write(ctx.sql(sql), out)
else:
    sys.exit(f"unknown engine {engine}")
