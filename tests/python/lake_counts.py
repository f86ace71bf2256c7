"""Independent count of a local Parquet lake with DuckDB (no pushflow code).

    lake_counts.py LAKE_ROOT

Reads LAKE_ROOT/events/<table>/dt=…/hour=…/*.parquet and prints JSON:
{table: {"rows": n, "distinct_event_ids": n, "distinct_notifications": n,
"distinct_subscribers": n}} (the last two only where the table has the column).
"""
import json
import os
import sys

try:
    import duckdb
except ImportError as e:  # fail, naming the package
    sys.exit(f"pip package duckdb is missing ({e}); pip install -r tests/python/requirements.txt")

root = os.path.join(sys.argv[1], "events")
out = {}
con = duckdb.connect()
for table in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    glob = os.path.join(root, table, "**", "*.parquet")
    rel = con.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")
    cols = rel.columns
    row = {"rows": con.execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()[0]}
    row["distinct_event_ids"] = con.execute(
        f"SELECT count(DISTINCT event_id) FROM read_parquet('{glob}')").fetchone()[0]
    for col, key in [("notification_id", "distinct_notifications"), ("subscriber_id", "distinct_subscribers")]:
        if col in cols:
            row[key] = con.execute(f"SELECT count(DISTINCT {col}) FROM read_parquet('{glob}')").fetchone()[0]
    out[table] = row
print(json.dumps(out))
