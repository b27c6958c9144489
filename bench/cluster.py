#!/usr/bin/env python3
"""Throughput of the local topology of scripts/cluster.sh (primary, streaming replica, PgBouncer,
three `app` instances), against pgbench running the same SQL, and the SQLite default beside it.

In one run, alternating so that drift on a shared machine hits every figure alike, medians of
--rounds rounds of --duration seconds at --connections connections in total:
  - read:      GET /api/todos/{id}, one user reading one todo
  - write:     POST /api/todos, every connection writing as the same user
  - write-32:  POST /api/todos, the connections writing as 32 users in turn
each through one instance (one wrk) and through three (one wrk per instance at once, the
connections split between them, the rates summed: wrk cannot balance);
  - pgbench at the same concurrency on the SQL the service sent for one request of each kind
    (captured from a fourth, short-lived instance with DATABASE_ECHO; the ids an insert makes are
    fresh per transaction; write-32 picks one of 32 per-user scripts per transaction), against
    the database endpoint the instances use (PgBouncer or the primary);
  - the same three loads on one instance of the default backend, SQLite, in a temp file.
Reads served by the replica are read from /metrics of each instance before and after (any
counter whose labels say target="replica" or "primary"); every /metrics line that mentions a
replica is printed as found, since older builds have none.

It brings the cluster up itself (scripts/cluster.sh up, and down at the end) unless one answers
already in --cluster-dir (then with pools of 16 plus 8 overflow per instance, as bench/load.py;
a running cluster keeps its own). Its own short-lived instances listen on --port-base + 13
(SQL capture) and + 14 (SQLite). Prints a markdown table for bench/RESULTS.md: requests/s, the slowest
instance's p50 and p99, wrk's timeouts (no answer within 2 s) and its other errors (non-2xx
answers, broken connections).

Usage: bench/cluster.py [--duration 10] [--rounds 3] [--connections 32] [--port-base 16000]
                        [--cluster-dir DIR] [--binary PATH] [--keep]
Needs: wrk (Debian: apt-get install wrk), psql, pgbench, and what scripts/cluster.sh needs.
"""

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import LOAD, ROOT, UUID, Server, captured_sql, http, pgbench_file  # noqa: E402
from writers import REPORT  # noqa: E402  (wrk's timeouts apart from its other errors)

CLUSTER_SH = os.path.join(ROOT, "scripts", "cluster.sh")
USERS = 32
LOADS = ("read", "write", "write-32")
# The instances' pools, as in bench/load.py: 16 kept plus 8 under load.
POOL_ENV = {"DATABASE_POOL_SIZE": "16", "DATABASE_MAX_POOL_OVERFLOW": "8"}


def run(cmd, env=None):
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    return done.stdout


# --- the cluster -------------------------------------------------------------------------------


def cluster_env(args):
    env = {**os.environ, "CLUSTER_DIR": args.cluster_dir, "CLUSTER_PORT_BASE": str(args.port_base)}
    if args.binary:
        env["APP_BINARY"] = args.binary
    return env


def cluster_is_up(args):
    return subprocess.run([CLUSTER_SH, "status"], capture_output=True, env=cluster_env(args)).returncode == 0


def read_settings(cluster_dir):
    settings = {}
    with open(os.path.join(cluster_dir, "cluster.env")) as f:
        for line in f:
            if "=" in line and not line.startswith("#"):
                key, value = line.rstrip("\n").split("=", 1)
                settings[key] = value
    with open(os.path.join(cluster_dir, "secrets.env")) as f:
        for line in f:
            if line.startswith("SECRET_KEY="):
                settings["SECRET_KEY"] = line.rstrip("\n").split("=", 1)[1]
    return settings


def libpq_url(url):
    """The URL without its query: pgbouncer=true is the service's parameter, not libpq's."""
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(query=""))


# --- users and requests ------------------------------------------------------------------------


def sign_up(base, email):
    http("POST", base + "/api/access/signup", {"email": email, "name": "Bench", "password": "bench-password"})
    token = http("POST", base + "/api/access/login", {"username": email, "password": "bench-password"}, form=True)["access_token"]
    return token, http("GET", base + "/api/me", token=token)["id"]


def users(base, count):
    """`count` fresh users: their tokens and ids, each with one todo written (tags made)."""
    tag = secrets.token_hex(4)
    made = [sign_up(base, f"bench-{tag}-{n}@example.com") for n in range(count)]
    for token, _ in made:
        http("POST", base + "/api/todos", {"item": "warm-up", "tags": ["bench", "load"]}, token=token)
    return made


def metrics(base):
    """Every sample of /metrics: {series text: value}."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            try:
                samples[series] = float(value)
            except ValueError:
                pass
    return samples


def health_of(base):
    """The /health answer, or None (503 while a part is down, or no answer)."""
    try:
        return http("GET", base + "/health")
    except Exception:
        return None


def replica_health(answer):
    """What a /health answer says of replicas (any key naming them), or None."""
    found = {}

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if "replica" in key.lower():
                    found[path + key] = value
                else:
                    walk(value, path + key + ".")

    walk(answer, "")
    return found or None


def reads_by_target(before, after):
    """Reads counted per target from counters labelled target="replica"/"primary", or None."""
    found = {}
    for series, value in after.items():
        match = re.search(r'target="(replica|primary)"', series)
        if match and series.split("{")[0].endswith("_total"):
            found[match.group(1)] = found.get(match.group(1), 0) + value - before.get(series, 0)
    return found or None


# --- load generators ---------------------------------------------------------------------------


def wrk_script(script):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as combined:
        with open(os.path.join(LOAD, script)) as f:
            combined.write(f.read() + "\n" + REPORT)
        return combined.name


def wrk_many(urls, script, connections, duration, env):
    """One wrk per URL at once, `connections` split between them; rates and errors summed,
    the slowest p50 and p99 kept."""
    path = wrk_script(script)
    shares = [connections // len(urls) + (1 if i < connections % len(urls) else 0) for i in range(len(urls))]
    results = [None] * len(urls)

    def one(i):
        cmd = ["wrk", "-t", "2" if shares[i] >= 2 else "1", "-c", str(shares[i]), "-d", f"{duration}s",
               "--latency", "-s", path, urls[i]]
        out = run(cmd, env={**os.environ, **env})
        line = next(l for l in out.splitlines() if l.startswith("RESULT "))
        results[i] = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(urls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.unlink(path)
    if any(r is None for r in results):
        sys.exit("a wrk run failed")
    return {
        "rps": sum(r["rps"] for r in results),
        "p50_ms": max(r["p50_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
        "timeouts": sum(r["timeouts"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "requests": sum(r["requests"] for r in results),
    }


def pgbench(url, scripts, connections, duration):
    cmd = ["pgbench", "-n", "-c", str(connections), "-j", "2", "-T", str(duration)]
    for script in scripts:
        cmd += ["-f", script]
    out = run(cmd + [url])
    tps = re.search(r"tps = ([0-9.]+)", out)
    return float(tps.group(1)) if tps else 0.0


class Loads:
    """The three loads against a set of instances: paths, scripts and environments."""

    def __init__(self, bases, token, todo_id, tokens):
        self.bases = bases
        self.specs = {
            "read": (f"/api/todos/{todo_id}", "get.lua", {"TOKEN": token}),
            "write": ("/api/todos", "post.lua", {"TOKEN": token}),
            "write-32": ("/api/todos", "post_users.lua", {"TOKENS": ",".join(tokens)}),
        }

    def measure(self, load, instances, args):
        path, script, env = self.specs[load]
        return wrk_many([b + path for b in self.bases[:instances]], script, args.connections, args.duration, env)


# --- pgbench scripts from captured SQL ---------------------------------------------------------


def capture(args, settings, scratch, token, me, todo_id):
    """The SQL one read and one write sent, from an extra instance logging its statements."""
    log_path = os.path.join(scratch, "echo.log")
    server = Server(settings["APP_BINARY"], settings["APP_DATABASE_URL"], args.port_base + 13, log_path, echo=True,
                    extra_env={"APP_ENV": "production", "SECRET_KEY": settings["SECRET_KEY"]})
    try:
        mark = os.path.getsize(log_path)
        http("GET", server.base + f"/api/todos/{todo_id}", token=token)
        time.sleep(0.3)
        read = captured_sql(log_path, mark)
        mark = os.path.getsize(log_path)
        made = http("POST", server.base + "/api/todos", {"item": "captured", "tags": ["bench", "load"]}, token=token)
        time.sleep(0.3)
        write = captured_sql(log_path, mark)
    finally:
        server.stop()
    known = {made["id"]} | {t["id"] for t in made["tags"]}
    fresh = [made["id"]] + sorted({u for s in write if s.upper().startswith("INSERT")
                                   for u in UUID.findall(s) if u not in known and u != me})
    files = {"read": [os.path.join(scratch, "read.sql")], "write": [os.path.join(scratch, "write.sql")], "write-32": []}
    pgbench_file(files["read"][0], read)
    pgbench_file(files["write"][0], write, fresh, transaction=True)
    return files, read, write, fresh


def per_user_scripts(scratch, write, fresh, me, user_ids):
    """The captured write once per user (their id in place of the first user's)."""
    paths = []
    for n, user in enumerate(user_ids):
        path = os.path.join(scratch, f"write-user-{n}.sql")
        pgbench_file(path, [s.replace(me, user) for s in write], fresh, transaction=True)
        paths.append(path)
    return paths


# --- the run -----------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="medians of this many rounds")
    parser.add_argument("--connections", type=int, default=32, help="connections in total, and pgbench clients")
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("CLUSTER_PORT_BASE", "16000")))
    parser.add_argument("--cluster-dir", default=os.environ.get("CLUSTER_DIR", os.path.join(ROOT, ".cluster")))
    parser.add_argument("--binary", default=os.environ.get("APP_BINARY"),
                        help="the app executable (default: scripts/cluster.sh's choice, the release build)")
    parser.add_argument("--keep", action="store_true", help="leave a cluster this run started running")
    args = parser.parse_args()
    for tool in ("wrk", "psql", "pgbench"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found; on Debian: apt-get install {'wrk' if tool == 'wrk' else 'postgresql-client postgresql-contrib'}")
    if args.connections < 3:
        sys.exit("--connections must be at least 3 (one per instance)")

    started = False
    if not cluster_is_up(args):
        print("starting the cluster (scripts/cluster.sh up)", flush=True)
        subprocess.run([CLUSTER_SH, "up"], env={**cluster_env(args), **POOL_ENV}, check=True, stdout=sys.stderr)
        started = True
    scratch = tempfile.mkdtemp(prefix="app-cluster-bench-")
    sqlite_server = None
    try:
        settings = read_settings(args.cluster_dir)
        binary = settings["APP_BINARY"]
        bases = [f"http://127.0.0.1:{p}" for p in settings["APP_PORTS"].split()]
        db_url = libpq_url(settings["APP_DATABASE_URL"])

        # Users on the cluster: the first reads and writes alone, all 32 write in turn.
        made = users(bases[0], USERS)
        token, me = made[0]
        todo_id = http("GET", bases[0] + "/api/todos?limit=1", token=token)["items"][0]["id"]
        files, _, write_sql, fresh = capture(args, settings, scratch, token, me, todo_id)
        files["write-32"] = per_user_scripts(scratch, write_sql, fresh, me, [u for _, u in made])
        cluster_loads = Loads(bases, token, todo_id, [t for t, _ in made])

        # SQLite: one instance of the default backend on a temp file, the same loads.
        sqlite_url = "sqlite://" + os.path.join(scratch, "bench.sqlite3")
        sqlite_server = Server(binary, sqlite_url, args.port_base + 14, os.path.join(scratch, "sqlite.log"), echo=False,
                               extra_env={"SECRET_KEY": settings["SECRET_KEY"]})
        lite = users(sqlite_server.base, USERS)
        lite_todo = http("GET", sqlite_server.base + "/api/todos?limit=1", token=lite[0][0])["items"][0]["id"]
        sqlite_loads = Loads([sqlite_server.base], lite[0][0], lite_todo, [t for t, _ in lite])

        before = {b: metrics(b) for b in bases}
        results = {(load, target): [] for load in LOADS for target in ("1", "3", "pgbench", "sqlite")}
        for round_number in range(args.rounds):
            for load in LOADS:
                for target, measure in (
                    ("1", lambda: cluster_loads.measure(load, 1, args)),
                    ("3", lambda: cluster_loads.measure(load, len(bases), args)),
                    ("pgbench", lambda: {"rps": pgbench(db_url, files[load], args.connections, args.duration)}),
                    ("sqlite", lambda: sqlite_loads.measure(load, 1, args)),
                ):
                    result = measure()
                    results[(load, target)].append(result)
                    print(f"round {round_number + 1} {load:8} {target:8} {result['rps']:8.0f}/s"
                          + (f" p99 {result['p99_ms']:.1f} ms timeouts {int(result['timeouts'])} errors {int(result['errors'])}" if "p99_ms" in result else ""),
                          flush=True)
        after = {b: metrics(b) for b in bases}
        health = health_of(bases[0]) or {}
    finally:
        if sqlite_server:
            sqlite_server.stop()
        if started and not args.keep:
            subprocess.run([CLUSTER_SH, "down"], env=cluster_env(args), stdout=sys.stderr)

    report(args, settings, results, before, after, bases, files, health.get("pool"))
    replicas = replica_health(health)
    if replicas:
        print(f"\n/health of {bases[0]} on replicas, after the run: `{json.dumps(replicas)}`")
    shutil.rmtree(scratch, ignore_errors=True)


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def report(args, settings, results, before, after, bases, files, pool):
    via = "PgBouncer (transaction mode, pgbouncer=true)" if settings.get("APP_DB") == "pgbouncer" else "the primary directly"
    print(f"\n{args.connections} connections in total, {args.duration} s per measurement, medians of {args.rounds} rounds; "
          f"binary {settings['APP_BINARY']}; instances reach PostgreSQL through {via}; pgbench on the same endpoint; "
          f"each instance's pool (from /health): {json.dumps(pool)}.\n")
    print("| load | target | req/s | p50 ms | p99 ms | timeouts | other errors | pgbench tps (same SQL) | service / pgbench |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for load in LOADS:
        tps = statistics.median(r["rps"] for r in results[(load, "pgbench")])
        for target, label in (("1", "PostgreSQL, 1 instance"), ("3", f"PostgreSQL, {len(bases)} instances"), ("sqlite", "SQLite, 1 instance")):
            runs = results[(load, target)]
            rps = median(runs, "rps")
            ratio = f"{rps / tps:.2f}" if tps and target != "sqlite" else "-"
            shown = f"{tps:.0f}" if target != "sqlite" else "-"
            print(f"| {load} | {label} | {rps:.0f} | {median(runs, 'p50_ms'):.2f} | {median(runs, 'p99_ms'):.2f} "
                  f"| {int(sum(r['timeouts'] for r in runs))} | {int(sum(r['errors'] for r in runs))} | {shown} | {ratio} |")
    one = median(results[("write", "1")], "rps")
    many = median(results[("write-32", "1")], "rps")
    if one:
        print(f"\nWrites of 32 users / writes of one user (1 instance): {many / one:.2f}x; "
              f"3 instances / 1 instance: read {median(results[('read', '3')], 'rps') / median(results[('read', '1')], 'rps'):.2f}x, "
              f"write {median(results[('write', '3')], 'rps') / one:.2f}x")

    reads_sent = int(sum(r["requests"] for target in ("1", "3") for r in results[("read", target)]))
    by_target = {}
    for base in bases:
        found = reads_by_target(before[base], after[base])
        for target, count in (found or {}).items():
            by_target[target] = by_target.get(target, 0) + count
    if by_target:
        replica = by_target.get("replica", 0)
        total = replica + by_target.get("primary", 0)
        share = f" ({100 * replica / total:.0f}% of the reads counted)" if total else ""
        print(f"\nReads served by the replica during the run: {replica:.0f}{share}; "
              f"by the primary: {by_target.get('primary', 0):.0f}; GET requests sent by wrk: {reads_sent}.")
    else:
        print(f"\nReads served by the replica: not counted by this build (no /metrics counter labelled "
              f"target=\"replica\"); GET requests sent by wrk: {reads_sent}.")
    lines = [f"{base}: {series} {value:g}" for base in bases for series, value in after[base].items() if "replica" in series]
    if lines:
        print("\n/metrics lines that mention a replica, after the run:\n\n```")
        print("\n".join(lines))
        print("```")
    for load in LOADS:
        print(f"\n<details><summary>{load}: SQL run by pgbench ({len(files[load])} script(s); the first)</summary>\n\n"
              f"```sql\n{open(files[load][0]).read()}```\n</details>")


if __name__ == "__main__":
    main()
