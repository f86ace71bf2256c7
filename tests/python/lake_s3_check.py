"""Independent check of the Parquet lake on S3 (moto): pyarrow reads it.

    lake_s3_check.py create ENDPOINT BUCKET
    lake_s3_check.py check ENDPOINT BUCKET PREFIX
    lake_s3_check.py objects ENDPOINT BUCKET PREFIX EXPECTED.jsonl

`check` prints JSON: {"files": {table: {"dt=…/hour=…": rows}}, "timestamp":
[[physical, logical], …], "misplaced": n, "ids": total, "distinct_ids": n,
"occurred_at": {table: [min_ms, max_ms]}}.

`objects` lists the objects with boto3 and compares every row pyarrow reads
with EXPECTED.jsonl (one JSON object per line with the columns to compare,
timestamps as milliseconds since the epoch). Prints JSON: {"objects":
[{"key", "size", "etag", "parts"}], "rows": n, "missing": n, "unexpected":
n, "duplicates": n}; "parts" is the part count of a multipart upload (from
its ETag, "<md5>-<parts>"), 0 for a single PUT.
"""
import json
import sys
from collections import Counter
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


def row_key(row, columns):
    return tuple(row[c] for c in columns)


def objects(endpoint, bucket, prefix, expected_path):
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY,
                      aws_secret_access_key=SECRET, region_name=REGION)
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/events/"):
        for o in page.get("Contents", []):
            etag = o["ETag"].strip('"')
            parts = int(etag.rsplit("-", 1)[1]) if "-" in etag else 0
            found.append({"key": o["Key"], "size": o["Size"], "etag": etag, "parts": parts})

    with open(expected_path) as f:
        expected = [json.loads(line) for line in f if line.strip()]
    columns = sorted(expected[0]) if expected else []
    want = Counter(row_key(r, columns) for r in expected)

    scheme, host = endpoint.split("://", 1)
    fs = pafs.S3FileSystem(access_key=KEY, secret_key=SECRET, region=REGION,
                           endpoint_override=host, scheme=scheme)
    got = Counter()
    for o in found:
        if not o["key"].endswith(".parquet"):
            continue
        with fs.open_input_file(f"{bucket}/{o['key']}") as f:
            table = pq.ParquetFile(f).read(columns=columns)
        for row in table.to_pylist():
            for c, v in row.items():
                if hasattr(v, "timestamp"):  # timestamps compare as epoch ms
                    row[c] = round(v.timestamp() * 1000)
            got[row_key(row, columns)] += 1

    print(json.dumps({
        "objects": found,
        "rows": sum(got.values()),
        "missing": sum((want - got).values()),
        "unexpected": sum((got - want).values()),
        "duplicates": sum(n - 1 for n in got.values() if n > 1),
    }))


if __name__ == "__main__":
    commands = {"create": (create, 2), "check": (check, 3), "objects": (objects, 4)}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    run, arity = commands[sys.argv[1]]
    if len(sys.argv) != arity + 2:
        sys.exit(__doc__)
    run(*sys.argv[2:])
