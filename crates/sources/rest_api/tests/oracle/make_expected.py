#!/usr/bin/env python3
"""Python dlt's side of the rest_api parity test (tests/dlt_parity.rs).

Loads the rest_api config of scenario.json with dlt's own `rest_api_source` from a json-server
0.17.4 serving tests/fixtures/db.json, into a fresh DuckDB file, once per run of the scenario
(applying the scenario's API changes before each run), and writes expected.json: per run dlt's
outcome (`normalized_row_counts`) and the canonical dump of the dataset made by the project's
own dumper (`dlt-conformance dump`, crates/conformance), in the result format of the
conformance corpus (`result_format_version` 1).

Usage (from anywhere; see README.md):
    ~/.cache/dlt-rs/oracle/bin/python make_expected.py [--base-url URL] [--json-server BIN]
        [--dumper BIN] [--out FILE] [--workdir DIR]

--base-url    a json-server already serving a *fresh* copy of the fixture with the test
              middleware (the runs change its data); default: start one on a free port
--json-server its binary (default: $DLT_TEST_JSON_SERVER, else
              ~/.cache/dlt-rs/node/node_modules/.bin/json-server)
--dumper      the dlt-conformance binary (default: `cargo run -q -p dlt-conformance --`
              in the workspace, with LD_LIBRARY_PATH=<workspace>/.duckdb)
--out         default: expected.json next to this script
--workdir     keep the pipelines dir and DuckDB file there (default: a temp dir, removed)
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(os.path.dirname(HERE))
WORKSPACE = os.path.dirname(os.path.dirname(os.path.dirname(CRATE)))
FIXTURES = os.path.join(CRATE, "tests", "fixtures")
RESULT_FORMAT_VERSION = 1
STORAGE_VERSION = "v1.5.0"


def isolate_env(workdir):
    # before `import dlt`: no user config, no telemetry
    os.environ["DLT_DATA_DIR"] = os.path.join(workdir, "dlt_data")
    os.environ["DLT_PROJECT_DIR"] = workdir
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("TZ", "UTC")
    os.chdir(workdir)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def json_server_bin(arg):
    if arg:
        return arg
    if os.environ.get("DLT_TEST_JSON_SERVER"):
        return os.environ["DLT_TEST_JSON_SERVER"]
    cache = os.environ.get("DLT_RS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "dlt-rs")
    return os.path.join(cache, "node", "node_modules", ".bin", "json-server")


def start_json_server(binary, workdir):
    """json-server as tests/support/mod.rs starts it: a copy of db.json, the test middleware."""
    if not os.path.exists(binary):
        sys.exit(f"json-server not found at {binary} (set DLT_TEST_JSON_SERVER or pass --json-server)")
    db = os.path.join(workdir, "db.json")
    shutil.copy(os.path.join(FIXTURES, "db.json"), db)
    port = free_port()
    out = open(os.path.join(workdir, "server.out"), "wb")
    proc = subprocess.Popen(
        [binary, "-q", "--host", "127.0.0.1", "--port", str(port), db,
         "--middlewares", os.path.join(FIXTURES, "middleware.js")],
        stdin=subprocess.DEVNULL, stdout=out, stderr=out,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"json-server exited ({proc.returncode}); see {workdir}/server.out")
        try:
            urllib.request.urlopen(url + "/db", timeout=2).read()
            return proc, url
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"json-server did not answer on {url} within 30 s")


def substitute(v, base_url):
    if isinstance(v, str):
        return v.replace("{base_url}", base_url)
    if isinstance(v, list):
        return [substitute(x, base_url) for x in v]
    if isinstance(v, dict):
        return {k: substitute(x, base_url) for k, x in v.items()}
    return v


def api_change(base_url, change):
    req = urllib.request.Request(
        base_url.rstrip("/") + "/" + change["path"],
        data=json.dumps(change["json"]).encode(),
        method=change["method"],
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        if r.status >= 300:
            sys.exit(f"{change['method']} {change['path']}: HTTP {r.status}")


def dumper_cmd(arg):
    if arg:
        return [arg]
    return ["cargo", "run", "-q", "-p", "dlt-conformance", "--"]


def dump(cmd, db_file, dataset, out_file):
    env = dict(os.environ)
    lib = os.path.join(WORKSPACE, ".duckdb")
    env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    subprocess.run(cmd + ["dump", db_file, dataset, "--out", out_file], cwd=WORKSPACE, env=env, check=True)
    with open(out_file, encoding="utf-8") as f:
        return json.load(f)


def _flat(o):
    return json.dumps(o, ensure_ascii=False, separators=(", ", ": "))


def pretty(o, indent=0, width=160):
    """The conformance corpus' JSON layout (crates/conformance/src/jsonfmt.rs)."""
    pad = " " * indent
    flat = _flat(o)
    if len(flat) + indent <= width or not isinstance(o, (dict, list)) or not o:
        return flat
    if isinstance(o, dict):
        items = [pad + " " + json.dumps(k, ensure_ascii=False) + ": " + pretty(v, indent + 1, width).lstrip()
                 for k, v in o.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    items = [pad + " " + pretty(v, indent + 1, width).lstrip() for v in o]
    return "[\n" + ",\n".join(items) + "\n" + pad + "]"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url")
    ap.add_argument("--json-server")
    ap.add_argument("--dumper")
    ap.add_argument("--out", default=os.path.join(HERE, "expected.json"))
    ap.add_argument("--workdir")
    a = ap.parse_args(argv)
    out = os.path.abspath(a.out)
    dumper = dumper_cmd(os.path.abspath(a.dumper) if a.dumper else None)
    with open(os.path.join(HERE, "scenario.json"), encoding="utf-8") as f:
        scenario = json.load(f)
    workdir = os.path.abspath(a.workdir) if a.workdir else tempfile.mkdtemp(prefix="dlt_rest_parity_")
    os.makedirs(workdir, exist_ok=True)
    isolate_env(workdir)
    server = None
    try:
        if a.base_url:
            base_url = a.base_url
        else:
            server, base_url = start_json_server(json_server_bin(a.json_server), workdir)
        import dlt
        import duckdb
        from dlt.sources.rest_api import rest_api_source

        db_file = os.path.join(workdir, "dest.duckdb")
        # duckdb 2.0 writes storage version 69 by default, which the libduckdb 1.5 of the Rust
        # dumper cannot open; a file created with an older storage version keeps it
        duckdb.connect(db_file, config={"storage_compatibility_version": STORAGE_VERSION}).close()
        dataset = scenario["dataset_name"]
        result = {
            "result_format_version": RESULT_FORMAT_VERSION,
            "case": "rest_api_parity",
            "oracle": {"dlt": dlt.__version__, "duckdb": duckdb.__version__},
            "runs": [],
        }
        for i, run in enumerate(scenario["runs"]):
            for change in run["before"]:
                api_change(base_url, change)
            p = dlt.pipeline(
                pipeline_name=scenario["pipeline_name"],
                destination=dlt.destinations.duckdb(db_file),
                dataset_name=dataset,
                pipelines_dir=os.path.join(workdir, "pipelines"),
            )
            p.run(rest_api_source(substitute(scenario["config"], base_url)))
            rc = p.last_trace.last_normalize_info.row_counts
            outcome = {"status": "ok", "normalized_row_counts": {k: v for k, v in sorted(rc.items())}}
            print(f"run {i}: {outcome['normalized_row_counts']}", file=sys.stderr)
            d = dump(dumper, db_file, dataset, os.path.join(workdir, f"dump_{i}.json"))
            result["runs"].append({"index": i, "outcome": outcome, "dump": d})
    finally:
        if server is not None:
            server.kill()
            server.wait()
        if not a.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(pretty(result) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
