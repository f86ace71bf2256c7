"""Independent check of the Parquet lake on S3 (moto): pyarrow reads it.

    lake_s3_check.py create ENDPOINT BUCKET
    lake_s3_check.py check ENDPOINT BUCKET PREFIX

`check` prints JSON: {"files": {table: {"dt=…/hour=…": rows}}, "timestamp":
[[physical, logical], …], "misplaced": n, "ids": total, "distinct_ids": n,
"occurred_at": {table: [min_ms, max_ms]}}.
"""
import json
import sys
from datetime import datetime, timezone

try:
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
except ImportError as e:  # fail, naming the package
    sys.exit(f"pip package pyarrow is missing ({e}); pip install -r tests/python/requirements.txt")
try:
    import boto3
except ImportError as e:
    sys.exit(f"pip package boto3 (moto[server]) is missing ({e}); pip install -r tests/python/requirements.txt")

KEY, SECRET, REGION = "test", "test", "us-east-1"


def create(endpoint, bucket):
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY,
                      aws_secret_access_key=SECRET, region_name=REGION)
    s3.create_bucket(Bucket=bucket)


def check(endpoint, bucket, prefix):
    scheme, host = endpoint.split("://", 1)
    fs = pafs.S3FileSystem(access_key=KEY, secret_key=SECRET, region=REGION,
                           endpoint_override=host, scheme=scheme)
    root = f"{bucket}/{prefix}/events"
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    files, stamps, ranges = {}, set(), {}
    misplaced, ids = 0, []
    for info in infos:
        if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
            continue
        rel = info.path[len(root) + 1:]
        table, dt, hour, _name = rel.split("/")
        with fs.open_input_file(info.path) as f:
            pf = pq.ParquetFile(f)
            col = pf.schema.column(pf.schema.names.index("occurred_at"))
            stamps.add((col.physical_type, str(col.logical_type)))
            t = pf.read()
        part = f"{dt}/{hour}"
        files.setdefault(table, {}).setdefault(part, 0)
        files[table][part] += t.num_rows
        ids.extend(t.column("event_id").to_pylist())
        for ts in t.column("occurred_at").to_pylist():
            ms = int(ts.timestamp() * 1000)
            lo, hi = ranges.get(table, (ms, ms))
            ranges[table] = (min(lo, ms), max(hi, ms))
            utc = ts.astimezone(timezone.utc)
            if f"dt={utc:%Y-%m-%d}/hour={utc:%H}" != part:
                misplaced += 1
    print(json.dumps({
        "files": files,
        "timestamp": sorted(stamps),
        "misplaced": misplaced,
        "ids": len(ids),
        "distinct_ids": len(set(ids)),
        "occurred_at": ranges,
    }))


if __name__ == "__main__":
    if sys.argv[1] == "create":
        create(sys.argv[2], sys.argv[3])
    else:
        check(sys.argv[2], sys.argv[3], sys.argv[4])
