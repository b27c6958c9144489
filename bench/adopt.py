#!/usr/bin/env python3
"""Times `app database adopt` on a Python-service database, with a baseline from the same run.

The source is a copy of a database the Python service (Alembic) made, from
crates/app/tests/legacy/ (`python-service-pg.sql`, `python-service.sqlite3`: 2 users, 12 todos
each, with tags), grown once per run with SQL only to --rows todos: rows as the Python service
writes them (random UUIDs, importance as the enum's member names NONE..HIGH, on SQLite naive UTC
text timestamps with 6 fraction digits, start_time < end_time, sa_orm_sentinel NULL), half of the
new todos with one tag link to a tag of the same user. The grown database is the template: on
PostgreSQL every round's database is `CREATE DATABASE .. TEMPLATE`, on SQLite a copy of the file.

What it measures (median of --runs rounds, wall time and peak RSS of the whole process):
  - app: `app database adopt --yes --no-backup` on a fresh copy (stdin not a terminal, in a
    temporary working directory): one process that plans (introspects, checks every row the
    change needs) and runs the plan in one transaction; then, not timed, `app database check`
    must exit 0, the todo count and the tag links must be unchanged and importance lower case;
  - baseline: on another fresh copy, the plan printed by `app database adopt --sql` (printing
    it is not part of the baseline; its time is shown apart as "plan only") run by `psql -f`
    on PostgreSQL or by the sqlite3 CLI on SQLite, checked afterwards the same way.

Usage: bench/adopt.py [--runs 5] [--rows 100000] [--backend postgresql|sqlite|both]
                      [--binary $CARGO_TARGET_DIR/release/app] [--build]
                      [--pg postgres://postgres@127.0.0.1:5432/postgres]
Needs: a release build (`cargo build --release -p app`, or --build), psql, the sqlite3 CLI
(Debian: apt-get install sqlite3) and /usr/bin/time. Prints a Markdown table. Drops the
PostgreSQL databases and removes the files it made, also on errors and Ctrl-C.
"""

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEGACY = os.path.join(ROOT, "crates", "app", "tests", "legacy")
IMPORTANCE_LOWER = "('none', 'low', 'medium', 'high')"


class Failed(Exception):
    pass


def run(cmd, env=None, stdin=None, cwd=None, out=None):
    """Runs a command under /usr/bin/time; returns (seconds, peak RSS in MiB, stdout).

    stdout goes to the file `out` when given (and "" is returned), else it is returned as text.
    Peak RSS comes from /usr/bin/time (wait4's ru_maxrss of the command), not from os.wait4 here:
    a child forked from this Python process keeps the interpreter's high-water mark across
    exec, which would hide anything below ~17 MiB.
    """
    with tempfile.NamedTemporaryFile() as peak, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as captured:
        started = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", peak.name] + cmd, env=env, cwd=cwd,
                              stdin=stdin if stdin is not None else subprocess.DEVNULL,
                              stdout=out if out is not None else captured, stderr=err)
        elapsed = time.perf_counter() - started
        captured.seek(0)
        err.seek(0)
        text = captured.read().decode(errors="replace")
        if done.returncode != 0:
            raise Failed(f"failed (exit {done.returncode}): {' '.join(cmd)}\n{text}\n{err.read().decode(errors='replace')}")
        peak_kib = int(open(peak.name).read().split()[-1])
        return elapsed, peak_kib / 1024.0, text


def app_env(url):
    return {"PATH": os.environ.get("PATH", ""), "APP_ENV": "testing", "DATABASE_URL": url, "LOG_LEVEL": "error"}


def pg_url(base, name):
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def psql(url, sql, capture=False):
    done = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise Failed(f"psql failed: {sql}\n{done.stderr}")
    return done.stdout.strip()


def count_statements(script):
    """Statements in a plan, as the sqlite3 module's complete_statement splits them."""
    count, buf = 0, ""
    for line in script.splitlines(keepends=True):
        if not buf and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            count, buf = count + 1, ""
    return count


def grow_sql(rows, dialect):
    """SQL that adds todos up to `rows` for the users already there, and tag links for half of them.

    Todo i goes to the users in turn; its tag is one of that user's tags in turn. Items are
    `bulk i`, which the tag links' statement reads back to find the new todos and their i.
    """
    if dialect == "pg":
        return f"""
WITH u AS (SELECT id, row_number() OVER (ORDER BY email) - 1 AS k, count(*) OVER () AS n FROM user_account),
     g AS (SELECT i, timestamptz '2026-01-01 00:00:00+00' + i * interval '1 hour' AS start,
                     timestamptz '2026-11-30 00:00:00+00' + i * interval '0.123457 second' AS made
           FROM generate_series(1, {rows} - (SELECT count(*) FROM todo)) AS i)
INSERT INTO todo (id, item, description, created_time, importance, user_id, sa_orm_sentinel, created_at, updated_at, alarm_time, start_time, end_time)
SELECT gen_random_uuid(), 'bulk ' || i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'row ' || i || E'\\n' || 'ü "q"' END,
       made, (ARRAY['NONE', 'LOW', 'MEDIUM', 'HIGH'])[i % 4 + 1], u.id, NULL, made, made + interval '0.000001 second',
       CASE WHEN i % 5 = 0 THEN start - interval '15 minutes' END, start, start + interval '45 minutes'
FROM g JOIN u ON u.k = g.i % u.n;

WITH t AS (SELECT id, user_id, row_number() OVER (PARTITION BY user_id ORDER BY name) - 1 AS k,
                  count(*) OVER (PARTITION BY user_id) AS n FROM tag),
     b AS (SELECT id, user_id, created_at, substr(item, 6)::int AS i FROM todo WHERE item LIKE 'bulk %')
INSERT INTO user_account_todo_tag (id, todo_id, tag_id, sa_orm_sentinel, created_at, updated_at)
SELECT gen_random_uuid(), b.id, t.id, NULL, b.created_at, b.created_at
FROM b JOIN t ON t.user_id = b.user_id AND t.k = b.i % t.n
WHERE b.i % 4 < 2;
"""
    # SQLite: timestamps as SQLAlchemy writes them (naive UTC, always 6 fraction digits).
    def text_time(seconds, micros):
        return f"strftime('%Y-%m-%d %H:%M:%S', {seconds}, 'unixepoch') || '.' || printf('%06d', {micros})"

    start = "(1767225600 + i * 3600)"  # 2026-01-01 00:00:00 UTC + i hours
    made_us = "(i * 123457)"  # 2026-11-30 00:00:00 UTC + i * 0.123457 s
    made = text_time(f"(1795996800 + {made_us} / 1000000)", f"({made_us} % 1000000)")
    updated = text_time(f"(1795996800 + ({made_us} + 1) / 1000000)", f"(({made_us} + 1) % 1000000)")
    return f"""
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows} - (SELECT count(*) FROM todo)),
     u AS (SELECT id, row_number() OVER (ORDER BY email) - 1 AS k, count(*) OVER () AS c FROM user_account)
INSERT INTO todo (id, item, description, created_time, importance, user_id, sa_orm_sentinel, created_at, updated_at, alarm_time, start_time, end_time)
SELECT randomblob(16), 'bulk ' || i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'row ' || i || char(10) || 'ü "q"' END,
       {made}, CASE i % 4 WHEN 0 THEN 'NONE' WHEN 1 THEN 'LOW' WHEN 2 THEN 'MEDIUM' ELSE 'HIGH' END, u.id, NULL,
       {made}, {updated},
       CASE WHEN i % 5 = 0 THEN {text_time(f"({start} - 900)", 0)} END,
       {text_time(start, 0)}, {text_time(f"({start} + 2700)", 0)}
FROM n JOIN u ON u.k = n.i % u.c;

WITH t AS (SELECT id, user_id, row_number() OVER (PARTITION BY user_id ORDER BY name) - 1 AS k,
                  count(*) OVER (PARTITION BY user_id) AS c FROM tag),
     b AS (SELECT id, user_id, created_at, CAST(substr(item, 6) AS INTEGER) AS i FROM todo WHERE item LIKE 'bulk %')
INSERT INTO user_account_todo_tag (id, todo_id, tag_id, sa_orm_sentinel, created_at, updated_at)
SELECT randomblob(16), b.id, t.id, NULL, b.created_at, b.created_at
FROM b JOIN t ON t.user_id = b.user_id AND t.k = b.i % t.c
WHERE b.i % 4 < 2;
"""


class Bench:
    def __init__(self, app, pg_base, scratch):
        self.app, self.pg_base, self.scratch = app, pg_base, scratch
        self.databases = []

    # Databases: a URL for app and a target for psql / sqlite3.

    def new_pg(self, template=None):
        name = f"bench_adopt_{uuid.uuid4().hex[:12]}"
        psql(self.pg_base, f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        self.databases.append(name)
        return name

    def app_url(self, kind, db):
        if kind == "pg":
            parts = urllib.parse.urlsplit(pg_url(self.pg_base, db))
            return urllib.parse.urlunsplit(parts._replace(scheme="postgresql+asyncpg"))
        return "sqlite+aiosqlite:///" + db  # db is an absolute path: four slashes

    def query(self, kind, db, sql):
        if kind == "pg":
            return psql(pg_url(self.pg_base, db), sql)
        done = subprocess.run(["sqlite3", "-bail", db, sql], capture_output=True, text=True)
        if done.returncode != 0:
            raise Failed(f"sqlite3 failed: {sql}\n{done.stderr}")
        return done.stdout.strip()

    def template(self, kind, rows):
        """The Python service's database grown to `rows` todos; returns (template, counts)."""
        if kind == "pg":
            db = self.new_pg()
            subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", pg_url(self.pg_base, db),
                            "-f", os.path.join(LEGACY, "python-service-pg.sql")], check=True, capture_output=True)
            psql(pg_url(self.pg_base, db), grow_sql(rows, "pg"))
            psql(pg_url(self.pg_base, db), "VACUUM ANALYZE")
        else:
            db = os.path.join(self.scratch, "grown.sqlite3")
            shutil.copyfile(os.path.join(LEGACY, "python-service.sqlite3"), db)
            self.query(kind, db, grow_sql(rows, "sqlite"))
        return db, self.counts(kind, db)

    def counts(self, kind, db):
        return self.query(kind, db, "SELECT (SELECT count(*) FROM todo) || ' ' || (SELECT count(*) FROM user_account_todo_tag)")

    def fresh(self, kind, template):
        if kind == "pg":
            return self.new_pg(template)
        path = os.path.join(self.scratch, f"{uuid.uuid4().hex[:12]}.sqlite3")
        shutil.copyfile(template, path)
        return path

    def drop(self, kind, db):
        if kind == "pg":
            psql(self.pg_base, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            self.databases.remove(db)
        else:
            for suffix in ("", "-wal", "-shm", "-journal"):
                try:
                    os.remove(db + suffix)
                except FileNotFoundError:
                    pass

    def verify(self, kind, db, counts, who):
        """After an adoption: `app database check` passes, counts unchanged, importance lower case."""
        run([self.app, "database", "check"], env=app_env(self.app_url(kind, db)), cwd=self.scratch)
        after = self.counts(kind, db)
        if after != counts:
            raise Failed(f"{who}: todo / tag link counts changed from {counts} to {after}")
        upper = self.query(kind, db, f"SELECT count(*) FROM todo WHERE importance NOT IN {IMPORTANCE_LOWER}")
        if upper != "0":
            raise Failed(f"{who}: {upper} todos with an importance that is not lower case")

    def cleanup(self):
        for name in list(self.databases):
            try:
                psql(self.pg_base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                self.databases.remove(name)
            except Failed as err:
                print(f"could not drop {name}: {err}", file=sys.stderr)


def default_binary():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "app")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=100_000, help="todos in the grown database (default 100000)")
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument("--binary", default=default_binary())
    parser.add_argument("--build", action="store_true", help="run `cargo build --release -p app` first")
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    if args.build:
        subprocess.run(["cargo", "build", "--release", "-p", "app"], cwd=ROOT, check=True)
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: run `cargo build --release -p app` first (or pass --build)")
    if args.backend != "postgresql" and shutil.which("sqlite3") is None:
        sys.exit("the sqlite3 CLI is missing (Debian: apt-get install sqlite3)")
    if not os.path.exists("/usr/bin/time"):
        sys.exit("/usr/bin/time is missing (Debian: apt-get install time)")
    if args.backend != "sqlite" and shutil.which("psql") is None:
        sys.exit("psql is missing (Debian: apt-get install postgresql-client)")

    def interrupted(*_):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, interrupted)  # cleans up like Ctrl-C
    scratch = tempfile.mkdtemp(prefix="app-bench-adopt-")
    bench = Bench(args.binary, args.pg, scratch)
    kinds = {"postgresql": ["pg"], "sqlite": ["sqlite"], "both": ["pg", "sqlite"]}[args.backend]
    results, notes = {}, {}

    def sample(name, measured):
        results.setdefault(name, []).append((measured[0], measured[1]))

    try:
        for kind in kinds:
            label = "PostgreSQL" if kind == "pg" else "SQLite"
            template, counts = bench.template(kind, args.rows)
            todos, links = counts.split()
            notes[label] = {"todos": int(todos), "links": int(links)}
            for _ in range(args.runs):
                # app: plan and adopt in one process, as an operator runs it.
                db = bench.fresh(kind, template)
                workdir = tempfile.mkdtemp(dir=scratch)
                sample(f"{label}: app database adopt --yes --no-backup",
                       run([args.binary, "database", "adopt", "--yes", "--no-backup"],
                           env=app_env(bench.app_url(kind, db)), cwd=workdir))
                bench.verify(kind, db, counts, "app")
                bench.drop(kind, db)

                # baseline: the same plan's SQL, printed first (not part of the baseline).
                db = bench.fresh(kind, template)
                plan = os.path.join(workdir, "plan.sql")
                with open(plan, "w") as f:
                    sample(f"{label}: plan only: app database adopt --sql (not in the baseline)",
                           run([args.binary, "database", "adopt", "--sql"], env=app_env(bench.app_url(kind, db)),
                               cwd=workdir, out=f))
                with open(plan) as f:
                    script = f.read()
                notes[label]["statements"] = count_statements(script)
                notes[label]["plan_bytes"] = len(script.encode())
                if kind == "pg":
                    measured = run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-q", "-f", plan, "-d", pg_url(args.pg, db)], cwd=workdir)
                    name = f"{label}: baseline psql -f plan.sql"
                else:
                    with open(plan) as f:
                        measured = run(["sqlite3", db], stdin=f, cwd=workdir)
                    name = f"{label}: baseline sqlite3 < plan.sql"
                sample(name, measured)
                bench.verify(kind, db, counts, "baseline")
                bench.drop(kind, db)
                shutil.rmtree(workdir)
            bench.drop(kind, template)
    except Failed as err:
        sys.exit(str(err))
    except KeyboardInterrupt:
        sys.exit("interrupted; cleaning up")
    finally:
        bench.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)

    def med(name):
        return statistics.median(s for s, _ in results[name])

    print(f"{args.rows} todos, medians of {args.runs} rounds")
    print()
    print("| step | median s | min s | max s | ratio to baseline | peak RSS MiB (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label in notes:
        names = [n for n in results if n.startswith(label + ":")]
        baseline = next(n for n in names if ": baseline " in n)
        for name in names:
            secs = [s for s, _ in results[name]]
            rss = [r for _, r in results[name]]
            ratio = f"{med(name) / med(baseline):.2f}x" if "baseline" not in name else ""
            print(f"| {name} | {statistics.median(secs):.3f} | {min(secs):.3f} | {max(secs):.3f} | {ratio} | {statistics.median(rss):.1f} |")
    print()
    for label, note in notes.items():
        names = [n for n in results if n.startswith(label + ":")]
        app = next(n for n in names if "app database adopt --yes" in n)
        baseline = next(n for n in names if ": baseline " in n)
        print(f"- {label}: {note['todos']} todos, {note['links']} tag links; the plan has {note['statements']} statements "
              f"({note['plan_bytes']} bytes); app {med(app):.3f} s = {med(app) / med(baseline):.2f}x the baseline's "
              f"{med(baseline):.3f} s; peak RSS app {statistics.median(r for _, r in results[app]):.1f} MiB, "
              f"baseline {statistics.median(r for _, r in results[baseline]):.1f} MiB")


if __name__ == "__main__":
    main()
