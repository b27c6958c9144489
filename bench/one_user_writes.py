#!/usr/bin/env python3
"""Writes of one user: 32 concurrent writers POSTing todos for the same user, two builds of
`app` side by side in one run against the same PostgreSQL (each on a fresh database).

Two loads, each measured for each build, alternating, for --rounds rounds (medians reported):
  - ranged: todos with a time range no other request overlaps (the overlap rule applies);
  - plain:  todos without a time range (no rule applies).
Before the exclusion constraint, every ranged write locked the user's row, so one user's
writes ran one at a time; after it, they need not wait for each other.

Usage: bench/one_user_writes.py --before PATH --after PATH [--duration 10] [--connections 32]
       [--rounds 2] [--pg URL]
Needs: two `app` binaries (e.g. the release build of the old and of the new commit), wrk, psql.
"""

import argparse
import importlib.util
import os
import secrets
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("bench_load", os.path.join(HERE, "load.py"))
load = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(load)


def measure(binary, label, script, args, port, scratch):
    """One fresh database, one server, one wrk run; the server's peak memory too."""
    name = f"app_writes_{secrets.token_hex(6)}"
    load.sh(["psql", "-q", args.pg, "-c", f"CREATE DATABASE {name}"])
    url = load.pg_url(args.pg, name)
    server = None
    try:
        server = load.Server(binary, url, port, os.path.join(scratch, f"{label}-{name}.log"), echo=False)
        base = server.base
        load.http("POST", base + "/api/access/signup",
                  {"email": "bench@example.com", "name": "Bench", "password": "bench-password"})
        token = load.http("POST", base + "/api/access/login",
                          {"username": "bench@example.com", "password": "bench-password"}, form=True)["access_token"]
        result = load.wrk(base + "/api/todos", script, args, token)
        result["peak_mib"] = server.peak_memory_kib() / 1024
        return result
    finally:
        if server:
            server.stop()
        load.sh(["psql", "-q", args.pg, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the app binary to compare against")
    parser.add_argument("--after", required=True, help="the app binary measured")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--port", type=int, default=18775)
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    for tool in ("wrk", "psql"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found; on Debian: apt-get install {'wrk' if tool == 'wrk' else 'postgresql-client'}")
    builds = {"before": args.before, "after": args.after}
    for label, binary in builds.items():
        if not os.path.exists(binary):
            sys.exit(f"{label}: {binary} not found")
    loads = {"ranged": "post_ranged.lua", "plain": "post.lua"}
    scratch = tempfile.mkdtemp(prefix="app-writes-")
    results = {(load_name, label): [] for load_name in loads for label in builds}
    for round_number in range(args.rounds):
        for load_name, script in loads.items():
            for label, binary in builds.items():
                result = measure(binary, label, script, args, args.port, scratch)
                results[(load_name, label)].append(result)
                print(f"round {round_number + 1} {load_name:6} {label:6} rps={result['rps']:.0f} "
                      f"p50={result['p50_ms']:.1f}ms p99={result['p99_ms']:.1f}ms errors={int(result['errors'])}",
                      flush=True)
    print(f"\n{args.connections} concurrent writers of one user, {args.duration}s each, "
          f"median of {args.rounds} round(s):")
    print(f"{'load':8}{'build':8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'peak MiB':>10}")
    for load_name in loads:
        for label in builds:
            runs = results[(load_name, label)]
            med = lambda key: statistics.median(r[key] for r in runs)
            print(f"{load_name:8}{label:8}{med('rps'):9.0f}{med('p50_ms'):9.1f}{med('p99_ms'):9.1f}"
                  f"{int(max(r['errors'] for r in runs)):8d}{med('peak_mib'):10.1f}")
        before = statistics.median(r["rps"] for r in results[(load_name, "before")])
        after = statistics.median(r["rps"] for r in results[(load_name, "after")])
        if before:
            print(f"{load_name:8}after/before {after / before:.2f}x")


if __name__ == "__main__":
    main()
