# shellcheck shell=bash
# Shared by scripts/infra.sh and scripts/cluster.sh: finding the installed PostgreSQL binaries
# and running them as a user PostgreSQL accepts (it refuses to run as root).
#
# Source it after defining say() and die(). It sets PG_BIN (find_pg_bin) and RUN_USER
# (choose_run_user); as_pg runs a command as RUN_USER.

# System user that owns the servers when the caller runs as root and `postgres` does not exist.
PG_FALLBACK_USER=pginfra

PG_BIN=""
# Sets PG_BIN to a directory holding initdb and pg_ctl: pg_config --bindir, else the highest
# /usr/lib/postgresql/*/bin, else PATH. Returns 1 when there is none.
locate_pg_bin() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir 2>/dev/null || true)"
        if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            PG_BIN="$dir"
            return 0
        fi
    fi
    dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
        PG_BIN="$dir"
        return 0
    fi
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        PG_BIN="$(dirname "$(command -v pg_ctl)")"
        return 0
    fi
    return 1
}

find_pg_bin() {
    locate_pg_bin ||
        die "PostgreSQL server binaries (initdb, pg_ctl) not found; install them (Debian/Ubuntu: apt-get install postgresql) or start a Docker engine"
}

# Path of a client tool: next to the server binaries when there, else from PATH.
pg_tool() {
    if [[ -n "$PG_BIN" && -x "$PG_BIN/$1" ]]; then
        printf '%s\n' "$PG_BIN/$1"
    elif command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
    else
        die "'$1' not found; install the PostgreSQL client (Debian/Ubuntu: apt-get install postgresql-client)"
    fi
}

# The user that runs initdb and the servers whose files live under DIR: the current user, or,
# when root, the owner of DIR, else `postgres`, else a system user made for it.
RUN_USER=""
choose_run_user() {
    local dir="$1" owner=""
    if [[ "$(id -u)" -ne 0 ]]; then
        RUN_USER=""
        if [[ -d "$dir" && ! -O "$dir" ]]; then
            die "$dir belongs to user '$(stat -c %U "$dir")'; run this as root (sudo $0 ...) or delete it as root first"
        fi
        return
    fi
    if [[ -d "$dir" ]]; then
        owner="$(stat -c %U "$dir")"
    fi
    if [[ -n "$owner" && "$owner" != root && "$owner" != UNKNOWN ]]; then
        RUN_USER="$owner"
    elif id postgres >/dev/null 2>&1; then
        RUN_USER=postgres
    else
        if ! id "$PG_FALLBACK_USER" >/dev/null 2>&1; then
            say "Creating system user '$PG_FALLBACK_USER' to own the servers (PostgreSQL refuses to run as root)"
            if command -v useradd >/dev/null 2>&1; then
                useradd --system --user-group --no-create-home --home-dir /nonexistent \
                    --shell /usr/sbin/nologin "$PG_FALLBACK_USER" ||
                    die "could not create user '$PG_FALLBACK_USER'; create a 'postgres' user (useradd --system postgres) and retry"
            else
                adduser --system --group --no-create-home "$PG_FALLBACK_USER" >/dev/null ||
                    die "could not create user '$PG_FALLBACK_USER'; create a 'postgres' user and retry"
            fi
        fi
        RUN_USER="$PG_FALLBACK_USER"
    fi
}

# Runs a command as RUN_USER (or as is), from a directory that user can enter.
as_pg() {
    if [[ -z "$RUN_USER" ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u "$RUN_USER" -- "$@")
    else
        local cmd
        cmd="$(printf '%q ' "$@")"
        (cd / && su -s /bin/bash "$RUN_USER" -c "$cmd")
    fi
}

# Quotes one word for the /bin/sh command line that pg_ctl builds from -o.
sh_quote() {
    local q="'\\''"
    printf "'%s'" "${1//\'/$q}"
}

# Major version of the server binaries: "postgres (PostgreSQL) 15.8 (Debian ...)" -> 15.
bin_major() {
    "$PG_BIN/postgres" --version | awk 'NR == 1 { sub(/[^0-9].*/, "", $3); print $3 }'
}
