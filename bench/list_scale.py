#!/usr/bin/env python3
"""List latency at scale: a heavy user (1,000,000 todos) against a light one (1,000).

For each database (PostgreSQL and SQLite, one run), it starts the release build of `app` on a
fresh database, makes two users, seeds their todos straight in SQL (generate_series on
PostgreSQL, a recursive CTE on SQLite; the todos' words make `milk` frequent and `zebra`
rare), and drives with wrk, one request kind after another at a fixed concurrency:
  - first page             GET /api/todos?limit=50
  - cursor page            the page `nextCursor` leads to after --cursor-depth rows, when the
                           API answers with a cursor (skipped, and said so, when it does not)
  - offset page            GET /api/todos?limit=50&offset=500
  - search, frequent term  GET /api/todos?limit=50&search=milk
  - search, rare term      GET /api/todos?limit=50&search=zebra
  - each sort              GET /api/todos?limit=50&sort=<field>&order=asc
It prints p50 and p99 per kind and user, and the ratio heavy/light of the p50s, with the goal
(heavy within 2x of light) marked for first pages, cursor pages, sorts and searches.

Usage: bench/list_scale.py [--rows 1000000] [--small 1000] [--duration 5] [--connections 8]
                           [--db both|postgres|sqlite] [--pg URL] [--binary PATH] [--out FILE]
Needs: `cargo build --release -p app`, wrk (Debian: apt-get install wrk), psql.
"""

import argparse
import os
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402
from load import LOAD, ROOT, sh  # noqa: E402

SORTS = ["created_at", "updated_at", "item", "start_time", "end_time", "importance"]
# Kinds whose heavy/light p50 ratio the goal bounds (offset pages are not among them).
GOAL = 2.0
BOUNDED = ("first page", "cursor page", "search milk", "search zebra") + tuple(f"sort {s}" for s in SORTS)


# Pages of a million-row list may take long before the indexes; seeding the server's database
# may make its start slow: these allow for both.
REQUEST_TIMEOUT = 120
START_TIMEOUT = 600
# A small pool, no overflow: the list queries, not the pool, should set the pace.
POOL = {"DATABASE_POOL_SIZE": "8", "DATABASE_MAX_POOL_OVERFLOW": "0"}


def http(method, url, body=None, token=None, form=False):
    return load.http(method, url, body, token, form, timeout=REQUEST_TIMEOUT)


def Server(binary, url, port, log_path):
    """The release binary on a port (development: it upgrades the schema at start)."""
    return load.Server(binary, url, port, log_path, echo=False, extra_env=POOL,
                       start_timeout=START_TIMEOUT, log_mode="a")


def item_sql(n):
    """The item of todo number `n` (an SQL expression): `milk` in one of five, `zebra` in one
    of 100,000."""
    return (f"'todo ' || {n} || ' ' || (CASE {n} % 5 WHEN 0 THEN 'buy milk' WHEN 1 THEN 'call mom' "
            f"WHEN 2 THEN 'write report' WHEN 3 THEN 'fix bike' ELSE 'water plants' END) "
            f"|| (CASE WHEN {n} % 100000 = 7 THEN ' zebra' ELSE '' END)")


def seed_postgres(url, users):
    parts = []
    for user_id, rows in users:
        parts.append(f"""
        INSERT INTO todo (id, item, description, created_time, start_time, end_time, importance, user_id, created_at, updated_at)
          SELECT gen_random_uuid(), {item_sql('g')}, NULL, now(),
                 CASE WHEN g % 3 = 0 THEN NULL ELSE timestamptz '2020-01-01' + g * interval '1 hour' END,
                 CASE WHEN g % 3 = 0 THEN NULL ELSE timestamptz '2020-01-01' + g * interval '1 hour' + interval '30 minutes' END,
                 (ARRAY['none','low','medium','high'])[1 + g % 4], '{user_id}',
                 now() - g * interval '1 second', now() - g * interval '1 second'
          FROM generate_series(1, {rows}) g;""")
    parts.append("VACUUM ANALYZE todo;")
    for part in parts:
        sh(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", part])


def seed_sqlite(path, users):
    db = sqlite3.connect(path)
    # The timestamps as the service writes them: take the form of the user's own.
    sample = db.execute("SELECT created_at FROM user_account LIMIT 1").fetchone()[0]
    suffix = sample[19:]
    sep = sample[10]
    stamp = lambda expr: f"strftime('%Y-%m-%d{sep}%H:%M:%S', {expr}) || '{suffix}'"
    for user_id, rows in users:
        db.execute(f"""
        WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {rows})
        INSERT INTO todo (id, item, description, created_time, start_time, end_time, importance, user_id, created_at, updated_at)
          SELECT randomblob(16), {item_sql('n')}, NULL, {stamp("'now'")},
                 CASE WHEN n % 3 = 0 THEN NULL ELSE {stamp("'2020-01-01', '+' || n || ' hours'")} END,
                 CASE WHEN n % 3 = 0 THEN NULL ELSE {stamp("'2020-01-01', '+' || n || ' hours', '+30 minutes'")} END,
                 CASE n % 4 WHEN 0 THEN 'none' WHEN 1 THEN 'low' WHEN 2 THEN 'medium' ELSE 'high' END,
                 X'{user_id.replace('-', '')}',
                 {stamp("'now', '-' || n || ' seconds'")}, {stamp("'now', '-' || n || ' seconds'")}
          FROM g""")
    db.commit()
    db.execute("ANALYZE")
    db.commit()
    db.close()


def wrk(url, token, args):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as combined:
        for part in ("get.lua", "report.lua"):
            with open(os.path.join(LOAD, part)) as f:
                combined.write(f.read() + "\n")
    out = sh(["wrk", "-t", "2", "-c", str(args.connections), "-d", f"{args.duration}s", "--latency",
              "--timeout", "30s", "-s", combined.name, url], env={**os.environ, "TOKEN": token})
    os.unlink(combined.name)
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def cursor_path(base, token, depth):
    """The path of the page after `depth` rows, reached through `nextCursor`; None when the
    API gives no cursor."""
    path = "/api/todos?limit=50"
    seen = 0
    while seen < depth:
        page = http("GET", base + path, token=token)
        cursor = page.get("nextCursor")
        if not cursor:
            return None
        path = "/api/todos?limit=50&cursor=" + urllib.parse.quote(cursor)
        seen += len(page["items"])
    return path


def measure(kind, binary, args, scratch):
    """p50/p99 per request kind for the light and the heavy user on one database."""
    log_path = os.path.join(scratch, f"{kind}.log")
    if kind == "postgres":
        name = f"app_scale_{secrets.token_hex(6)}"
        sh(["psql", "-q", args.pg, "-c", f"CREATE DATABASE {name}"])
        parts = urllib.parse.urlsplit(args.pg)
        url = urllib.parse.urlunsplit(parts._replace(path="/" + name))
        cleanup = lambda: sh(["psql", "-q", args.pg, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])
    else:
        path = os.path.join(scratch, "scale.sqlite3")
        url = f"sqlite://{path}"
        cleanup = lambda: None
    try:
        server = Server(binary, url, args.port, log_path)
        tokens, users = {}, []
        for who, rows in (("light", args.small), ("heavy", args.rows)):
            email = f"{who}@example.com"
            http("POST", server.base + "/api/access/signup", {"email": email, "name": who, "password": "bench-password"})
            tokens[who] = http("POST", server.base + "/api/access/login",
                               {"username": email, "password": "bench-password"}, form=True)["access_token"]
            users.append((http("GET", server.base + "/api/me", token=tokens[who])["id"], rows))
        server.stop()
        started = time.time()
        if kind == "postgres":
            seed_postgres(url, users)
        else:
            seed_sqlite(path, users)
        print(f"{kind}: seeded {args.small + args.rows} todos in {time.time() - started:.0f} s", file=sys.stderr)
        server = Server(binary, url, args.port, log_path)
        results = {}
        for who in ("light", "heavy"):
            token = tokens[who]
            paths = [("first page", "/api/todos?limit=50")]
            cursor = cursor_path(server.base, token, min(args.cursor_depth, args.small - 50))
            paths.append(("cursor page", cursor))
            paths.append(("offset page", "/api/todos?limit=50&offset=500"))
            paths += [(f"search {t}", f"/api/todos?limit=50&search={t}") for t in ("milk", "zebra")]
            paths += [(f"sort {s}", f"/api/todos?limit=50&sort={s}&order=asc") for s in SORTS]
            for label, request in paths:
                if request is None:
                    results[(label, who)] = None
                    continue
                http("GET", server.base + request, token=token)  # warm up
                results[(label, who)] = wrk(server.base + request, token, args)
                print(f"{kind} {who} {label}: {results[(label, who)]}", file=sys.stderr)
        server.stop()
        return [label for label, _ in paths], results
    finally:
        cleanup()


def table(kind, labels, results, args):
    lines = [f"### {kind}: {args.small:,} vs {args.rows:,} todos (wrk -c{args.connections}, {args.duration} s per kind)", "",
             "| request | light p50 ms | light p99 ms | heavy p50 ms | heavy p99 ms | heavy/light p50 | goal |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for label in labels:
        light, heavy = results[(label, "light")], results[(label, "heavy")]
        if light is None or heavy is None:
            lines.append(f"| {label} | - | - | - | - | - | not offered by this build |")
            continue
        if not light["requests"] or not heavy["requests"]:
            # wrk counts only the requests that finish within the run.
            lines.append(f"| {label} | none finished in {args.duration} s | | | | | "
                         f"{'missed' if label in BOUNDED else 'n/a'} |")
            continue
        ratio = heavy["p50_ms"] / light["p50_ms"] if light["p50_ms"] else float("inf")
        goal = ("met" if ratio <= GOAL else "missed") if label in BOUNDED else "n/a"
        errors = heavy["errors"] + light["errors"]
        note = f" ({errors:.0f} errors)" if errors else ""
        lines.append(f"| {label} | {light['p50_ms']:.2f} | {light['p99_ms']:.2f} | {heavy['p50_ms']:.2f} | "
                     f"{heavy['p99_ms']:.2f} | {ratio:.1f}x | {goal}{note} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="todos of the heavy user")
    parser.add_argument("--small", type=int, default=1_000, help="todos of the light user")
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per request kind")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--cursor-depth", type=int, default=900, help="rows to page through before the measured cursor page")
    parser.add_argument("--db", choices=("both", "postgres", "sqlite"), default="both")
    parser.add_argument("--port", type=int, default=18766)
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "app"))
    parser.add_argument("--out", help="also write the tables to this file")
    args = parser.parse_args()
    for tool in ("wrk", "psql"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found; on Debian: apt-get install {'wrk' if tool == 'wrk' else 'postgresql-client'}")
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: run `cargo build --release -p app` first")
    scratch = tempfile.mkdtemp(prefix="app-scale-")
    out = []
    for kind in (("postgres", "sqlite") if args.db == "both" else (args.db,)):
        labels, results = measure(kind, args.binary, args, scratch)
        out.append(table(kind, labels, results, args))
    text = "\n".join(out)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
