#!/usr/bin/env python3
"""Python dlt's side of `cargo xtask bench REST --with-dlt`: dlt's rest_api source reads the same
json-server (`_page`/`_limit` pages, `Link` headers) into DuckDB with parquet job files.
Prints 'BENCH_RESULT {json}' with dlt's step timings and row counts."""
import argparse, json, time

t_start = time.perf_counter()
import dlt  # noqa: E402
from dlt.sources.rest_api import rest_api_source  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--workdir", required=True)
ap.add_argument("--base-url", required=True)
ap.add_argument("--page", type=int, default=100)
ap.add_argument("--dest-path", required=True)
args = ap.parse_args()

source = rest_api_source({
    "client": {"base_url": args.base_url, "paginator": {"type": "header_link"}},
    "resources": [{
        "name": "items",
        "write_disposition": "replace",
        "endpoint": {"path": "items", "params": {"_page": 1, "_limit": args.page}},
    }],
})
p = dlt.pipeline(pipeline_name="bench_rest", pipelines_dir=args.workdir,
                 destination=dlt.destinations.duckdb(args.dest_path), dataset_name="bench_data")
t0 = time.perf_counter()
info = p.run(source, loader_file_format="parquet")
t1 = time.perf_counter()
tr = p.last_trace
steps = {s.step: round((s.finished_at - s.started_at).total_seconds(), 3) for s in tr.steps}
rows = dict(tr.last_normalize_info.row_counts) if tr.last_normalize_info else {}
print("BENCH_RESULT " + json.dumps({
    "import_s": round(t0 - t_start, 3),
    "run_s": round(t1 - t0, 3),
    "steps_s": steps,
    "normalize_row_counts": {k: v for k, v in rows.items() if not k.startswith("_dlt")},
    "has_failed_jobs": info.has_failed_jobs,
}))
