#!/usr/bin/env python3
"""Many concurrent writers of one user, on SQLite and on PostgreSQL: latency spread, timeouts
and the server's peak memory.

It starts the release build of `app` (the settings of bench/load.py: a pool of 16 plus 8
overflow) on a fresh database of each backend, signs one user up and drives with wrk, one after
another at the same concurrency:
  - POST /api/todos               (all connections write as the one user, two tags each)
  - GET  /api/todos/{id}          (reads of one todo)
  - GET  /api/todos?limit=50      (a page of 50 with tags, of the todos the writers made)
reporting requests/s, p50 and p99 latency, wrk's timeouts (no answer within 2 s), the other
errors (non-2xx answers, broken connections), and the server's peak memory (VmHWM) over the
load, apart from its peak while signing the user up and in (argon2 holds 19 MiB per hash).

Usage: bench/writers.py [--backend sqlite|postgresql|both] [--connections 32] [--duration 10]
                        [--pg URL] [--binary PATH] [--port 18766] [--env KEY=VALUE ...]
Needs: `cargo build --release -p app`, wrk (Debian: apt-get install wrk) and, for PostgreSQL, psql.
"""

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import LOAD, ROOT, Server, http, pg_url, sh  # noqa: E402

# Appended to each wrk script instead of report.lua: timeouts apart from the other errors.
REPORT = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status
  io.write(string.format("RESULT rps=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f timeouts=%d errors=%d requests=%d\\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.timeout, errors, summary.requests))
end
"""


def wrk(url, script, args, token):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as combined:
        with open(os.path.join(LOAD, script)) as f:
            combined.write(f.read() + "\n" + REPORT)
    out = sh(["wrk", "-t", "2", "-c", str(args.connections), "-d", f"{args.duration}s", "--latency", "-s", combined.name, url],
             env={**os.environ, "TOKEN": token})
    os.unlink(combined.name)
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def measure(backend, url, args, scratch):
    extra = dict(kv.split("=", 1) for kv in args.env)
    server = Server(args.binary, url, args.port, os.path.join(scratch, f"{backend}.log"), echo=False, extra_env=extra)
    try:
        base = server.base
        http("POST", base + "/api/access/signup", {"email": "bench@example.com", "name": "Bench", "password": "bench-password"})
        token = http("POST", base + "/api/access/login", {"username": "bench@example.com", "password": "bench-password"}, form=True)["access_token"]
        sign_in_peak = server.peak_memory_kib()
        server.reset_peak_memory()
        rows = [("post", "/api/todos", wrk(base + "/api/todos", "post.lua", args, token))]
        page = http("GET", base + "/api/todos?limit=50", token=token)
        todo_id = page["items"][0]["id"]
        rows.append(("get", "/api/todos/{id}", wrk(base + f"/api/todos/{todo_id}", "get.lua", args, token)))
        rows.append(("list", "/api/todos?limit=50", wrk(base + "/api/todos?limit=50", "get.lua", args, token)))
        return rows, server.peak_memory_kib(), sign_in_peak
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--port", type=int, default=18766)
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="an extra variable for the server")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "app"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found; on Debian: apt-get install wrk")
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: run `cargo build --release -p app` first")

    scratch = tempfile.mkdtemp(prefix="app-writers-")
    results = []
    try:
        if args.backend in ("sqlite", "both"):
            url = "sqlite://" + os.path.join(scratch, "bench.sqlite3")
            results.append(("SQLite", *measure("sqlite", url, args, scratch)))
        if args.backend in ("postgresql", "both"):
            name = f"app_writers_{secrets.token_hex(6)}"
            sh(["psql", "-q", args.pg, "-c", f"CREATE DATABASE {name}"])
            try:
                results.append(("PostgreSQL", *measure("postgresql", pg_url(args.pg, name), args, scratch)))
            finally:
                subprocess.run(["psql", "-q", args.pg, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"{args.connections} connections, {args.duration} s per request kind, one run\n")
    print("| backend | request | req/s | p50 ms | p99 ms | p99 / p50 | max ms | timeouts | other errors | server peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for backend, rows, peak, _ in results:
        for kind, path, r in rows:
            spread = r["p99_ms"] / r["p50_ms"] if r["p50_ms"] else 0.0
            print(f"| {backend} | {kind} `{path}` | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {spread:.1f}x "
                  f"| {r['max_ms']:.0f} | {int(r['timeouts'])} | {int(r['errors'])} | {peak / 1024:.1f} |")
    print()
    for backend, _, _, sign_in_peak in results:
        print(f"{backend}: peak RSS from start through sign-up and sign-in: {sign_in_peak / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
