"""One run of Python dlt for the interop suite (crates/cli/tests/interop.rs).

Usage: python dlt_side.py SPEC.json

SPEC.json mirrors the dlt-rs pipeline file of the same step:
  pipeline_name, pipelines_dir, destination ("duckdb" | "postgres"), credentials,
  dataset_name, resource, primary_key, cursor_path,
  initial_value + initial_value_type ("str" | "int" | "datetime" | "date"),
  input (a .jsonl file: the parsed lines are yielded as they are, so str values stay str;
  or a .parquet file: the pyarrow table is yielded, so dlt's Arrow incremental path runs).

Prints the load info; exits non-zero (with the traceback) when the run fails.
"""

import datetime
import json
import sys

import dlt


def initial_value(spec):
    v, kind = spec.get("initial_value"), spec.get("initial_value_type", "str")
    if v is None:
        return None
    if kind == "datetime":
        return datetime.datetime.fromisoformat(v)
    if kind == "date":
        return datetime.date.fromisoformat(v)
    if kind == "int":
        return int(v)
    return str(v)


def postgres_credentials(url):
    """dlt requires a password; a server with trust auth (the test server) ignores it."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None and parts.username:
        host = parts.netloc.split("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username}:unused@{host}")
    return urlunsplit(parts)


def items_of(path):
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        yield pq.read_table(path)
        return
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    yield rows


DLT_VERSION = "1.31.0"


def main():
    if dlt.__version__ != DLT_VERSION:
        raise SystemExit(f"the interop tests need dlt {DLT_VERSION}, {sys.executable} has {dlt.__version__}")
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)

    if spec["destination"] == "duckdb":
        destination = dlt.destinations.duckdb(credentials=spec["credentials"])
    elif spec["destination"] == "postgres":
        destination = dlt.destinations.postgres(credentials=postgres_credentials(spec["credentials"]))
    else:
        raise SystemExit(f"unknown destination {spec['destination']!r}")

    @dlt.resource(
        name=spec["resource"],
        primary_key=spec["primary_key"],
        write_disposition="merge",
    )
    def resource(
        cursor=dlt.sources.incremental(spec["cursor_path"], initial_value=initial_value(spec)),
    ):
        yield from items_of(spec["input"])

    pipeline = dlt.pipeline(
        pipeline_name=spec["pipeline_name"],
        pipelines_dir=spec["pipelines_dir"],
        destination=destination,
        dataset_name=spec["dataset_name"],
    )
    info = pipeline.run(resource())
    print(info)


if __name__ == "__main__":
    main()
