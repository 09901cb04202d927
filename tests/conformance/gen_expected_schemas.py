#!/usr/bin/env python3
"""Record the schema documents Python dlt stores while it runs a conformance case.

Usage:
    gen_expected_schemas.py CASE_DIR [CASE_DIR ...] [--corpus DIR] [--out FILE]

For every case the runs are executed exactly as the corpus oracle runner does (its
`make_resource` and environment isolation are imported from `run_dlt.py` in `--corpus`,
default `<repo>/../shared/conformance`), and after every run this records

* per dataset of the case and per schema name in its `_dlt_version` table: every stored row as
  `[version, version_hash]` in insertion order, and the newest row's `schema` document;
* per pipeline name of the case: the document in the working dir,
  `<pipelines_dir>/<pipeline>/schemas/<schema>.schema.json`.

Documents are stored once in `documents` (keyed `<version>:<version_hash>`, with a `~N` suffix
if two different documents share a key) and referenced by key from the runs. The result goes to
`CASE_DIR/expected_schemas.json` (or `--out` when one case is given). Needs the oracle venv:
`~/.cache/dlt-rs/oracle/bin/python` (dlt 1.31.0, duckdb 2.0.1).

`dlt-conformance` compares the documents dlt-rs stores with these after every run
(crates/conformance/src/schema_docs.rs); the differences that are intended are listed in
tests/conformance/DEVIATIONS.md.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

FORMAT_VERSION = 1
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def stored_documents(con, dataset):
    """{schema_name: {"versions": [[v, hash], ...], "schema": doc}} of `dataset`, or None."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = '_dlt_version'",
        [dataset],
    ).fetchone()[0]
    if not exists:
        return None
    rows = con.execute(
        f'SELECT schema_name, version, version_hash, schema, inserted_at FROM "{dataset}"."_dlt_version" '
        "ORDER BY inserted_at, version"
    ).fetchall()
    out = {}
    for name, version, vhash, schema, _ in rows:
        entry = out.setdefault(name, {"versions": [], "schema": None})
        entry["versions"].append([version, vhash])
        entry["schema"] = json.loads(schema)
    return out


class Documents:
    def __init__(self):
        self.docs = {}

    def add(self, doc):
        base = "%s:%s" % (doc.get("version"), doc.get("version_hash"))
        key, n = base, 1
        while key in self.docs and self.docs[key] != doc:
            n += 1
            key = "%s~%d" % (base, n)
        self.docs[key] = doc
        return key


def snapshot(con, datasets, pipelines_dir, pipeline_names, docs):
    dest = {}
    for ds in datasets:
        stored = stored_documents(con, ds) if con is not None else None
        if stored is None:
            dest[ds] = None
            continue
        dest[ds] = {
            name: {"versions": e["versions"], "schema": docs.add(e["schema"])} for name, e in sorted(stored.items())
        }
    local = {}
    for p in pipeline_names:
        sdir = os.path.join(pipelines_dir, p, "schemas")
        entry = {}
        if os.path.isdir(sdir):
            for fn in sorted(os.listdir(sdir)):
                if fn.endswith(".schema.json"):
                    with open(os.path.join(sdir, fn), encoding="utf-8") as f:
                        entry[fn[: -len(".schema.json")]] = docs.add(json.load(f))
        local[p] = entry
    return {"destination": dest, "local": local}


def run_case(case_dir, workdir, corpus):
    sys.path.insert(0, corpus)
    from run_dlt import isolate_env, make_resource  # the oracle runner's own helpers

    with open(os.path.join(case_dir, "case.json"), encoding="utf-8") as f:
        case = json.load(f)
    isolate_env(workdir)
    import dlt
    import duckdb

    db_file = os.path.join(workdir, "dest.duckdb")
    pipelines_dir = os.path.join(workdir, "pipelines")
    datasets = sorted({r["dataset_name"] for r in case["runs"]})
    pipeline_names = sorted({r["pipeline_name"] for r in case["runs"]})
    docs = Documents()
    runs = []
    for i, run in enumerate(case["runs"]):
        p = dlt.pipeline(
            pipeline_name=run["pipeline_name"],
            destination=dlt.destinations.duckdb(db_file),
            dataset_name=run["dataset_name"],
            pipelines_dir=pipelines_dir,
        )
        opts = run.get("options") or {}
        if opts.get("drop_pending_packages"):
            p.drop_pending_packages()
        resources = [make_resource(dlt, case_dir, r) for r in run["resources"]]
        status = "ok"
        try:
            p.run(resources)
        except Exception:  # noqa: the outcome itself is recorded in expected.json
            status = "failed"
        con = duckdb.connect(db_file, read_only=True) if os.path.exists(db_file) else None
        try:
            snap = snapshot(con, datasets, pipelines_dir, pipeline_names, docs)
        finally:
            if con is not None:
                con.close()
        runs.append({"index": i, "status": status, **snap})
    return {
        "schema_docs_format_version": FORMAT_VERSION,
        "case": case["name"],
        "oracle": {"dlt": dlt.__version__, "duckdb": duckdb.__version__},
        "runs": runs,
        "documents": docs.docs,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case_dirs", nargs="+")
    ap.add_argument("--corpus", default=os.path.join(os.path.dirname(REPO), "shared", "conformance"))
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    if a.out and len(a.case_dirs) != 1:
        ap.error("--out takes one case dir")
    corpus = os.path.abspath(a.corpus)
    if not os.path.isfile(os.path.join(corpus, "run_dlt.py")):
        ap.error("--corpus %s has no run_dlt.py" % corpus)
    if len(a.case_dirs) > 1:
        # one process per case: dlt keeps module-level state (config, env) between pipelines
        import subprocess

        code = 0
        for d in a.case_dirs:
            r = subprocess.run([sys.executable, os.path.abspath(__file__), d, "--corpus", corpus])
            code = code or r.returncode
        return code
    case_dir = os.path.abspath(a.case_dirs[0])
    out = os.path.abspath(a.out) if a.out else os.path.join(case_dir, "expected_schemas.json")
    workdir = tempfile.mkdtemp(prefix="dltconf_schemas_")
    try:
        res = run_case(case_dir, workdir, corpus)
    finally:
        os.chdir(REPO)
        shutil.rmtree(workdir, ignore_errors=True)
    from jsonfmt import pretty  # the corpus' compact pretty-printer

    with open(out, "w", encoding="utf-8") as f:
        f.write(pretty(res) + "\n")
    print("%s: %d run(s), %d document(s) -> %s" % (res["case"], len(res["runs"]), len(res["documents"]), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
