"""Parses the output of `pushflow lake ddl` (on stdin) back with sqlglot:
the Athena statements with the athena dialect, the Trino ones with trino.

Prints JSON: {"athena": [[table, properties, columns]], "trino": [[table, properties, columns]],
"trino_schemas": [[catalog, schema]], "trino_calls": [procedure call]} (the Trino part's
CREATE SCHEMA and CALL statements, in order, beside its tables).
"""
import json
import sys

try:
    import sqlglot
    from sqlglot import exp
except ImportError as e:
    sys.exit(f"pip package sqlglot is missing ({e}); pip install -r tests/python/requirements.txt")


def props(create, dialect):
    """Plain properties by name; the typed ones (PartitionedByProperty,
    LocationProperty, FileFormatProperty) by class name, as SQL."""
    out = {}
    p = create.args.get("properties")
    for prop in (p.expressions if p else []):
        if type(prop) is exp.Property:
            out[prop.name] = prop.args["value"].sql(dialect=dialect)
        else:
            out[type(prop).__name__] = prop.sql(dialect=dialect)
    return out


text = sys.stdin.read()
athena_part, trino_part = text.split("-- Trino", 1)
result = {"athena": [], "trino": [], "trino_schemas": [], "trino_calls": []}
for stmt in sqlglot.parse(athena_part, read="athena"):
    if stmt is None:
        continue
    assert isinstance(stmt, exp.Create), stmt
    ps = props(stmt, "athena")
    cols = [c.name for c in stmt.this.expressions]
    result["athena"].append([stmt.this.this.name, ps, cols])
for stmt in sqlglot.parse("--" + trino_part, read="trino"):
    if stmt is None:
        continue
    if isinstance(stmt, exp.Command) and stmt.this.upper() == "CALL":
        result["trino_calls"].append(stmt.expression.name)
        continue
    assert isinstance(stmt, exp.Create), stmt
    if stmt.args.get("kind") == "SCHEMA":
        result["trino_schemas"].append([stmt.this.catalog, stmt.this.db])
        continue
    ps = props(stmt, "trino")
    cols = [c.name for c in stmt.this.expressions]
    result["trino"].append([stmt.this.this.name, ps, cols])
print(json.dumps(result))
