#!/usr/bin/env python3
"""What a PostgreSQL restart costs the clients of a running `app`.

It starts the release build of `app` on a fresh database of a PostgreSQL cluster of its own (by
default the restart-test cluster that scripts/test.sh keeps on 127.0.0.1:15434, started here
when it does not answer; never the shared server), signs a user in, and then for each
DATABASE_PRE_POOL_PING setting (false, true) and round:

  - under load: writes (POST /api/todos) and reads (GET /api/todos) at a steady rate each,
    open loop (one request every 1/rate s, whatever the answers), for --duration seconds; at
    --restart-at the cluster is restarted (`scripts/infra.sh restart`: pg_ctl restart -m fast
    -w, every session is ended);
  - idle: when the load is over and the pool has settled, another restart, then --idle
    requests one after another (reads and writes alternating).

It counts the answers by status, checks that every acknowledged write (201) is in the
database and that no item was written twice (a retried write must not have been done
already). It reports how long the restart took (pg_ctl), the outage as writers saw it (the
longest time without a successful write finishing, normally 1/rate), when writes succeeded
again counted from the start of the restart, and the slowest write around the restart.

Usage: bench/restart.py [--rounds 3] [--rate 40] [--duration 10] [--restart-at 4] [--idle 10]
                        [--pre-ping both|true|false] [--binary PATH] [--build] [--keep-logs]
                        [--pg postgres://app:app@127.0.0.1:15434/app] [--infra-dir /var/tmp/app-test-restart]
Needs: a release build (`cargo build --release -p app`, or --build), psql, and the PostgreSQL
server binaries for scripts/infra.sh. Prints Markdown tables. Drops its databases at the end.
"""

import argparse
import concurrent.futures
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFRA = os.path.join(ROOT, "scripts", "infra.sh")


def sh(cmd, **kw):
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def pg_url(base, name):
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


class Cluster:
    """The cluster this benchmark may restart, through scripts/infra.sh."""

    def __init__(self, admin_url, infra_dir):
        self.admin_url = admin_url
        port = urllib.parse.urlsplit(admin_url).port or 5432
        self.env = {**os.environ, "INFRA_BACKEND": "local", "INFRA_PORT": str(port), "INFRA_DIR": infra_dir}

    def start(self):
        sh([INFRA, "start"], env=self.env)

    def restart(self):
        """Restarts it; returns (started, finished) as time.monotonic() values."""
        started = time.monotonic()
        sh([INFRA, "restart"], env=self.env)
        return started, time.monotonic()


def request(method, url, body=None, token=None, form=False, timeout=60):
    """(status, headers (looked up without regard to case), parsed body); a connection failure is
    status 0."""
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
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            text = response.read().decode()
            return response.status, response.headers, (json.loads(text) if text else None)
    except urllib.error.HTTPError as err:
        text = err.read().decode()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return err.code, err.headers, parsed
    except (urllib.error.URLError, OSError) as err:
        return 0, {}, str(err)


class Server:
    """The release binary on a port."""

    def __init__(self, binary, url, port, log_path, pre_ping):
        env = {
            "PATH": os.environ.get("PATH", ""),
            "APP_ENV": "development",
            "DATABASE_URL": url,
            "DATABASE_FIXTURE_PATH": os.path.join(ROOT, "crates", "app", "fixtures"),
            "DATABASE_POOL_SIZE": "5",
            "DATABASE_MAX_POOL_OVERFLOW": "10",
            "DATABASE_POOL_TIMEOUT": "10",
            "DATABASE_PRE_POOL_PING": pre_ping,
            "LOG_LEVEL": "info",
            "NO_COLOR": "1",
        }
        self.log = open(log_path, "w")
        self.process = subprocess.Popen([binary, "run", "--port", str(port)], env=env, stdout=self.log, stderr=self.log)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while request("GET", self.base + "/health", timeout=5)[0] != 200:
            if self.process.poll() is not None or time.time() > deadline:
                sys.exit(f"the server did not start; see {log_path}")
            time.sleep(0.2)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


class Run:
    """Requests of one measurement: (kind, sent, done, status, retry_after, id, item)."""

    def __init__(self, server, token, tag):
        self.server = server
        self.token = token
        self.tag = tag
        self.results = []
        self.lock = threading.Lock()
        self.count = 0

    def one(self, kind):
        with self.lock:
            self.count += 1
            n = self.count
        item = f"{self.tag}-{n}" if kind == "write" else None
        sent = time.monotonic()
        if kind == "write":
            status, headers, body = request("POST", self.server.base + "/api/todos", {"item": item}, self.token)
        else:
            status, headers, body = request("GET", self.server.base + "/api/todos?limit=5", token=self.token)
        done = time.monotonic()
        made = body.get("id") if status == 201 and isinstance(body, dict) else None
        with self.lock:
            self.results.append((kind, sent, done, status, headers.get("Retry-After"), made, item))


def steady(run, rate, read_rate, duration, restart_at, cluster):
    """Open-loop load; restarts the cluster at `restart_at`; returns (restart started, finished)."""
    plan = []
    for kind, r in (("write", rate), ("read", read_rate)):
        if r > 0:
            plan += [(i / r, kind) for i in range(int(duration * r))]
    plan.sort()
    restart = {}

    def restarter():
        time.sleep(restart_at)
        restart["times"] = cluster.restart()

    thread = threading.Thread(target=restarter)
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        start = time.monotonic()
        thread.start()
        for at, kind in plan:
            delay = start + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(run.one, kind)
        thread.join()
    return restart["times"]


def idle(run, n, cluster):
    """Restart while nothing runs, then `n` requests one after another."""
    time.sleep(1.5)  # the pool settles: overflow closed, kept connections idle
    times = cluster.restart()
    for i in range(n):
        run.one("write" if i % 2 else "read")
    return times


def summarize(results, restart):
    started, finished = restart
    by_status = {}
    for kind, sent, done, status, retry_after, made, item in results:
        key = "conn-error" if status == 0 else str(status)
        by_status[key] = by_status.get(key, 0) + 1
    errors = sum(n for k, n in by_status.items() if not k.startswith("2"))
    missing_retry_after = sum(1 for r in results if r[3] == 503 and not r[4])
    # The outage as writers saw it: the longest time without a successful write finishing,
    # from a second before the restart until the end.
    done_ok = sorted(done for kind, sent, done, status, *_ in results if kind == "write" and status == 201 and done >= started - 1)
    gap, back = float("nan"), float("nan")
    if len(done_ok) >= 2:
        a, b = max(zip(done_ok, done_ok[1:]), key=lambda pair: pair[1] - pair[0])
        gap, back = b - a, b - started
    around = [done - sent for kind, sent, done, status, *_ in results if kind == "write" and sent <= finished + 1 and done >= started - 1]
    return {
        "requests": len(results),
        "statuses": by_status,
        "errors": errors,
        "no_retry_after": missing_retry_after,
        "gap_s": gap,
        "back_s": back,
        "slowest_write_s": max(around) if around else float("nan"),
        "restart_s": finished - started,
    }


def verify(url, results):
    """(acknowledged writes, missing ones, items written twice)."""
    rows = sh(["psql", "-X", "-q", "-At", "-F", "\t", url, "-c", "SELECT id, item FROM todo"]).splitlines()
    ids = {}
    items = {}
    for line in rows:
        if not line:
            continue
        row_id, item = line.split("\t", 1)
        ids[row_id] = item
        items[item] = items.get(item, 0) + 1
    acked = [(made, item) for kind, sent, done, status, ra, made, item in results if made]
    missing = [a for a in acked if ids.get(a[0]) != a[1]]
    twice = sum(1 for n in items.values() if n > 1)
    return len(acked), len(missing), twice


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=40, help="writes per second")
    parser.add_argument("--read-rate", type=float, default=40, help="reads per second")
    parser.add_argument("--duration", type=float, default=10, help="seconds of load per round")
    parser.add_argument("--restart-at", type=float, default=4, help="seconds into the load")
    parser.add_argument("--idle", type=int, default=10, help="requests one by one after an idle restart")
    parser.add_argument("--pre-ping", choices=("both", "true", "false"), default="both")
    parser.add_argument("--port", type=int, default=18766)
    parser.add_argument("--pg", default=os.environ.get("RESTART_TEST_DATABASE_URL", "postgres://app:app@127.0.0.1:15434/app"),
                        help="admin URL of the cluster to restart (never a shared server)")
    parser.add_argument("--infra-dir", default=os.environ.get("RESTART_TEST_INFRA_DIR", "/var/tmp/app-test-restart"))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    parser.add_argument("--binary", default=os.path.join(target, "release", "app"))
    parser.add_argument("--build", action="store_true", help="cargo build --release -p app first")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (their folder is printed)")
    args = parser.parse_args()
    if args.build:
        subprocess.run(["cargo", "build", "--release", "-p", "app"], cwd=ROOT, check=True)
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: run `cargo build --release -p app` first (or pass --build)")

    cluster = Cluster(args.pg, args.infra_dir)
    cluster.start()
    settings = ["false", "true"] if args.pre_ping == "both" else [args.pre_ping]
    scratch = tempfile.mkdtemp(prefix="app-restart-")
    rows = []
    made = []
    try:
        for pre_ping in settings:
            for round_ in range(args.rounds):
                name = f"app_restart_bench_{secrets.token_hex(6)}"
                sh(["psql", "-X", "-q", args.pg, "-c", f"CREATE DATABASE {name}"])
                made.append(name)
                url = pg_url(args.pg, name)
                log_path = os.path.join(scratch, f"server-{pre_ping}-{round_}.log")
                server = Server(args.binary, url, args.port, log_path, pre_ping)
                try:
                    request("POST", server.base + "/api/access/signup", {"email": "bench@example.com", "password": "bench-password"})
                    _, _, login = request("POST", server.base + "/api/access/login",
                                          {"username": "bench@example.com", "password": "bench-password"}, form=True)
                    token = login["access_token"]
                    load = Run(server, token, f"load-{round_}")
                    load_restart = steady(load, args.rate, args.read_rate, args.duration, args.restart_at, cluster)
                    quiet = Run(server, token, f"idle-{round_}")
                    quiet_restart = idle(quiet, args.idle, cluster)
                finally:
                    server.stop()
                under_load = summarize(load.results, load_restart)
                after_idle = summarize(quiet.results, quiet_restart)
                acked, missing, twice = verify(url, load.results + quiet.results)
                rows.append((pre_ping, round_ + 1, under_load, after_idle, acked, missing, twice))
                print(f"pre-ping {pre_ping} round {round_ + 1}: load {under_load['statuses']}, idle {after_idle['statuses']}, "
                      f"writes back after {under_load['back_s']:.2f}s, acked {acked}, missing {missing}, twice {twice}",
                      file=sys.stderr)
    finally:
        for name in made:
            subprocess.run(["psql", "-X", "-q", args.pg, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)
        if args.keep_logs:
            print(f"server logs: {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    print(f"{args.rate:g} writes/s + {args.read_rate:g} reads/s for {args.duration:g} s, restart at {args.restart_at:g} s; "
          f"then an idle restart and {args.idle} requests one by one. Pool 5 + 10 overflow, POOL_TIMEOUT 10.\n")
    print("| pre-ping | round | requests under load | errors under load (by status) | 503 without Retry-After | restart s | "
          "longest time without a write s | writes back after s | slowest write s | errors of the next "
          f"{args.idle} idle | acked writes | missing | written twice |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for pre_ping, round_, load, quiet, acked, missing, twice in rows:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(load["statuses"].items()) if not k.startswith("2")) or "0"
        idle_errors = ", ".join(f"{k}: {v}" for k, v in sorted(quiet["statuses"].items()) if not k.startswith("2")) or "0"
        print(f"| {pre_ping} | {round_} | {load['requests']} | {errors} | {load['no_retry_after'] + quiet['no_retry_after']} | "
              f"{load['restart_s']:.2f} | {load['gap_s']:.2f} | {load['back_s']:.2f} | {load['slowest_write_s']:.2f} | "
              f"{idle_errors} | {acked} | {missing} | {twice} |")
    print("\nMedians:\n")
    print("| pre-ping | errors under load | longest time without a write s | writes back after s | slowest write s | errors of the next idle |")
    print("|---|---:|---:|---:|---:|---:|")
    for pre_ping in settings:
        mine = [r for r in rows if r[0] == pre_ping]
        print(f"| {pre_ping} | {statistics.median(r[2]['errors'] for r in mine):g} | "
              f"{statistics.median(r[2]['gap_s'] for r in mine):.2f} | "
              f"{statistics.median(r[2]['back_s'] for r in mine):.2f} | "
              f"{statistics.median(r[2]['slowest_write_s'] for r in mine):.2f} | "
              f"{statistics.median(r[3]['errors'] for r in mine):g} |")


if __name__ == "__main__":
    main()
