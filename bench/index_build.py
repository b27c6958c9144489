#!/usr/bin/env python3
"""How long writes wait while an index is built, with and without CONCURRENTLY (PostgreSQL).

A table of --rows rows; one writer session inserts a row and updates another every
--interval-ms, timing each write; meanwhile another session builds an index on the table,
first with a plain CREATE INDEX (what a migration runs in its transaction), then with
CREATE INDEX CONCURRENTLY (what a non-atomic migration runs). Prints, per mode, the build
time and the median and longest write wait during the build. Needs only python3 and psql.

    python3 bench/index_build.py [--rows 1000000] [--url postgres://postgres@127.0.0.1:5432/postgres]
"""

import argparse
import os
import statistics
import subprocess
import threading
import time
import urllib.parse


def psql(url, sql):
    out = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", url, "-c", sql],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"psql failed: {sql[:80]}: {out.stderr.strip()}")
    return out.stdout.strip()


def with_database(url, name):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


class Writer(threading.Thread):
    """One psql session writing in a loop; records (start, seconds) of every write."""

    def __init__(self, url, rows, interval):
        super().__init__(daemon=True)
        self.rows = rows
        self.interval = interval
        self.samples = []
        self.stop = threading.Event()
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def run(self):
        next_id = self.rows + 1
        while not self.stop.is_set():
            next_id += 1
            started = time.monotonic()
            # The SELECT's output tells when both writes are done.
            self.proc.stdin.write(
                f"INSERT INTO item (id, code, note) VALUES ({next_id}, md5('{next_id}'), 'new');\n"
                f"UPDATE item SET note = 'seen' WHERE id = {next_id % self.rows + 1};\n"
                f"SELECT 'done';\n"
            )
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            if line.strip() != "done":
                print(f"writer: unexpected output {line!r}", flush=True)
                os._exit(1)
            self.samples.append((started, time.monotonic() - started))
            time.sleep(self.interval)
        self.proc.stdin.close()
        self.proc.wait()


def measure(url, rows, interval, concurrently):
    psql(url, "DROP INDEX IF EXISTS ix_item_code")
    # Rows the writer added in an earlier run go, so that every run starts alike.
    psql(url, f"DELETE FROM item WHERE id > {rows}")
    psql(url, "VACUUM ANALYZE item")
    writer = Writer(url, rows, interval)
    writer.start()
    time.sleep(0.5)
    keyword = "CONCURRENTLY " if concurrently else ""
    started = time.monotonic()
    psql(url, f"CREATE INDEX {keyword}ix_item_code ON item (code, note)")
    ended = time.monotonic()
    time.sleep(0.3)
    writer.stop.set()
    writer.join()
    during = [wait for (start, wait) in writer.samples if start < ended and start + wait > started]
    return ended - started, during


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument(
        "--url",
        default=os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args()
    name = f"bench_index_build_{os.getpid()}"
    psql(args.url, f"CREATE DATABASE {name}")
    url = with_database(args.url, name)
    try:
        psql(url, "CREATE TABLE item (id bigint PRIMARY KEY, code text NOT NULL, note text)")
        psql(
            url,
            "INSERT INTO item (id, code, note) SELECT i, repeat(md5(i::text), 4), NULL "
            f"FROM generate_series(1, {args.rows}) AS i",
        )
        print(f"{args.rows} rows; a write (INSERT + UPDATE) every {args.interval_ms} ms\n")
        print("| build | runs | build s (median) | writes during build | write wait median ms | write wait max ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for concurrently in (False, True):
            builds, waits = [], []
            for _ in range(args.runs):
                build, during = measure(url, args.rows, args.interval_ms / 1000, concurrently)
                builds.append(build)
                waits.extend(during)
            label = "CREATE INDEX CONCURRENTLY" if concurrently else "CREATE INDEX"
            print(
                f"| {label} | {args.runs} | {statistics.median(builds):.2f} | {len(waits)} | "
                f"{statistics.median(waits) * 1000:.1f} | {max(waits) * 1000:.1f} |"
            )
    finally:
        psql(args.url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
