"""Independent check of the lake's objects on S3 (moto): boto3 lists them,
pyarrow reads them back and compares every row with what was sent.

    lake_s3_objects.py check ENDPOINT BUCKET PREFIX EXPECTED.jsonl

EXPECTED.jsonl: one JSON object per line with the columns to compare
(timestamps as milliseconds since the epoch). Prints JSON:
{"objects": [{"key", "size", "etag", "parts"}], "rows": n,
"missing": n, "unexpected": n, "duplicates": n}; "parts" is the part count
of a multipart upload (from its ETag, "<md5>-<parts>"), 0 for a single PUT.
"""
import json
import sys
from collections import Counter

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


def row_key(row, columns):
    return tuple(row[c] for c in columns)


def check(endpoint, bucket, prefix, expected_path):
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY,
                      aws_secret_access_key=SECRET, region_name=REGION)
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/events/"):
        for o in page.get("Contents", []):
            etag = o["ETag"].strip('"')
            parts = int(etag.rsplit("-", 1)[1]) if "-" in etag else 0
            objects.append({"key": o["Key"], "size": o["Size"], "etag": etag, "parts": parts})

    with open(expected_path) as f:
        expected = [json.loads(line) for line in f if line.strip()]
    columns = sorted(expected[0]) if expected else []
    want = Counter(row_key(r, columns) for r in expected)

    scheme, host = endpoint.split("://", 1)
    fs = pafs.S3FileSystem(access_key=KEY, secret_key=SECRET, region=REGION,
                           endpoint_override=host, scheme=scheme)
    got = Counter()
    for o in objects:
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
        "objects": objects,
        "rows": sum(got.values()),
        "missing": sum((want - got).values()),
        "unexpected": sum((got - want).values()),
        "duplicates": sum(n - 1 for n in got.values() if n > 1),
    }))


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] != "check":
        sys.exit(__doc__)
    check(*sys.argv[2:])
