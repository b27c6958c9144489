#!/usr/bin/env bash
# A local production-like topology, without Docker, all on 127.0.0.1:
#   a PostgreSQL primary, a streaming replica of it (pg_basebackup), PgBouncer in transaction
#   mode in front of the primary, and three `app run` instances sharing one SECRET_KEY.
#
# Everything lives in CLUSTER_DIR (default .cluster/ in the checkout). Ports count from
# CLUSTER_PORT_BASE (default 16000): primary +0, replica +1, PgBouncer +2, instances +10, +11, +12.
#
# Usage: scripts/cluster.sh up | down [--wipe] | status | smoke | logs [NAME]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_DIR="${CLUSTER_DIR:-$ROOT/.cluster}"
HOST=127.0.0.1
INSTANCES=3
DB_NAME=app
DB_USER=app
DB_PASSWORD=app
SETTINGS="$CLUSTER_DIR/cluster.env"
SECRETS="$CLUSTER_DIR/secrets.env"
LOGS="$CLUSTER_DIR/logs"

usage() {
    cat <<EOF
Usage: scripts/cluster.sh COMMAND

  up           start (creating on first use) a PostgreSQL primary, a streaming replica,
               PgBouncer (transaction mode) and $INSTANCES app instances; applies the migrations
               and the fixtures once before the instances start. Running parts are left alone.
  down         stop them all (instances, PgBouncer, replica, primary), keeping the data
  down --wipe  stop them all and delete $CLUSTER_DIR
  status       each part's port, pid and state, the replica's lag; exit 1 when one is down
  smoke        sign up, sign in, write and read through every instance
  logs [NAME]  the last lines of a log: primary, replica, pgbouncer, app-1 .. app-$INSTANCES, migrate

Settings (environment):
  CLUSTER_DIR        state directory (default .cluster/ in the checkout)
  CLUSTER_PORT_BASE  first port (default 16000): primary +0, replica +1, PgBouncer +2,
                     instances +10 ..; kept from the first 'up' until 'down --wipe'
  CLUSTER_APP_DB     how the instances reach the primary: pgbouncer (with pgbouncer=true in the
                     URL), primary (directly), or auto (default): PgBouncer when the binary
                     understands pgbouncer=true, else directly
  APP_BINARY         the app executable (default: the release build, built when missing)
  Other variables the instances read (DATABASE_POOL_SIZE, DATABASE_REPLICA_MAX_LAG, LOG_LEVEL,
  ...) are passed on to them.
EOF
}

say() { printf '%s\n' "$*"; }
die() {
    printf 'cluster: error: %s\n' "$*" >&2
    exit 1
}

# shellcheck source=scripts/lib/local-postgres.sh
source "$ROOT/scripts/lib/local-postgres.sh"

# --- settings kept between commands ------------------------------------------------------------

PORT_BASE=""
APP_DB=""
APP=""
# Reads what the first 'up' recorded, so status and down find the same ports whatever the
# environment says now.
load_settings() {
    if [[ -f "$SETTINGS" ]]; then
        PORT_BASE="$(sed -n 's/^CLUSTER_PORT_BASE=//p' "$SETTINGS")"
        APP_DB="$(sed -n 's/^APP_DB=//p' "$SETTINGS")"
        APP="$(sed -n 's/^APP_BINARY=//p' "$SETTINGS")"
    fi
    if [[ -n "${CLUSTER_PORT_BASE:-}" && -n "$PORT_BASE" && "$CLUSTER_PORT_BASE" != "$PORT_BASE" ]]; then
        die "$CLUSTER_DIR was set up with CLUSTER_PORT_BASE=$PORT_BASE, not $CLUSTER_PORT_BASE; run scripts/cluster.sh down --wipe first, or choose another CLUSTER_DIR"
    fi
    PORT_BASE="${PORT_BASE:-${CLUSTER_PORT_BASE:-16000}}"
    if ! [[ "$PORT_BASE" =~ ^[0-9]+$ ]] || ((PORT_BASE < 1024 || PORT_BASE > 65500)); then
        die "CLUSTER_PORT_BASE must be a port number between 1024 and 65500, not '$PORT_BASE'"
    fi
    PRIMARY_PORT=$PORT_BASE
    REPLICA_PORT=$((PORT_BASE + 1))
    BOUNCER_PORT=$((PORT_BASE + 2))
}

app_port() { printf '%s\n' $((PORT_BASE + 9 + $1)); }

save_settings() {
    cat >"$SETTINGS" <<EOF
# Written by scripts/cluster.sh up; read by its other commands and by bench/cluster.py.
CLUSTER_PORT_BASE=$PORT_BASE
PRIMARY_PORT=$PRIMARY_PORT
REPLICA_PORT=$REPLICA_PORT
PGBOUNCER_PORT=$BOUNCER_PORT
APP_PORTS=$(for i in $(seq 1 "$INSTANCES"); do printf '%s ' "$(app_port "$i")"; done | sed 's/ $//')
APP_DB=$APP_DB
APP_BINARY=$APP
PRIMARY_URL=postgresql://$DB_USER:$DB_PASSWORD@$HOST:$PRIMARY_PORT/$DB_NAME
REPLICA_URL=postgresql://$DB_USER:$DB_PASSWORD@$HOST:$REPLICA_PORT/$DB_NAME
PGBOUNCER_URL=postgresql://$DB_USER:$DB_PASSWORD@$HOST:$BOUNCER_PORT/$DB_NAME
APP_DATABASE_URL=$(app_database_url)
EOF
}

# The URL the instances use.
app_database_url() {
    if [[ "$APP_DB" == pgbouncer ]]; then
        printf '%s\n' "postgresql://$DB_USER:$DB_PASSWORD@$HOST:$BOUNCER_PORT/$DB_NAME?pgbouncer=true"
    else
        printf '%s\n' "postgresql://$DB_USER:$DB_PASSWORD@$HOST:$PRIMARY_PORT/$DB_NAME"
    fi
}

# Random secrets made once: the superuser's and the replication role's passwords, SECRET_KEY.
SUPERUSER_PASSWORD=""
REPLICATOR_PASSWORD=""
SECRET_KEY_VALUE=""
random_hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
load_secrets() {
    if [[ ! -f "$SECRETS" ]]; then
        (umask 077 && printf 'SUPERUSER_PASSWORD=%s\nREPLICATOR_PASSWORD=%s\nSECRET_KEY=%s\n' \
            "$(random_hex)" "$(random_hex)" "$(random_hex)" >"$SECRETS")
    fi
    SUPERUSER_PASSWORD="$(sed -n 's/^SUPERUSER_PASSWORD=//p' "$SECRETS")"
    REPLICATOR_PASSWORD="$(sed -n 's/^REPLICATOR_PASSWORD=//p' "$SECRETS")"
    SECRET_KEY_VALUE="$(sed -n 's/^SECRET_KEY=//p' "$SECRETS")"
    [[ -n "$SUPERUSER_PASSWORD" && -n "$REPLICATOR_PASSWORD" && -n "$SECRET_KEY_VALUE" ]] ||
        die "$SECRETS is incomplete; run scripts/cluster.sh down --wipe and up again"
}

# psql as the superuser on one of the two servers (port), quietly, one value per line.
PSQL=""
su_sql() {
    local port="$1"
    shift
    PGPASSWORD="$SUPERUSER_PASSWORD" PGCONNECT_TIMEOUT=5 PGSSLMODE=disable \
        "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -h "$HOST" -p "$port" -U postgres -d postgres "$@"
}

# --- small helpers -----------------------------------------------------------------------------

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# True when pid $1 is alive and its command line contains $2 (a reused pid is not ours).
pid_is() {
    local pid="$1" word="$2"
    [[ "$pid" =~ ^[0-9]+$ ]] && [[ -r "/proc/$pid/cmdline" ]] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$word"
}

# The postmaster's pid of a data directory, or nothing.
pg_pid() {
    local file="$1/postmaster.pid" pid
    [[ -f "$file" ]] || return 0
    pid="$(head -n 1 "$file")"
    if pid_is "$pid" postgres; then printf '%s\n' "$pid"; fi
}

bouncer_pid() {
    local file="$CLUSTER_DIR/pgbouncer/pgbouncer.pid" pid
    [[ -f "$file" ]] || return 0
    pid="$(cat "$file")"
    if pid_is "$pid" pgbouncer; then printf '%s\n' "$pid"; fi
}

app_pid() {
    local file="$CLUSTER_DIR/app-$1/app.pid" pid
    [[ -f "$file" ]] || return 0
    pid="$(cat "$file")"
    if pid_is "$pid" " run --host $HOST --port $(app_port "$1")"; then printf '%s\n' "$pid"; fi
}

health_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$HOST:$1/health" 2>/dev/null || true; }

# Waits until pid $1 is gone, at most $2 seconds; returns 1 if it is still there.
wait_gone() {
    local pid="$1" tenths=$(($2 * 10))
    while kill -0 "$pid" 2>/dev/null; do
        ((tenths-- > 0)) || return 1
        sleep 0.1
    done
}

# --- tools -------------------------------------------------------------------------------------

PGBOUNCER=""
find_tools() {
    find_pg_bin
    PSQL="$(pg_tool psql)"
    command -v curl >/dev/null 2>&1 || die "curl not found; install it (Debian/Ubuntu: apt-get install curl)"
    PGBOUNCER="$(command -v pgbouncer || true)"
    [[ -n "$PGBOUNCER" || ! -x /usr/sbin/pgbouncer ]] || PGBOUNCER=/usr/sbin/pgbouncer
    if [[ -z "$PGBOUNCER" ]]; then
        if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            say "Installing PgBouncer (apt-get install pgbouncer)"
            { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer; } >"$LOGS/apt-get.log" 2>&1 ||
                die "apt-get install pgbouncer failed (see $LOGS/apt-get.log); install PgBouncer by hand"
            PGBOUNCER=/usr/sbin/pgbouncer
        else
            die "pgbouncer not found; install it (Debian/Ubuntu: sudo apt-get install pgbouncer)"
        fi
    fi
}

# The app executable: APP_BINARY, else the one recorded by the first 'up', else the release
# build (built when missing).
find_app() {
    # The one an earlier 'up' recorded is kept, so a second 'up' starts the same build.
    local wanted="${APP_BINARY:-$APP}"
    if [[ -n "$wanted" ]]; then
        [[ -x "$wanted" ]] || die "APP_BINARY=$wanted is not an executable file"
        APP="$(cd "$(dirname "$wanted")" && pwd)/$(basename "$wanted")"
        return
    fi
    APP="${CARGO_TARGET_DIR:-$ROOT/target}/release/app"
    [[ "$APP" == /* ]] || APP="$ROOT/$APP"
    if [[ ! -x "$APP" ]]; then
        say "Building the release binary (cargo build --release -p app; minutes on a cold cache)"
        (cd "$ROOT" && cargo build --release -p app) >"$LOGS/build.log" 2>&1 ||
            die "cargo build --release -p app failed; see $LOGS/build.log"
    fi
}

# Exports the settings every instance shares (in the subshell that then runs the binary).
app_settings() {
    export APP_ENV=production DATABASE_URL="$1" SECRET_KEY="$SECRET_KEY_VALUE" NO_COLOR=1 \
        DATABASE_FIXTURE_PATH="$ROOT/crates/app/fixtures" \
        DATABASE_REPLICA_URLS="postgresql://$DB_USER:$DB_PASSWORD@$HOST:$REPLICA_PORT/$DB_NAME"
}

# Runs the app binary from the state directory (no .env file of the checkout is read) with
# those settings; DATABASE_URL is the first argument.
run_app() {
    local url="$1"
    shift
    (
        cd "$CLUSTER_DIR"
        app_settings "$url"
        exec "$APP" "$@"
    )
}

# Does this build know the `pgbouncer` URL parameter? One that does refuses a value that is
# not a boolean (exit 2), offline; an older one ignores the parameter and would use named
# prepared statements, which PgBouncer in transaction mode cannot keep.
app_knows_pgbouncer_param() {
    local url="postgresql://$DB_USER@$HOST:1/$DB_NAME" out code=0
    out="$(run_app "$url?pgbouncer=true" database heads 2>&1)" ||
        die "$APP database heads fails: $out"
    run_app "$url?pgbouncer=not-a-boolean" database heads >/dev/null 2>&1 || code=$?
    [[ "$code" -eq 2 ]]
}

choose_app_db() {
    case "${CLUSTER_APP_DB:-auto}" in
        pgbouncer | primary) APP_DB="$CLUSTER_APP_DB" ;;
        auto)
            if app_knows_pgbouncer_param; then
                APP_DB=pgbouncer
            else
                APP_DB=primary
                say "Note: $APP does not understand pgbouncer=true (an older build), so the instances connect to the primary directly; CLUSTER_APP_DB=pgbouncer forces PgBouncer"
            fi
            ;;
        *) die "CLUSTER_APP_DB must be pgbouncer, primary or auto, not '$CLUSTER_APP_DB'" ;;
    esac
}

# --- PostgreSQL: primary and replica -----------------------------------------------------------

pg_start() {
    local name="$1" data="$2" port="$3"
    if [[ -n "$(pg_pid "$data")" ]]; then
        say "$name: already running on $HOST:$port"
        return 0
    fi
    ! port_in_use "$port" || die "port $port ($name) is taken by another program; stop it or set CLUSTER_PORT_BASE (after scripts/cluster.sh down --wipe)"
    touch "$LOGS/$name.log"
    chown_run_user "$LOGS/$name.log"
    # TCP only: a Unix socket path under a deep checkout may exceed 107 bytes.
    as_pg "$PG_BIN/pg_ctl" start -D "$data" -w -t 60 -l "$LOGS/$name.log" \
        -o "-p $port -k '' -c listen_addresses=$HOST" >/dev/null || {
        tail -n 5 "$LOGS/$name.log" >&2 || true
        die "$name did not start; see $LOGS/$name.log"
    }
    say "$name: started on $HOST:$port"
}

pg_stop() {
    local name="$1" data="$2"
    if [[ -z "$(pg_pid "$data")" ]]; then
        say "$name: not running"
        return 0
    fi
    as_pg "$PG_BIN/pg_ctl" stop -D "$data" -m fast -w -t 60 >/dev/null ||
        die "pg_ctl could not stop $name; see $LOGS/$name.log"
    say "$name: stopped"
}

chown_run_user() { [[ -z "$RUN_USER" ]] || chown -R "$RUN_USER:" "$@"; }

primary_init() {
    local data="$CLUSTER_DIR/primary" pwfile="$CLUSTER_DIR/.pwfile"
    [[ ! -f "$data/PG_VERSION" ]] || return 0
    [[ ! -d "$data" || -z "$(ls -A "$data" 2>/dev/null)" ]] ||
        die "$data exists but holds no complete cluster; run scripts/cluster.sh down --wipe and up again"
    say "primary: creating the cluster in $data"
    mkdir -p "$data"
    chmod 700 "$data"
    chown_run_user "$data"
    [[ -z "$RUN_USER" ]] || as_pg test -w "$data" ||
        die "user '$RUN_USER' cannot write $data (a parent directory is closed to it); set CLUSTER_DIR to a directory others can enter, e.g. /var/tmp/app-cluster"
    (umask 077 && printf '%s\n' "$SUPERUSER_PASSWORD" >"$pwfile")
    chown_run_user "$pwfile"
    if ! as_pg "$PG_BIN/initdb" -D "$data" -U postgres --pwfile="$pwfile" --auth=scram-sha-256 \
        --encoding=UTF8 --locale=C >"$LOGS/initdb.log" 2>&1; then
        rm -f "$pwfile"
        die "initdb failed; see $LOGS/initdb.log"
    fi
    rm -f "$pwfile"
    # Streaming replication, and WAL kept long enough for a replica that was stopped a while.
    as_pg tee -a "$data/postgresql.conf" >/dev/null <<EOF

# --- scripts/cluster.sh ---
wal_level = replica
max_wal_senders = 10
wal_keep_size = '512MB'
hot_standby = on
max_connections = 200
EOF
    as_pg tee "$data/pg_hba.conf" >/dev/null <<EOF
# scripts/cluster.sh: passwords (SCRAM) on loopback only.
host    all             all             127.0.0.1/32    scram-sha-256
host    replication     replicator      127.0.0.1/32    scram-sha-256
EOF
}

# Roles and database, made when missing (idempotent).
primary_roles() {
    su_sql "$PRIMARY_PORT" <<EOF || die "could not create the roles and database on the primary; see $LOGS/primary.log"
SELECT 'CREATE ROLE $DB_USER LOGIN PASSWORD ''$DB_PASSWORD'''
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER') \gexec
SELECT 'CREATE ROLE replicator LOGIN REPLICATION PASSWORD ''$REPLICATOR_PASSWORD'''
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'replicator') \gexec
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER'
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB_NAME') \gexec
EOF
}

replica_init() {
    local data="$CLUSTER_DIR/replica" passfile="$CLUSTER_DIR/replica.pgpass"
    [[ ! -f "$data/PG_VERSION" ]] || return 0
    rm -rf "$data"
    mkdir -p "$data"
    chmod 700 "$data"
    chown_run_user "$data"
    # The walreceiver runs as RUN_USER and reads the password from a file of its own.
    (umask 077 && printf '%s:%s:replication:replicator:%s\n' "$HOST" "$PRIMARY_PORT" "$REPLICATOR_PASSWORD" >"$passfile")
    chown_run_user "$passfile"
    say "replica: copying the primary (pg_basebackup -X stream -R)"
    if ! as_pg env PGPASSFILE="$passfile" PGSSLMODE=disable "$(pg_tool pg_basebackup)" -h "$HOST" -p "$PRIMARY_PORT" \
        -U replicator -D "$data" -X stream -R -c fast >"$LOGS/basebackup.log" 2>&1; then
        rm -rf "$data"
        die "pg_basebackup failed; see $LOGS/basebackup.log"
    fi
    as_pg tee -a "$data/postgresql.auto.conf" >/dev/null <<EOF
primary_conninfo = 'host=$HOST port=$PRIMARY_PORT user=replicator passfile=$passfile application_name=replica sslmode=disable'
EOF
}

# --- PgBouncer ---------------------------------------------------------------------------------

bouncer_config() {
    local dir="$CLUSTER_DIR/pgbouncer"
    mkdir -p "$dir"
    (umask 077 && printf '"%s" "%s"\n' "$DB_USER" "$DB_PASSWORD" >"$dir/userlist.txt")
    cat >"$dir/pgbouncer.ini" <<EOF
; Written by scripts/cluster.sh.
[databases]
$DB_NAME = host=$HOST port=$PRIMARY_PORT dbname=$DB_NAME

[pgbouncer]
listen_addr = $HOST
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
; Server connections per database and user; the instances' pools share them.
default_pool_size = 20
reserve_pool_size = 5
min_pool_size = 0
max_client_conn = 500
; sqlx sends these at connect; PgBouncer 1.18 refuses unknown startup parameters otherwise.
ignore_startup_parameters = extra_float_digits,options
logfile = $LOGS/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
    touch "$LOGS/pgbouncer.log"
    chown_run_user "$dir" "$LOGS/pgbouncer.log"
}

bouncer_start() {
    if [[ -n "$(bouncer_pid)" ]]; then
        say "pgbouncer: already running on $HOST:$BOUNCER_PORT"
        return 0
    fi
    ! port_in_use "$BOUNCER_PORT" || die "port $BOUNCER_PORT (pgbouncer) is taken by another program; stop it or set CLUSTER_PORT_BASE (after scripts/cluster.sh down --wipe)"
    bouncer_config
    as_pg "$PGBOUNCER" -d -q "$CLUSTER_DIR/pgbouncer/pgbouncer.ini" ||
        die "pgbouncer did not start; see $LOGS/pgbouncer.log"
    local tries=50
    until port_in_use "$BOUNCER_PORT"; do
        ((tries-- > 0)) || die "pgbouncer does not listen on $HOST:$BOUNCER_PORT; see $LOGS/pgbouncer.log"
        sleep 0.1
    done
    say "pgbouncer: started on $HOST:$BOUNCER_PORT (transaction mode, in front of the primary)"
}

bouncer_stop() {
    local pid
    pid="$(bouncer_pid)"
    if [[ -z "$pid" ]]; then
        say "pgbouncer: not running"
        return 0
    fi
    # SIGTERM: immediate shutdown (the instances, its clients, are already stopped).
    kill -TERM "$pid"
    wait_gone "$pid" 10 || die "pgbouncer (pid $pid) did not stop"
    say "pgbouncer: stopped"
}

# --- app instances -----------------------------------------------------------------------------

migrate() {
    local url="postgresql://$DB_USER:$DB_PASSWORD@$HOST:$PRIMARY_PORT/$DB_NAME"
    say "migrations: app database upgrade, then load-fixtures (log: $LOGS/migrate.log)"
    { run_app "$url" database upgrade && run_app "$url" database load-fixtures; } >>"$LOGS/migrate.log" 2>&1 || {
        tail -n 3 "$LOGS/migrate.log" >&2
        die "the migrations failed; see $LOGS/migrate.log"
    }
}

app_start() {
    local i="$1" port dir pid code tries
    port="$(app_port "$i")"
    dir="$CLUSTER_DIR/app-$i"
    if [[ -n "$(app_pid "$i")" ]]; then
        say "app-$i: already running on $HOST:$port"
        return 0
    fi
    ! port_in_use "$port" || die "port $port (app-$i) is taken by another program; stop it or set CLUSTER_PORT_BASE (after scripts/cluster.sh down --wipe)"
    mkdir -p "$dir"
    # Its own working directory: no .env file of the checkout is read. Production: nothing is
    # upgraded at start (done once above) and SECRET_KEY, shared, is required.
    (
        cd "$dir"
        app_settings "$(app_database_url)"
        exec setsid "$APP" run --host "$HOST" --port "$port" </dev/null >>"$LOGS/app-$i.log" 2>&1
    ) &
    pid=$!
    printf '%s\n' "$pid" >"$dir/app.pid"
    tries=600
    while :; do
        code="$(health_of "$port")"
        [[ "$code" != 200 ]] || break
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 5 "$LOGS/app-$i.log" >&2 || true
            die "app-$i exited at start; see $LOGS/app-$i.log"
        fi
        ((tries-- > 0)) || die "app-$i does not answer 200 on /health after 60 s (last: ${code:-no answer}); see $LOGS/app-$i.log"
        sleep 0.1
    done
    say "app-$i: started on http://$HOST:$port (pid $pid)"
}

app_stop() {
    local i="$1" pid
    pid="$(app_pid "$i")"
    if [[ -z "$pid" ]]; then
        say "app-$i: not running"
        return 0
    fi
    kill -TERM "$pid"
    # It answers what is in flight first (APP_SHUTDOWN_TIMEOUT, 10 s by default).
    if ! wait_gone "$pid" 30; then
        kill -KILL "$pid" 2>/dev/null || true
        say "app-$i: did not stop within 30 s; killed"
        return 0
    fi
    rm -f "$CLUSTER_DIR/app-$i/app.pid"
    say "app-$i: stopped"
}

# --- commands ----------------------------------------------------------------------------------

# Before creating anything: every port a part that is not running will need must be free.
check_ports() {
    local taken=()
    [[ -n "$(pg_pid "$CLUSTER_DIR/primary")" ]] || ! port_in_use "$PRIMARY_PORT" || taken+=("$PRIMARY_PORT (primary)")
    [[ -n "$(pg_pid "$CLUSTER_DIR/replica")" ]] || ! port_in_use "$REPLICA_PORT" || taken+=("$REPLICA_PORT (replica)")
    [[ -n "$(bouncer_pid)" ]] || ! port_in_use "$BOUNCER_PORT" || taken+=("$BOUNCER_PORT (pgbouncer)")
    for i in $(seq 1 "$INSTANCES"); do
        [[ -n "$(app_pid "$i")" ]] || ! port_in_use "$(app_port "$i")" || taken+=("$(app_port "$i") (app-$i)")
    done
    ((${#taken[@]} == 0)) ||
        die "port(s) taken by another program: ${taken[*]}; stop it or choose another CLUSTER_PORT_BASE (after scripts/cluster.sh down --wipe)"
}

cmd_up() {
    mkdir -p "$CLUSTER_DIR" "$LOGS"
    chmod 755 "$CLUSTER_DIR" "$LOGS"
    find_tools
    choose_run_user "$CLUSTER_DIR/primary"
    check_ports
    load_secrets
    find_app
    choose_app_db
    save_settings

    primary_init
    pg_start primary "$CLUSTER_DIR/primary" "$PRIMARY_PORT"
    primary_roles
    replica_init
    pg_start replica "$CLUSTER_DIR/replica" "$REPLICA_PORT"
    bouncer_start
    migrate
    for i in $(seq 1 "$INSTANCES"); do app_start "$i"; done
    say ""
    cmd_status
}

cmd_down() {
    local wipe="$1"
    if [[ ! -d "$CLUSTER_DIR" ]]; then
        say "No cluster in $CLUSTER_DIR; nothing to stop"
        return 0
    fi
    locate_pg_bin || true
    choose_run_user "$CLUSTER_DIR/primary"
    for i in $(seq 1 "$INSTANCES"); do app_stop "$i"; done
    bouncer_stop
    if [[ -n "$PG_BIN" ]]; then
        pg_stop replica "$CLUSTER_DIR/replica"
        pg_stop primary "$CLUSTER_DIR/primary"
    fi
    if [[ "$wipe" == yes ]]; then
        [[ -z "$(pg_pid "$CLUSTER_DIR/primary")$(pg_pid "$CLUSTER_DIR/replica")" ]] ||
            die "a server is still running; not deleting $CLUSTER_DIR"
        rm -rf "$CLUSTER_DIR"
        say "Deleted $CLUSTER_DIR"
    fi
}

# One line per part; returns 1 when any is down.
cmd_status() {
    local down=0 pid line code lag
    [[ -d "$CLUSTER_DIR" ]] || {
        say "No cluster in $CLUSTER_DIR; start one with scripts/cluster.sh up"
        return 1
    }
    locate_pg_bin || true
    PSQL="$(pg_tool psql)"
    [[ -f "$SECRETS" ]] && load_secrets
    printf '%-10s %-6s %-8s %s\n' part port pid state
    pid="$(pg_pid "$CLUSTER_DIR/primary")"
    if [[ -n "$pid" ]]; then line=up; else line=down down=1; fi
    printf '%-10s %-6s %-8s %s\n' primary "$PRIMARY_PORT" "${pid:--}" "$line"
    pid="$(pg_pid "$CLUSTER_DIR/replica")"
    if [[ -n "$pid" ]]; then
        line=up
        lag="$(su_sql "$PRIMARY_PORT" -F ' ' -c "SELECT state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn),
                 round(COALESCE(extract(epoch FROM replay_lag), 0)::numeric, 3)
               FROM pg_stat_replication WHERE application_name = 'replica'" 2>/dev/null || true)"
        if [[ -n "$lag" ]]; then
            read -r state bytes seconds <<<"$lag"
            line="up ($state; replay behind the primary by $bytes bytes, replay_lag ${seconds}s"
        else
            line="up (not streaming from the primary"
        fi
        lag="$(su_sql "$REPLICA_PORT" -c "SELECT pg_last_wal_replay_lsn()" 2>/dev/null || true)"
        line="$line; replayed up to ${lag:-?})"
    else
        line=down down=1
    fi
    printf '%-10s %-6s %-8s %s\n' replica "$REPLICA_PORT" "${pid:--}" "$line"
    pid="$(bouncer_pid)"
    if [[ -n "$pid" ]]; then line="up (transaction mode)"; else line=down down=1; fi
    printf '%-10s %-6s %-8s %s\n' pgbouncer "$BOUNCER_PORT" "${pid:--}" "$line"
    for i in $(seq 1 "$INSTANCES"); do
        pid="$(app_pid "$i")"
        if [[ -n "$pid" ]]; then
            code="$(health_of "$(app_port "$i")")"
            if [[ "$code" == 200 ]]; then line="up (/health 200; database via ${APP_DB:-?})"; else line="up but /health answers ${code:-nothing}" down=1; fi
        else
            line=down down=1
        fi
        printf '%-10s %-6s %-8s %s\n' "app-$i" "$(app_port "$i")" "${pid:--}" "$line"
    done
    say "logs: $LOGS"
    return "$down"
}

# Sign up through one instance, sign in through another, write through a third, read the todo
# through each, then 30 concurrent reads per instance: a broken path shows up as a non-200.
cmd_smoke() {
    local email token todo code i port bad=0 base1 base2 base3 out
    base1="http://$HOST:$(app_port 1)"
    base2="http://$HOST:$(app_port $((INSTANCES >= 2 ? 2 : 1)))"
    base3="http://$HOST:$(app_port "$INSTANCES")"
    email="smoke-$(random_hex | cut -c1-12)@example.com"
    code="$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        -d "{\"email\":\"$email\",\"name\":\"Smoke\",\"password\":\"smoke-password\"}" "$base1/api/access/signup")"
    [[ "$code" == 201 ]] || die "sign-up through $base1 answered $code"
    say "signed up $email through $base1"
    out="$(curl -s --data-urlencode "username=$email" --data-urlencode password=smoke-password "$base2/api/access/login")"
    token="$(sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' <<<"$out")"
    [[ -n "$token" ]] || die "sign-in through $base2 failed: $out"
    say "signed in through $base2"
    out="$(curl -s -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d '{"item":"smoke test","tags":["smoke"]}' "$base3/api/todos")"
    todo="$(sed -n 's/^{"id":"\([^"]*\)".*/\1/p' <<<"$out")"
    [[ -n "$todo" ]] || die "writing a todo through $base3 failed: $out"
    say "wrote todo $todo through $base3"
    for i in $(seq 1 "$INSTANCES"); do
        port="$(app_port "$i")"
        code="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://$HOST:$port/api/todos/$todo")"
        [[ "$code" == 200 ]] || die "reading the todo through app-$i answered $code"
        out="$(seq 30 | xargs -P 30 -I{} curl -s -o /dev/null -w '%{http_code}\n' \
            -H "Authorization: Bearer $token" "http://$HOST:$port/api/todos?limit=5" | sort | uniq -c | tr -s ' ' | tr '\n' ',')"
        if [[ "$out" != " 30 200," ]]; then bad=1; fi
        say "app-$i: read it back; 30 concurrent list reads answered:${out%,}"
    done
    [[ "$bad" -eq 0 ]] || die "some concurrent reads failed; see $LOGS/app-*.log"
    say "smoke: ok"
}

cmd_logs() {
    local name="${1:-}" file
    case "$name" in
        "") ls -1 "$LOGS" 2>/dev/null || die "no logs in $LOGS"; return 0 ;;
        *) file="$LOGS/$name.log" ;;
    esac
    [[ -f "$file" ]] || die "no log $file; names: primary, replica, pgbouncer, app-1 .. app-$INSTANCES, migrate"
    tail -n 50 "$file"
}

main() {
    local cmd="${1:-}"
    [[ $# -eq 0 ]] || shift
    case "$cmd" in
        -h | --help | help)
            usage
            return 0
            ;;
        up | status | smoke) [[ $# -eq 0 ]] || die "'$cmd' takes no arguments; see scripts/cluster.sh --help" ;;
        down) [[ $# -eq 0 || ($# -eq 1 && "$1" == --wipe) ]] || die "usage: scripts/cluster.sh down [--wipe]" ;;
        logs) [[ $# -le 1 ]] || die "usage: scripts/cluster.sh logs [NAME]" ;;
        "")
            usage >&2
            exit 2
            ;;
        *)
            usage >&2
            die "unknown command '$cmd'; use one of up, down, status, smoke, logs"
            ;;
    esac
    load_settings
    case "$cmd" in
        up) cmd_up ;;
        down) if [[ "${1:-}" == --wipe ]]; then cmd_down yes; else cmd_down no; fi ;;
        status) cmd_status ;;
        smoke)
            [[ -f "$SETTINGS" ]] || die "no cluster in $CLUSTER_DIR; start one with scripts/cluster.sh up"
            cmd_smoke
            ;;
        logs) cmd_logs "${1:-}" ;;
    esac
}

main "$@"
