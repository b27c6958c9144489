#!/usr/bin/env python3
"""Load benchmark of the HTTP API against PostgreSQL, with pgbench running the same SQL.

It starts the release build of `app` on a fresh PostgreSQL database, seeds a user with
thousands of todos and tags, and drives, one after another at a fixed concurrency with wrk:
  - GET  /api/todos?limit=50      (a page of 50 with their tags)
  - GET  /api/todos/{id}
  - POST /api/todos               (with two tags)
reporting requests/s, p50 and p99 latency, errors, and the server's peak memory (VmHWM).

In the same run, pgbench executes the very SQL statements the service sent for one request
of each kind (captured from the server's DATABASE_ECHO log, values inlined; the ids an insert
makes are replaced by fresh ones per transaction) at the same concurrency, and the ratio
service/pgbench is printed: how much of the database's own throughput the service keeps.

Usage: bench/load.py [--duration 15] [--connections 16] [--rounds 3] [--todos 5000] [--pg URL] [--binary PATH]
Needs: `cargo build --release -p app`, wrk (Debian: apt-get install wrk), psql and pgbench.
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
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOAD = os.path.join(ROOT, "bench", "load")
UUID = re.compile(r"'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'")


def sh(cmd, **kw):
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def pg_url(base, name):
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def http(method, url, body=None, token=None, form=False, timeout=30):
    headers = {}
    data = None
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
        return json.loads(text) if text else None


class Server:
    """The release binary on a port, logging SQL to a file."""

    def __init__(self, binary, url, port, log_path, echo, extra_env=None, start_timeout=60, log_mode="w"):
        env = {
            "PATH": os.environ.get("PATH", ""),
            "APP_ENV": "development",
            "DATABASE_URL": url,
            "DATABASE_FIXTURE_PATH": os.path.join(ROOT, "crates", "app", "fixtures"),
            "DATABASE_POOL_SIZE": "16",
            "DATABASE_MAX_POOL_OVERFLOW": "8",
            "DATABASE_ECHO": "true" if echo else "false",
            "LOG_LEVEL": "warning",
            "RUST_LOG": "app::db::sql=info,warn" if echo else "warn",
            "NO_COLOR": "1",
            **(extra_env or {}),
        }
        self.log = open(log_path, log_mode)
        self.process = subprocess.Popen([binary, "run", "--port", str(port)], env=env, stdout=self.log, stderr=self.log)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.time() + start_timeout
        while True:
            try:
                http("GET", self.base + "/health")
                return
            except Exception:
                if self.process.poll() is not None or time.time() > deadline:
                    sys.exit(f"the server did not start; see {log_path}")
                time.sleep(0.2)

    def peak_memory_kib(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def reset_peak_memory(self):
        """Starts VmHWM over from the current RSS (Linux: clear_refs 5), to measure a phase."""
        with open(f"/proc/{self.process.pid}/clear_refs", "w") as refs:
            refs.write("5")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def seed(url, user_id, todos):
    """Todos (half with tags) and 50 tags for the user, straight in SQL for speed."""
    sql = f"""
    INSERT INTO tag (id, name, color, user_id, created_at, updated_at)
      SELECT gen_random_uuid(), 'tag ' || g, 'blue', '{user_id}', now(), now() FROM generate_series(1, 50) g;
    INSERT INTO todo (id, item, description, created_time, alarm_time, start_time, end_time, importance, user_id, created_at, updated_at)
      SELECT gen_random_uuid(), 'todo ' || g, 'seeded', now(), NULL, NULL, NULL,
             (ARRAY['none','low','medium','high'])[1 + g % 4], '{user_id}',
             now() - (g || ' seconds')::interval, now() - (g || ' seconds')::interval
      FROM generate_series(1, {todos}) g;
    INSERT INTO user_account_todo_tag (id, todo_id, tag_id, created_at, updated_at)
      SELECT gen_random_uuid(), t.id, tg.id, now(), now()
      FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM todo) t
      JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM tag) tg ON tg.n IN (1 + t.n % 50, 1 + (t.n + 7) % 50);
    ANALYZE;
    """
    sh(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql])


def captured_sql(log_path, start):
    """The SQL lines the server logged after byte offset `start`."""
    with open(log_path) as log:
        log.seek(start)
        lines = log.read().splitlines()
    statements = []
    for line in lines:
        marker = "app::db::sql: "
        if marker in line:
            sql = line.split(marker, 1)[1]
            sql = re.sub(r"\s+(elapsed_ms|failed)=\S+", "", sql).strip()
            statements.append(sql)
    return statements


def pgbench_file(path, statements, fresh_ids=(), transaction=False):
    """Writes a pgbench script; ids in `fresh_ids` become a new UUID per transaction."""
    lines = []
    fresh = {old: f"fresh{i}" for i, old in enumerate(fresh_ids)}
    if fresh:
        # One round trip for all the new ids.
        columns = ", ".join(f"gen_random_uuid() AS {name}" for name in fresh.values())
        lines.append(f"SELECT {columns} \\gset")
    if transaction:
        lines.append("BEGIN;")
    for sql in statements:
        sql = UUID.sub(lambda m: f"':{fresh[m.group(1)]}'" if m.group(1) in fresh else m.group(0), sql)
        lines.append(sql.rstrip(";") + ";")
    if transaction:
        lines.append("COMMIT;")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def wrk(url, script, args, token):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as combined:
        for part in (script, "report.lua"):
            with open(os.path.join(LOAD, part)) as f:
                combined.write(f.read() + "\n")
    out = sh(["wrk", "-t", "2", "-c", str(args.connections), "-d", f"{args.duration}s", "--latency", "-s", combined.name, url],
             env={**os.environ, "TOKEN": token})
    os.unlink(combined.name)
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def pgbench(url, script, args):
    out = sh(["pgbench", "-n", "-c", str(args.connections), "-j", "2", "-T", str(args.duration), "-f", script, url])
    tps = re.search(r"tps = ([0-9.]+)", out)
    return float(tps.group(1)) if tps else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--todos", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="measure each request this many times; medians are reported")
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "app"))
    args = parser.parse_args()
    for tool in ("wrk", "psql", "pgbench"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found; on Debian: apt-get install {'wrk' if tool == 'wrk' else 'postgresql-client postgresql-contrib'}")
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: run `cargo build --release -p app` first")

    name = f"app_load_{secrets.token_hex(6)}"
    sh(["psql", "-q", args.pg, "-c", f"CREATE DATABASE {name}"])
    url = pg_url(args.pg, name)
    scratch = tempfile.mkdtemp(prefix="app-load-")
    log_path = os.path.join(scratch, "server.log")
    server = None
    try:
        # 1. A server that logs its SQL, to seed and to capture one request of each kind.
        server = Server(args.binary, url, args.port, log_path, echo=True)
        base = server.base
        http("POST", base + "/api/access/signup", {"email": "bench@example.com", "name": "Bench", "password": "bench-password"})
        token = http("POST", base + "/api/access/login", {"username": "bench@example.com", "password": "bench-password"}, form=True)["access_token"]
        me = http("GET", base + "/api/me", token=token)
        seed(url, me["id"], args.todos)
        http("POST", base + "/api/todos", {"item": "warm-up", "tags": ["bench", "load"]}, token=token)

        captured = {}
        mark = os.path.getsize(log_path)
        page = http("GET", base + "/api/todos?limit=50", token=token)
        time.sleep(0.3)
        captured["list"] = captured_sql(log_path, mark)
        todo_id = page["items"][0]["id"]
        mark = os.path.getsize(log_path)
        http("GET", base + f"/api/todos/{todo_id}", token=token)
        time.sleep(0.3)
        captured["get"] = captured_sql(log_path, mark)
        mark = os.path.getsize(log_path)
        made = http("POST", base + "/api/todos", {"item": "captured", "tags": ["bench", "load"]}, token=token)
        time.sleep(0.3)
        captured["post"] = captured_sql(log_path, mark)
        server.stop()
        server = None

        # The statements a request sent, the token's user lookup included: the service runs it too.
        files = {}
        for kind, statements in captured.items():
            path = os.path.join(scratch, f"{kind}.sql")
            fresh = []
            if kind == "post":
                known = {made["id"]} | {t["id"] for t in made["tags"]}
                fresh = [made["id"]] + sorted({u for s in statements if s.upper().startswith("INSERT")
                                               for u in UUID.findall(s) if u not in known and u != me["id"]})
            pgbench_file(path, statements, fresh, transaction=(kind == "post"))
            files[kind] = path

        # 2. The measured server, without SQL logging.
        server = Server(args.binary, url, args.port, log_path + ".2", echo=False)
        rows = []
        for kind, path, script in (
            ("list", "/api/todos?limit=50", "get.lua"),
            ("get", f"/api/todos/{todo_id}", "get.lua"),
            ("post", "/api/todos", "post.lua"),
        ):
            # Service and pgbench alternate, so drift on a shared machine hits both alike.
            results, rates = [], []
            for _ in range(args.rounds):
                results.append(wrk(server.base + path, script, args, token))
                rates.append(pgbench(url, files[kind], args))
            result = {key: statistics.median(r[key] for r in results) for key in results[0]}
            result["errors"] = sum(r["errors"] for r in results)
            ratios = [r["rps"] / t for r, t in zip(results, rates) if t]
            rows.append((kind, path, result, statistics.median(rates), len(captured[kind]), statistics.median(ratios)))
        peak = server.peak_memory_kib()
    finally:
        if server:
            server.stop()
        subprocess.run(["psql", "-q", args.pg, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)

    print(f"{args.connections} connections, {args.duration} s per measurement, medians of {args.rounds} rounds, "
          f"{args.todos} seeded todos; server peak memory (VmHWM) {peak / 1024:.1f} MiB\n")
    print("| request | statements | service req/s | p50 ms | p99 ms | errors | pgbench tps (same SQL) | service / pgbench |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, path, r, tps, n, ratio in rows:
        print(f"| {kind} `{path.split('?')[0]}` | {n} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {int(r['errors'])} | {tps:.0f} | {ratio:.2f} |")
    for kind, path in files.items():
        print(f"\n<details><summary>{kind}: SQL run by pgbench</summary>\n\n```sql\n{open(path).read()}```\n</details>")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
