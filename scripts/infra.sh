#!/usr/bin/env bash
# Local infrastructure for development and tests: one PostgreSQL server on 127.0.0.1:15432
# (user app, password app, database app).
#
# With a Docker engine that answers, it runs deploy/docker-compose.infra.yml. Without one, it
# runs a project-local cluster with the installed PostgreSQL binaries, kept in .infra/postgres/.
# INFRA_BACKEND=docker or INFRA_BACKEND=local forces one of the two.
#
# Usage: scripts/infra.sh start|stop|restart|wipe|logs [-f]|status|url
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPOSE_FILE="$ROOT/deploy/docker-compose.infra.yml"
# INFRA_DIR puts the local cluster elsewhere (the tests keep theirs outside the clone).
INFRA_DIR="${INFRA_DIR:-$ROOT/.infra}"
PG_DIR="$INFRA_DIR/postgres"
DATA_DIR="$PG_DIR/data"
SOCKET_DIR="$PG_DIR/run"
LOG_FILE="$PG_DIR/postgres.log"
HOST=127.0.0.1
# INFRA_PORT moves it (the tests run their own cluster on 15433, so `make start-infra` stays free).
PORT="${INFRA_PORT:-15432}"
DB_USER=app
DB_PASSWORD=app
DB_NAME=app
URL="postgresql+asyncpg://$DB_USER:$DB_PASSWORD@$HOST:$PORT/$DB_NAME"

usage() {
    cat <<EOF
Usage: scripts/infra.sh COMMAND

  start      start PostgreSQL on $HOST:$PORT (creates it on first use; no-op when running)
  stop       stop it, keeping its data
  restart    restart it at once (pg_ctl restart -m fast: every session is ended, as in a
             failover or an operator's restart); waits until it answers again
  wipe       stop it and delete its data
  logs [-f]  show the server log (-f follows it)
  status     exit 0 when it answers, 1 otherwise
  url        print the database URL for the application

Backend: Docker Compose when 'docker info' succeeds, else a local cluster in .infra/postgres/.
Set INFRA_BACKEND=docker or INFRA_BACKEND=local to choose.
EOF
}

say() { printf '%s\n' "$*"; }
die() {
    printf 'infra: error: %s\n' "$*" >&2
    exit 1
}

# --- backend selection -------------------------------------------------------------------------

docker_answers() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -f "$COMPOSE_FILE" "$@"
    elif command -v docker-compose >/dev/null 2>&1; then
        docker-compose -f "$COMPOSE_FILE" "$@"
    else
        die "the Docker engine answers but Compose is missing; install the docker compose plugin or set INFRA_BACKEND=local"
    fi
}

BACKEND=""
choose_backend() {
    case "${INFRA_BACKEND:-}" in
        docker)
            docker_answers || die "INFRA_BACKEND=docker but 'docker info' fails; start the Docker engine or unset INFRA_BACKEND"
            BACKEND=docker
            ;;
        local) BACKEND=local ;;
        "")
            # A local cluster that is already running keeps being used, so stop/wipe reach it.
            if [[ -f "$DATA_DIR/postmaster.pid" ]] || ! docker_answers; then
                BACKEND=local
            else
                BACKEND=docker
            fi
            ;;
        *) die "INFRA_BACKEND must be 'docker' or 'local', not '$INFRA_BACKEND'" ;;
    esac
}

# --- local cluster: binaries and user ----------------------------------------------------------

# PG_BIN, pg_tool, RUN_USER, as_pg, sh_quote, bin_major (shared with scripts/cluster.sh).
# shellcheck source=scripts/lib/local-postgres.sh
source "$ROOT/scripts/lib/local-postgres.sh"

cluster_running() {
    [[ -f "$DATA_DIR/PG_VERSION" ]] && as_pg "$PG_BIN/pg_ctl" status -D "$DATA_DIR" >/dev/null 2>&1
}

PG_ISREADY=""
answers() {
    [[ -n "$PG_ISREADY" ]] || PG_ISREADY="$(pg_tool pg_isready)"
    "$PG_ISREADY" -q -h "$HOST" -p "$PORT" -t 3
}

# --- local cluster: commands -------------------------------------------------------------------

local_init() {
    local pwfile major
    if [[ -d "$DATA_DIR" ]] && [[ -n "$(ls -A "$DATA_DIR" 2>/dev/null)" ]]; then
        die "$DATA_DIR exists but holds no complete cluster; delete it with scripts/infra.sh wipe and start again"
    fi
    say "Creating the PostgreSQL cluster in ${DATA_DIR#"$ROOT"/} (first start)"
    mkdir -p "$DATA_DIR" "$SOCKET_DIR"
    chmod 700 "$DATA_DIR"
    if [[ -n "$RUN_USER" ]]; then
        chown -R "$RUN_USER:" "$PG_DIR"
        as_pg test -w "$PG_DIR" ||
            die "user '$RUN_USER' cannot write $PG_DIR (a parent directory is closed to it); move the project under a directory others can enter, e.g. /srv, or chmod o+x its parents"
    fi
    pwfile="$PG_DIR/.pwfile"
    (umask 077 && printf '%s\n' "$DB_PASSWORD" >"$pwfile")
    [[ -z "$RUN_USER" ]] || chown "$RUN_USER:" "$pwfile"
    if ! as_pg "$PG_BIN/initdb" -D "$DATA_DIR" -U "$DB_USER" --pwfile="$pwfile" \
        --auth=scram-sha-256 --encoding=UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1; then
        rm -f "$pwfile"
        tail -n 5 "$PG_DIR/initdb.log" >&2 || true
        die "initdb failed (full output in ${PG_DIR#"$ROOT"/}/initdb.log); fix the cause above, then run scripts/infra.sh wipe and start"
    fi
    rm -f "$pwfile"
    major="$(bin_major)"
    say "Cluster created with PostgreSQL $major binaries from $PG_BIN"
}

# The server's options for pg_ctl -o.
server_opts() {
    # A Unix socket path is limited to 107 bytes; beyond that the server listens on TCP only.
    if (("${#SOCKET_DIR}" + 16 < 108)); then
        printf '%s\n' "-p $PORT -k $(sh_quote "$SOCKET_DIR") -c listen_addresses=$HOST"
    else
        say "Note: ${SOCKET_DIR} is too long for a Unix socket; listening on TCP only" >&2
        printf '%s\n' "-p $PORT -k '' -c listen_addresses=$HOST"
    fi
}

local_start() {
    local major data_major opts psql
    find_pg_bin
    choose_run_user "$DATA_DIR"
    if [[ -f "$DATA_DIR/PG_VERSION" ]]; then
        if cluster_running; then
            PG_ISREADY="$(pg_tool pg_isready)"
            local waited=0
            # It may still be starting up (or recovering after a crash).
            until answers; do
                ((waited < 15)) ||
                    die "the server process of ${DATA_DIR#"$ROOT"/} exists but does not answer on $HOST:$PORT; see scripts/infra.sh logs, then run scripts/infra.sh stop and start"
                sleep 1
                waited=$((waited + 1))
            done
            say "PostgreSQL is already running at $HOST:$PORT (local cluster in ${DATA_DIR#"$ROOT"/})"
            return 0
        fi
        major="$(bin_major)"
        data_major="$(cat "$DATA_DIR/PG_VERSION")"
        if [[ "$major" != "$data_major" ]]; then
            die "${DATA_DIR#"$ROOT"/} was made by PostgreSQL $data_major but the binaries in $PG_BIN are $major; run scripts/infra.sh wipe to recreate it"
        fi
    fi
    PG_ISREADY="$(pg_tool pg_isready)"
    if answers; then
        die "another server already listens on $HOST:$PORT; stop it (maybe 'docker compose -f deploy/docker-compose.infra.yml down') and retry"
    fi
    [[ -f "$DATA_DIR/PG_VERSION" ]] || local_init
    mkdir -p "$SOCKET_DIR"
    [[ -z "$RUN_USER" ]] || chown "$RUN_USER:" "$SOCKET_DIR"
    [[ -z "$RUN_USER" || ! -e "$LOG_FILE" ]] || chown "$RUN_USER:" "$LOG_FILE"

    opts="$(server_opts)"
    say "Starting PostgreSQL on $HOST:$PORT (log: ${LOG_FILE#"$ROOT"/})"
    if ! as_pg "$PG_BIN/pg_ctl" start -D "$DATA_DIR" -w -t 60 -l "$LOG_FILE" -o "$opts" >/dev/null; then
        tail -n 5 "$LOG_FILE" >&2 2>/dev/null || true
        die "PostgreSQL did not start; read the log above (scripts/infra.sh logs), fix the cause, or recreate it with scripts/infra.sh wipe"
    fi

    psql="$(pg_tool psql)"
    export PGPASSWORD="$DB_PASSWORD" PGCONNECT_TIMEOUT=10 PGSSLMODE=prefer
    local exists
    exists="$("$psql" -X -q -h "$HOST" -p "$PORT" -U "$DB_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" ||
        die "cannot connect as $DB_USER to $HOST:$PORT; see scripts/infra.sh logs, or recreate the cluster with scripts/infra.sh wipe"
    if [[ "$exists" != 1 ]]; then
        "$psql" -X -q -h "$HOST" -p "$PORT" -U "$DB_USER" -d postgres \
            -c "CREATE DATABASE \"$DB_NAME\" OWNER \"$DB_USER\"" ||
            die "could not create database $DB_NAME; see scripts/infra.sh logs"
        say "Created database $DB_NAME owned by $DB_USER"
    fi
    say "PostgreSQL is ready: $URL"
}

local_stop() {
    if [[ ! -f "$DATA_DIR/PG_VERSION" ]]; then
        say "No local cluster in ${DATA_DIR#"$ROOT"/}; nothing to stop"
        return 0
    fi
    find_pg_bin
    choose_run_user "$DATA_DIR"
    if ! cluster_running; then
        say "PostgreSQL is not running"
        return 0
    fi
    as_pg "$PG_BIN/pg_ctl" stop -D "$DATA_DIR" -m fast -w -t 60 >/dev/null ||
        die "pg_ctl could not stop the server; see scripts/infra.sh logs, or stop process $(head -n 1 "$DATA_DIR/postmaster.pid" 2>/dev/null || echo '?') yourself"
    say "PostgreSQL stopped (data kept in ${DATA_DIR#"$ROOT"/})"
}

local_restart() {
    [[ -f "$DATA_DIR/PG_VERSION" ]] ||
        die "no local cluster in ${DATA_DIR#"$ROOT"/}; create and start it with scripts/infra.sh start"
    find_pg_bin
    choose_run_user "$DATA_DIR"
    cluster_running || die "PostgreSQL is not running; start it with scripts/infra.sh start"
    # -l keeps the server's output in its log: without it the new server would hold this
    # script's stdout open (and a caller waiting for its end would wait for the server's).
    as_pg "$PG_BIN/pg_ctl" restart -D "$DATA_DIR" -m fast -w -t 60 -l "$LOG_FILE" -o "$(server_opts)" >/dev/null ||
        die "pg_ctl could not restart the server; see scripts/infra.sh logs"
    say "PostgreSQL restarted on $HOST:$PORT"
}

local_wipe() {
    local_stop
    if [[ -e "$INFRA_DIR" ]]; then
        rm -rf "$INFRA_DIR" || die "could not delete $INFRA_DIR; delete it as its owner (maybe: sudo rm -rf $INFRA_DIR)"
        say "Deleted ${INFRA_DIR#"$ROOT"/}"
    else
        say "Nothing to delete"
    fi
}

local_logs() {
    [[ -f "$LOG_FILE" ]] || die "no log yet at ${LOG_FILE#"$ROOT"/}; start the server with scripts/infra.sh start"
    [[ -r "$LOG_FILE" ]] || die "cannot read ${LOG_FILE#"$ROOT"/}; run this as root or as user '$(stat -c %U "$LOG_FILE")'"
    if [[ "$1" == follow ]]; then
        exec tail -n 50 -F "$LOG_FILE"
    fi
    tail -n 100 "$LOG_FILE"
}

# --- commands ----------------------------------------------------------------------------------

cmd_status() {
    local ok=1
    if [[ "$BACKEND" == docker ]]; then
        if command -v pg_isready >/dev/null 2>&1; then
            pg_isready -q -h "$HOST" -p "$PORT" -t 3 && ok=0
        else
            compose exec -T postgres pg_isready -q -U "$DB_USER" -d "$DB_NAME" >/dev/null 2>&1 && ok=0
        fi
    else
        locate_pg_bin || true
        PG_ISREADY="$(pg_tool pg_isready)"
        answers && ok=0
    fi
    if ((ok == 0)); then
        say "PostgreSQL answers at $HOST:$PORT ($BACKEND)"
        return 0
    fi
    say "PostgreSQL does not answer at $HOST:$PORT; start it with scripts/infra.sh start (make start-infra)" >&2
    return 1
}

main() {
    local cmd="${1:-}"
    [[ $# -eq 0 ]] || shift
    case "$cmd" in
        url)
            say "$URL"
            return 0
            ;;
        -h | --help | help)
            usage
            return 0
            ;;
        start | stop | restart | wipe | status)
            [[ $# -eq 0 ]] || die "'$cmd' takes no arguments; see scripts/infra.sh --help"
            ;;
        logs)
            [[ $# -eq 0 || ($# -eq 1 && "$1" == -f) ]] || die "usage: scripts/infra.sh logs [-f]"
            ;;
        "")
            usage >&2
            exit 2
            ;;
        *)
            usage >&2
            die "unknown command '$cmd'; use one of start, stop, restart, wipe, logs, status, url"
            ;;
    esac

    choose_backend
    case "$BACKEND:$cmd" in
        docker:start)
            say "Starting PostgreSQL with Docker Compose on $HOST:$PORT"
            compose up -d --wait ||
                die "docker compose up failed; see scripts/infra.sh logs (port $PORT may be taken: scripts/infra.sh status)"
            say "PostgreSQL is ready: $URL"
            ;;
        docker:stop) compose down || die "docker compose down failed; check 'docker ps'" ;;
        docker:restart)
            compose restart postgres || die "docker compose restart failed; check 'docker ps'"
            compose up -d --wait || die "PostgreSQL did not come back; see scripts/infra.sh logs"
            ;;
        docker:wipe)
            compose down -v || die "docker compose down -v failed; check 'docker ps'"
            [[ ! -e "$INFRA_DIR" ]] || rm -rf "$INFRA_DIR"
            ;;
        docker:logs)
            if [[ "${1:-}" == -f ]]; then
                compose logs -f postgres
            else
                compose logs --tail 100 postgres
            fi
            ;;
        local:start) local_start ;;
        local:stop) local_stop ;;
        local:restart) local_restart ;;
        local:wipe) local_wipe ;;
        local:logs) if [[ "${1:-}" == -f ]]; then local_logs follow; else local_logs once; fi ;;
        *:status) cmd_status ;;
    esac
}

main "$@"
