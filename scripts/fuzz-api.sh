#!/usr/bin/env bash
# Fuzzes the HTTP API with schemathesis against its own OpenAPI document, on SQLite and on
# PostgreSQL: every operation, generated valid and invalid input, all checks (no 5xx, status
# codes, content types, headers and bodies as documented), signed in as a superuser.
#
# Usage: scripts/fuzz-api.sh [--cases N] [--backend sqlite|postgresql|both] [--seed S]
#   --cases N   generated cases per operation (default 40: over 500 per database)
#
# schemathesis is installed into a virtual environment of its own (FUZZ_VENV, default
# /var/tmp/app-fuzz-venv) on first use. PostgreSQL comes from TEST_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres); a database is made for the run and dropped.
# Exits non-zero when any check fails; the report is under $FUZZ_REPORT_DIR (default
# target/fuzz-api).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CASES=40
BACKEND=both
SEED=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cases) CASES="$2"; shift 2 ;;
        --backend) BACKEND="$2"; shift 2 ;;
        --seed) SEED="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "fuzz-api.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$BACKEND" in sqlite|postgresql|both) ;; *) echo "fuzz-api.sh: --backend sqlite, postgresql or both" >&2; exit 2 ;; esac

say() { printf 'fuzz-api.sh: %s\n' "$*"; }

VENV="${FUZZ_VENV:-/var/tmp/app-fuzz-venv}"
if [[ ! -x "$VENV/bin/schemathesis" ]]; then
    say "installing schemathesis into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
say "building app"
cargo build --quiet -p app
APP="$CARGO_TARGET_DIR/debug/app"
REPORT_DIR="${FUZZ_REPORT_DIR:-$ROOT/target/fuzz-api}"
mkdir -p "$REPORT_DIR"
ADMIN_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

WORK=""
SERVER=""
PG_DB=""
cleanup() {
    if [[ -n "$SERVER" ]]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
        SERVER=""
    fi
    if [[ -n "$PG_DB" ]]; then
        psql -X -q -d "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
        PG_DB=""
    fi
    if [[ -n "$WORK" ]]; then
        rm -rf "$WORK"
        WORK=""
    fi
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

fuzz() {
    local backend="$1"
    WORK="$(mktemp -d)"
    local url
    if [[ "$backend" == sqlite ]]; then
        url="sqlite+aiosqlite:///$WORK/fuzz.sqlite3"
    else
        PG_DB="app_fuzz_$$"
        psql -X -q -v ON_ERROR_STOP=1 -d "$ADMIN_URL" -c "CREATE DATABASE $PG_DB" >/dev/null
        url="$(python3 -c 'import sys, urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$ADMIN_URL" "$PG_DB")"
    fi
    local port
    port="$(free_port)"
    export APP_ENV=testing DATABASE_URL="$url" SECRET_KEY="fuzz-$(date +%s%N)-secret-key-long-enough-xx" \
        LOG_LEVEL=warning DATABASE_FIXTURE_PATH="$ROOT/crates/app/fixtures"
    (cd "$WORK" && "$APP" database upgrade >/dev/null && "$APP" database load-fixtures >/dev/null &&
        "$APP" user create --email fuzz@example.com --name Fuzz --password fuzz-password-1 --superuser >/dev/null)
    (cd "$WORK" && exec "$APP" run --port "$port" >"$WORK/server.log" 2>&1) &
    SERVER=$!
    local base="http://127.0.0.1:$port"
    # Waits for /health, then signs in (Python's standard library: no curl needed).
    local token
    token="$(python3 - "$base" <<'PY'
import json, sys, time, urllib.parse, urllib.request
base = sys.argv[1]
for _ in range(300):
    try:
        urllib.request.urlopen(base + "/health", timeout=1)
        break
    except Exception:
        time.sleep(0.1)
form = urllib.parse.urlencode({"username": "fuzz@example.com", "password": "fuzz-password-1"}).encode()
with urllib.request.urlopen(base + "/api/access/login", data=form, timeout=10) as answer:
    print(json.load(answer)["access_token"])
PY
)"
    say "$backend: schemathesis, $CASES cases per operation, all checks"
    local seed_args=()
    [[ -n "$SEED" ]] && seed_args=(--seed "$SEED")
    local status=0
    # Logout would revoke the token the rest of the run signs in with.
    "$VENV/bin/schemathesis" --config-file "$ROOT/scripts/fuzz-api.toml" run "$base/schema/openapi.json" \
        --checks all \
        --header "Authorization: Bearer $token" \
        --max-examples "$CASES" \
        --exclude-path /api/access/logout \
        --generation-database none \
        --workers 1 \
        --no-color --output-sanitize "${FUZZ_SANITIZE:-true}" \
        --report junit --report-junit-path "$REPORT_DIR/$backend.xml" \
        "${seed_args[@]}" || status=$?
    if grep -q 'panicked' "$WORK/server.log"; then
        say "$backend: the server panicked:"
        grep -A5 'panicked' "$WORK/server.log" | head -20
        status=1
    fi
    cleanup
    return "$status"
}

failed=0
if [[ "$BACKEND" == sqlite || "$BACKEND" == both ]]; then
    fuzz sqlite || failed=1
fi
if [[ "$BACKEND" == postgresql || "$BACKEND" == both ]]; then
    fuzz postgresql || failed=1
fi
if [[ "$failed" -ne 0 ]]; then
    say "failures found (reports in $REPORT_DIR)"
    exit 1
fi
say "no failures"
