#!/usr/bin/env bash
# Runs every test of the workspace. Extra arguments go to `cargo nextest run` (or to `cargo test`
# when cargo-nextest is not installed), e.g. ./scripts/test.sh -p app.
#
# The database tests use TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
# When nothing answers there and it is the local default server, the system cluster is started.
# Two project-local clusters are started too (scripts/infra.sh, outside the clone): one that
# checks passwords on 15433 (TEST_AUTH_DATABASE_URL) and one the restart tests restart on 15434
# (RESTART_TEST_DATABASE_URL, RESTART_TEST_INFRA_DIR).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
[[ -t 1 ]] || export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The PgBouncer tests find it here: Debian installs it in /usr/sbin, not on every user's PATH.
# On a fresh machine it is installed first (Debian's package; as root, or through sudo -n).
if [[ -z "${PGBOUNCER:-}" ]] && ! command -v pgbouncer >/dev/null 2>&1 &&
    [[ ! -x /usr/sbin/pgbouncer ]] && command -v apt-get >/dev/null 2>&1; then
    apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
    [[ "$(id -u)" -eq 0 ]] || apt=(sudo -n "${apt[@]}")
    printf 'test.sh: installing PgBouncer (Debian package pgbouncer) for the migration tests\n'
    { "${apt[@]}" update -q && "${apt[@]}" install -y -q pgbouncer; } >/dev/null ||
        printf 'test.sh: could not install pgbouncer; the PgBouncer test will say how\n' >&2
fi
if [[ -z "${PGBOUNCER:-}" ]]; then
    if command -v pgbouncer >/dev/null 2>&1; then
        PGBOUNCER="$(command -v pgbouncer)"
        export PGBOUNCER
    elif [[ -x /usr/sbin/pgbouncer ]]; then
        export PGBOUNCER=/usr/sbin/pgbouncer
    fi
fi

say() { printf 'test.sh: %s\n' "$*"; }

# --- where the database is ---------------------------------------------------------------------

# scheme://[user[:password]@]host[:port][/db][?params]
url_rest="${TEST_DATABASE_URL#*://}"
url_rest="${url_rest%%/*}"
url_rest="${url_rest%%\?*}"
hostport="${url_rest##*@}"
if [[ "$hostport" == \[* ]]; then
    # [IPv6]:port
    DB_HOST="${hostport%%]*}"
    DB_HOST="${DB_HOST#[}"
    DB_PORT="${hostport#*]}"
    DB_PORT="${DB_PORT#:}"
elif [[ "$hostport" == *:* ]]; then
    DB_HOST="${hostport%%:*}"
    DB_PORT="${hostport##*:}"
else
    DB_HOST="$hostport"
    DB_PORT=""
fi
DB_HOST="${DB_HOST:-localhost}"
DB_PORT="${DB_PORT:-5432}"
# The URL as shown in messages, without its password.
SHOWN_URL="$(printf '%s' "$TEST_DATABASE_URL" | sed -E 's#^([^:/]+://[^:@/]*):[^@/]*@#\1:***@#')"

PG_ISREADY=""
if command -v pg_isready >/dev/null 2>&1; then
    PG_ISREADY="$(command -v pg_isready)"
else
    PG_ISREADY="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/pg_isready' 2>/dev/null | sort -V | tail -n 1 || true)"
fi

db_answers() {
    if [[ -n "$PG_ISREADY" ]]; then
        "$PG_ISREADY" -q -h "$DB_HOST" -p "$DB_PORT" -t 3
    else
        # No PostgreSQL client: settle for an open TCP port.
        # shellcheck disable=SC2016 # $1 and $2 expand in the inner bash
        timeout 3 bash -c ': >"/dev/tcp/$1/$2"' _ "$DB_HOST" "$DB_PORT" 2>/dev/null
    fi
}

system_cluster_version() {
    if [[ -d /etc/postgresql ]]; then
        # shellcheck disable=SC2012 # version directory names, no odd characters
        ls /etc/postgresql | sort -V | tail -n 1
    fi
}

start_system_cluster() {
    local version
    version="$(system_cluster_version)"
    if [[ -z "$version" ]] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
        return 1
    fi
    local cmd=(pg_ctlcluster --skip-systemctl-redirect "$version" main start)
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || return 1
        cmd=(sudo -n "${cmd[@]}")
    fi
    say "PostgreSQL does not answer at $DB_HOST:$DB_PORT; running: ${cmd[*]}"
    "${cmd[@]}" || return 1
    local waited=0
    until db_answers; do
        ((waited < 30)) || return 1
        sleep 1
        waited=$((waited + 1))
    done
}

if ! db_answers; then
    started=1
    case "$DB_HOST" in
        127.0.0.1 | localhost | ::1)
            if [[ "$DB_PORT" == 5432 ]] && start_system_cluster; then
                started=0
            fi
            ;;
    esac
    if ((started != 0)); then
        version="$(system_cluster_version)"
        version="${version:-\$(ls /etc/postgresql | sort -V | tail -1)}"
        {
            say "error: PostgreSQL does not answer at $DB_HOST:$DB_PORT (TEST_DATABASE_URL=$SHOWN_URL). Start one, then rerun:"
            say "  system server (as root):  pg_ctlcluster --skip-systemctl-redirect $version main start"
            say "  or project-local server:  make start-infra && TEST_DATABASE_URL=postgres://app:app@127.0.0.1:15432/app ./scripts/test.sh"
        } >&2
        exit 1
    fi
    say "PostgreSQL answers at $DB_HOST:$DB_PORT"
fi

# --- a server that checks passwords -------------------------------------------------------------
# The system server trusts every local connection, so the wrong-password test needs the
# project-local cluster (scram-sha-256), on port 15433 so that a developer's `make start-infra`
# (15432) is left alone. It lives outside the clone.
if [[ -z "${TEST_AUTH_DATABASE_URL:-}" ]]; then
    if ! { [[ -n "$PG_ISREADY" ]] && "$PG_ISREADY" -q -h 127.0.0.1 -p 15433 -t 2; }; then
        say "starting the password-checking PostgreSQL on 127.0.0.1:15433 (scripts/infra.sh)"
        INFRA_BACKEND=local INFRA_PORT=15433 INFRA_DIR="${TEST_INFRA_DIR:-/var/tmp/app-test-infra}" "$ROOT/scripts/infra.sh" start ||
            say "warning: could not start it; the wrong-password test will fail and say why"
    fi
    export TEST_AUTH_DATABASE_URL="postgres://app:app@127.0.0.1:15433/app"
fi

# --- a server the tests may restart ------------------------------------------------------------
# The restart test (crates/app/tests/it/restart.rs) restarts PostgreSQL under a running app, so it
# gets a project-local cluster of its own on port 15434: never the shared server, never the
# password-checking one above. It restarts it with INFRA_DIR=$RESTART_TEST_INFRA_DIR
# scripts/infra.sh restart.
if [[ -z "${RESTART_TEST_DATABASE_URL:-}" ]]; then
    export RESTART_TEST_INFRA_DIR="${RESTART_TEST_INFRA_DIR:-/var/tmp/app-test-restart}"
    if ! { [[ -n "$PG_ISREADY" ]] && "$PG_ISREADY" -q -h 127.0.0.1 -p 15434 -t 2; }; then
        say "starting the restartable PostgreSQL on 127.0.0.1:15434 (scripts/infra.sh)"
        INFRA_BACKEND=local INFRA_PORT=15434 INFRA_DIR="$RESTART_TEST_INFRA_DIR" "$ROOT/scripts/infra.sh" start ||
            say "warning: could not start it; the restart tests will fail and say why"
    fi
    export RESTART_TEST_DATABASE_URL="postgres://app:app@127.0.0.1:15434/app"
fi

# --- the tests ---------------------------------------------------------------------------------

if cargo nextest --version >/dev/null 2>&1; then
    status=0
    # nextest does not run doctests; run them first (unless a selection was passed) so the
    # nextest summary is the last line.
    if [[ $# -eq 0 ]]; then
        cargo test --workspace --doc --no-fail-fast || status=$?
    fi
    cargo nextest run --workspace --no-fail-fast "$@" || status=$?
    exit "$status"
else
    say "cargo-nextest not installed (cargo install cargo-nextest --locked); using cargo test"
    exec cargo test --workspace --no-fail-fast "$@"
fi
