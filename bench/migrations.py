#!/usr/bin/env python3
"""Times the migration commands of `app` as whole processes, with baselines from the same run.

What it measures (median of --runs runs each, wall time of the whole process):
  - `app database upgrade` of the full chain on a fresh PostgreSQL database and a fresh SQLite file,
    against a baseline of `psql` / the `sqlite3` CLI (when installed; Python's sqlite3 module
    in process otherwise) running the very SQL that `app database upgrade --sql` prints, so the
    ratio is the engine's overhead over the SQL itself;
  - `app database make-migrations` with no model change (no database needed);
  - `app database check` on a database at head (introspection + two diffs);
  - `app --version`, the floor of starting the binary.

Usage: bench/migrations.py [--runs 9] [--binary target/release/app] [--pg postgres://postgres@127.0.0.1:5432/postgres]
Needs: a release build (`cargo build --release -p app`), psql, python3; sqlite3 optional.
Prints a Markdown table.
"""

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, env=None, stdin=None):
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def app_env(url, **extra):
    env = {"PATH": os.environ.get("PATH", ""), "APP_ENV": "testing", "DATABASE_URL": url, "LOG_LEVEL": "error"}
    env.update(extra)
    return env


def pg_url(base, name):
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def psql(base, sql):
    run(["psql", "-q", "-v", "ON_ERROR_STOP=1", base, "-c", sql])


def median_ms(samples):
    return statistics.median(samples) * 1000.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "app"))
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    app = args.binary
    if not os.path.exists(app):
        sys.exit(f"{app} not found: run `cargo build --release -p app` first")

    results = {}

    def sample(name, fn):
        results.setdefault(name, []).append(fn())

    scratch = tempfile.mkdtemp(prefix="app-bench-")
    try:
        # The SQL of a full upgrade, for the baselines.
        _, pg_sql = run([app, "database", "upgrade", "--sql"], env=app_env(pg_url(args.pg, "unused")))
        _, sqlite_sql = run([app, "database", "upgrade", "--sql"], env=app_env("sqlite://unused.db"))
        migrations = os.path.join(scratch, "migrations")
        shutil.copytree(os.path.join(ROOT, "crates", "app", "src", "migrations"), migrations)

        for i in range(args.runs):
            name = f"app_bench_{uuid.uuid4().hex[:12]}"
            psql(args.pg, f"CREATE DATABASE {name}")
            url = pg_url(args.pg, name)
            sample("upgrade, PostgreSQL", lambda: run([app, "database", "upgrade"], env=app_env(url))[0])
            sample("check, PostgreSQL", lambda: run([app, "database", "check"], env=app_env(url))[0])
            psql(args.pg, f"DROP DATABASE {name} WITH (FORCE)")

            psql(args.pg, f"CREATE DATABASE {name}")
            sample("baseline: psql runs the same SQL", lambda: run(["psql", "-q", "-v", "ON_ERROR_STOP=1", pg_url(args.pg, name)], stdin=pg_sql)[0])
            psql(args.pg, f"DROP DATABASE {name} WITH (FORCE)")

            db = os.path.join(scratch, f"{name}.sqlite3")
            sample("upgrade, SQLite", lambda: run([app, "database", "upgrade"], env=app_env(f"sqlite://{db}"))[0])
            sample("check, SQLite", lambda: run([app, "database", "check"], env=app_env(f"sqlite://{db}"))[0])

            base_db = os.path.join(scratch, f"{name}-baseline.sqlite3")

            def sqlite_baseline():
                started = time.perf_counter()
                conn = sqlite3.connect(base_db, isolation_level=None)
                conn.executescript("PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;" + sqlite_sql)
                conn.close()
                return time.perf_counter() - started

            sample("baseline: Python sqlite3 runs the same SQL (in process)", sqlite_baseline)
            if shutil.which("sqlite3"):
                cli_db = os.path.join(scratch, f"{name}-cli.sqlite3")
                sample("baseline: sqlite3 CLI runs the same SQL", lambda: run(
                    ["sqlite3", "-bail", cli_db], stdin="PRAGMA journal_mode=WAL;\nPRAGMA foreign_keys=ON;\n" + sqlite_sql)[0])
            sample("make-migrations, no change", lambda: run(
                [app, "database", "make-migrations", "-m", "nothing"],
                env=app_env("sqlite://unused.db", DATABASE_MIGRATION_PATH=migrations))[0])
            sample("app --version (process start)", lambda: run([app, "--version"])[0])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    med = {name: median_ms(values) for name, values in results.items()}
    sqlite_base = med.get("baseline: sqlite3 CLI runs the same SQL",
                          med["baseline: Python sqlite3 runs the same SQL (in process)"])
    ratio = {
        "upgrade, PostgreSQL": med["upgrade, PostgreSQL"] / med["baseline: psql runs the same SQL"],
        "upgrade, SQLite": med["upgrade, SQLite"] / sqlite_base,
    }
    print(f"runs per command: {args.runs}; wall time of the whole process, median\n")
    print("| command | median ms | min ms | max ms | ratio to baseline |")
    print("|---|---:|---:|---:|---:|")
    for name, values in results.items():
        r = f"{ratio[name]:.2f}x" if name in ratio else ""
        print(f"| {name} | {med[name]:.1f} | {min(values) * 1000:.1f} | {max(values) * 1000:.1f} | {r} |")


if __name__ == "__main__":
    main()
