#!/usr/bin/env python3
"""Times `app database dump` and `app database load`, with baselines from the same run.

What it measures (median of --runs runs each, wall time and peak RSS of the whole process), for a
database holding --rows todos (plus one user, its role and the fixtures' roles):
  - PostgreSQL: `app database dump` against `pg_dump --data-only` (plain COPY text) of the same
    database, and `app database load` into a fresh database at head against `psql` feeding that
    pg_dump output into a fresh database at head (COPY, the fastest way in);
  - SQLite: `app database dump` against the sqlite3 CLI's `.dump`, and `app database load` into a
    fresh file at head against the sqlite3 CLI reading that `.dump` into an empty file;
  - peak RSS of dump and load at --rows and at a tenth of it: flat memory means the two are close.

app's load does more than the baselines: it checks every value and the checksums before
writing, inserts through bound parameters, and reads every table back to verify before commit.

Usage: bench/dump_load.py [--runs 5] [--rows 100000] [--binary target/release/app] [--pg postgres://postgres@127.0.0.1:5432/postgres]
Needs: a release build (`cargo build --release -p app`), psql, pg_dump, sqlite3, /usr/bin/time.
Prints a Markdown table.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, env=None, stdin=None):
    """Runs a command under /usr/bin/time; returns (seconds, peak RSS in MiB, stdout)."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, env=env, stdin=stdin, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    peak_kib = int(done.stderr.strip().splitlines()[-1])
    return elapsed, peak_kib / 1024.0, done.stdout


def app_env(url):
    return {"PATH": os.environ.get("PATH", ""), "APP_ENV": "testing", "DATABASE_URL": url,
            "LOG_LEVEL": "error", "DATABASE_FIXTURE_PATH": os.path.join(ROOT, "crates", "app", "fixtures")}


def pg_url(base, name):
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def psql(url, sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=True, capture_output=True)


def bulk_todos_sql(rows, dialect):
    if dialect == "pg":
        return (
            "INSERT INTO todo (id, item, description, created_time, alarm_time, start_time, end_time, importance, user_id, created_at, updated_at) "
            f"SELECT gen_random_uuid(), 'bulk ' || i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'row ' || i || E'\\n' || 'ü \"q\"' END, "
            "to_timestamp(1700000000 + i), NULL, CASE WHEN i % 2 = 0 THEN to_timestamp(1700000000 + i * 7) END, NULL, "
            "(ARRAY['none','low','medium','high'])[i % 4 + 1], (SELECT id FROM user_account LIMIT 1), to_timestamp(1700000000 + i), to_timestamp(1700000000 + i) "
            f"FROM generate_series(1, {rows}) AS i"
        )
    return (
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) "
        "INSERT INTO todo (id, item, description, created_time, alarm_time, start_time, end_time, importance, user_id, created_at, updated_at) "
        "SELECT randomblob(16), 'bulk ' || i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'row ' || i || char(10) || 'ü \"q\"' END, "
        "strftime('%Y-%m-%dT%H:%M:%fZ', 1700000000 + i, 'unixepoch'), NULL, "
        "CASE WHEN i % 2 = 0 THEN strftime('%Y-%m-%dT%H:%M:%fZ', 1700000000 + i * 7, 'unixepoch') END, NULL, "
        "CASE i % 4 WHEN 0 THEN 'none' WHEN 1 THEN 'low' WHEN 2 THEN 'medium' ELSE 'high' END, "
        "(SELECT id FROM user_account LIMIT 1), strftime('%Y-%m-%dT%H:%M:%fZ', 1700000000 + i, 'unixepoch'), "
        "strftime('%Y-%m-%dT%H:%M:%fZ', 1700000000 + i, 'unixepoch') FROM n"
    )


class Bench:
    def __init__(self, app, pg_base, scratch):
        self.app, self.pg_base, self.scratch = app, pg_base, scratch
        self.databases = []

    def new_pg(self):
        name = f"bench_dump_{uuid.uuid4().hex[:12]}"
        psql(self.pg_base, f"CREATE DATABASE {name}")
        self.databases.append(name)
        return pg_url(self.pg_base, name)

    def new_sqlite(self):
        return "sqlite://" + os.path.join(self.scratch, f"{uuid.uuid4().hex[:12]}.sqlite3")

    def at_head(self, url):
        run([self.app, "database", "upgrade"], env=app_env(url))
        return url

    def source(self, kind, rows):
        url = self.at_head(self.new_pg() if kind == "pg" else self.new_sqlite())
        env = app_env(url)
        run([self.app, "database", "load-fixtures"], env=env)
        run([self.app, "user", "create", "--email", "bench@example.com", "--password", "bench-password"], env=env)
        if kind == "pg":
            psql(url, bulk_todos_sql(rows, "pg"))
            psql(url, "VACUUM ANALYZE")
        else:
            path = url[len("sqlite://"):]
            subprocess.run(["sqlite3", path, bulk_todos_sql(rows, "sqlite")], check=True)
        return url

    def dir(self):
        return os.path.join(self.scratch, uuid.uuid4().hex[:12])

    def drop(self, url):
        if url.startswith("sqlite://"):
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.remove(url[len("sqlite://"):] + suffix)
                except FileNotFoundError:
                    pass
        else:
            name = url.rsplit("/", 1)[1]
            psql(self.pg_base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            self.databases.remove(name)

    def cleanup(self):
        for name in self.databases:
            psql(self.pg_base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "app"))
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: run `cargo build --release -p app` first")

    scratch = tempfile.mkdtemp(prefix="app-bench-dump-")
    bench = Bench(args.binary, args.pg, scratch)
    results = {}

    def sample(name, measured):
        seconds, rss = measured[0], measured[1]
        results.setdefault(name, []).append((seconds, rss))

    try:
        for kind in ("pg", "sqlite"):
            label = "PostgreSQL" if kind == "pg" else "SQLite"
            fresh = bench.new_pg if kind == "pg" else bench.new_sqlite
            for rows in (args.rows // 10, args.rows):  # the smaller size shows whether memory grows
                source = bench.source(kind, rows)
                for _ in range(args.runs):
                    out = bench.dir()
                    sample(f"{label}: app dump, {rows} todos", run([args.binary, "database", "dump", "-o", out], env=app_env(source)))
                    target = bench.at_head(fresh())
                    sample(f"{label}: app load, {rows} todos", run([args.binary, "database", "load", out], env=app_env(target)))
                    shutil.rmtree(out)
                    bench.drop(target)
                    data = os.path.join(scratch, "data.sql")
                    if kind == "pg":
                        dump_cmd = ["pg_dump", "--data-only", "--exclude-table-data=ddl_version", source]
                        target = bench.at_head(fresh())
                        load_cmd = ["psql", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", data, target]
                        load_stdin = None
                    else:
                        dump_cmd = ["sqlite3", source[len("sqlite://"):], ".dump"]
                        target = fresh()
                        load_cmd = ["sqlite3", target[len("sqlite://"):]]
                    started = time.perf_counter()
                    with open(data, "w") as f:
                        subprocess.run(dump_cmd, stdout=f, check=True)
                    sample(f"{label}: baseline {'pg_dump --data-only' if kind == 'pg' else 'sqlite3 .dump'}, {rows} todos",
                           (time.perf_counter() - started, 0.0))
                    with open(data) as f:
                        sample(f"{label}: baseline {'psql loads it (COPY)' if kind == 'pg' else 'sqlite3 reads the .dump'}, {rows} todos",
                               run(load_cmd, stdin=f if kind == "sqlite" else None))
                    bench.drop(target)
                bench.drop(source)
    finally:
        bench.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"| step | median s | min s | max s | peak RSS MiB (median) |")
    print("|---|---:|---:|---:|---:|")
    for name, samples in results.items():
        secs = [s for s, _ in samples]
        rss = [r for _, r in samples]
        rss_text = f"{statistics.median(rss):.1f}" if any(rss) else ""
        print(f"| {name} | {statistics.median(secs):.3f} | {min(secs):.3f} | {max(secs):.3f} | {rss_text} |")

    print()
    for label in ("PostgreSQL", "SQLite"):
        rows = args.rows
        def med(key):
            return statistics.median(s for s, _ in results[key])
        if label == "PostgreSQL":
            dump_base, load_base = f"{label}: baseline pg_dump --data-only, {rows} todos", f"{label}: baseline psql loads it (COPY), {rows} todos"
        else:
            dump_base, load_base = f"{label}: baseline sqlite3 .dump, {rows} todos", f"{label}: baseline sqlite3 reads the .dump, {rows} todos"
        print(f"- {label}, {rows} todos: dump {med(f'{label}: app dump, {rows} todos') / med(dump_base):.2f}x the baseline's time, "
              f"load {med(f'{label}: app load, {rows} todos') / med(load_base):.2f}x")


if __name__ == "__main__":
    main()
