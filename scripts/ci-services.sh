#!/usr/bin/env bash
# Services the operations tests need, installed and started on this machine:
#   - a PostgreSQL server on 127.0.0.1 (tests/test_postgres.py: Dagster run/event storage on Postgres)
#   - Debian's headless Chromium (tests/test_browser.py: the Dagster UI rendered for real)
# Idempotent and fast when everything is already there and running. Prints the connection
# settings as shell exports on stdout, so callers do:
#     eval "$(scripts/ci-services.sh)"
# Settings (env, all optional): MDP_PG_PORT (55432), MDP_PG_DIR (/var/tmp/mdp-postgres),
# MDP_SERVICES_NO_BROWSER=1 to skip Chromium.
set -euo pipefail

PORT="${MDP_PG_PORT:-55432}"
DATA="${MDP_PG_DIR:-/var/tmp/mdp-postgres}"
PG_USER=mdp
PG_PASSWORD=mdp
PG_DB=mdp

log() { echo "ci-services: $*" >&2; }

# --- packages -------------------------------------------------------------------------------
want=()
if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null; then
  want+=(postgresql)
fi
if [ "${MDP_SERVICES_NO_BROWSER:-0}" != "1" ]; then
  [ -x /usr/bin/chromium ] || want+=(chromium)
  [ -x /usr/bin/chromedriver ] || want+=(chromium-driver)
fi
if [ ${#want[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; else
      log "need root to install ${want[*]}: sudo apt-get install -y ${want[*]}"; exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    log "no apt-get: install ${want[*]} with your package manager"; exit 1
  fi
  log "installing ${want[*]}"
  $SUDO apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${want[@]}" >/dev/null
fi

# --- PostgreSQL -----------------------------------------------------------------------------
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
if [ -z "$BIN" ]; then BIN="$(dirname "$(command -v pg_ctl)")"; fi

# initdb and postgres refuse to run as root: run them as the postgres user when we are root.
if [ "$(id -u)" = "0" ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir "$DATA" --shell /usr/sbin/nologin postgres
  as_pg() { runuser -u postgres -- "$@"; }
  SUPERUSER=postgres
else
  as_pg() { "$@"; }
  SUPERUSER="$(id -un)"
fi

start_server() {
  # A server killed without a clean shutdown (e.g. at the end of a session) leaves postmaster.pid;
  # if no live postgres process owns that PID any more, the file is stale and would block the start.
  if [ -f "$DATA/postmaster.pid" ]; then
    local old_pid state
    old_pid="$(head -1 "$DATA/postmaster.pid")"
    state="$(awk '{print $3}' "/proc/$old_pid/stat" 2>/dev/null || true)"
    if [ "$(cat "/proc/$old_pid/comm" 2>/dev/null || true)" != "postgres" ] || [ "$state" = "Z" ]; then
      log "removing stale $DATA/postmaster.pid (PID $old_pid is not a running postgres)"
      rm -f "$DATA/postmaster.pid"
    fi
  fi
  # A throwaway test server: fsync off, loopback only, its socket in the data folder.
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c max_connections=200 -c fsync=off" start >/dev/null
}

if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2; then
  if [ ! -s "$DATA/PG_VERSION" ]; then
    log "initdb $DATA"
    mkdir -p "$DATA"
    if [ "$(id -u)" = "0" ]; then chown postgres:postgres "$DATA"; fi
    chmod 700 "$DATA"
    as_pg "$BIN/initdb" -D "$DATA" -U "$SUPERUSER" --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  log "starting PostgreSQL on 127.0.0.1:$PORT ($DATA)"
  started=0
  for attempt in 1 2 3; do
    if start_server; then started=1; break; fi
    log "start attempt $attempt failed; retrying"
    sleep 3
  done
  if [ "$started" != 1 ]; then tail -20 "$DATA/server.log" >&2; exit 1; fi
fi

psql_super() { as_pg "$BIN/psql" -X -q -h "$DATA" -p "$PORT" -U "$SUPERUSER" -d postgres -v ON_ERROR_STOP=1 "$@"; }
if [ "$(psql_super -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != "1" ]; then
  psql_super -c "CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
fi
if [ "$(psql_super -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != "1" ]; then
  psql_super -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
fi
log "PostgreSQL ready: postgresql://$PG_USER:***@127.0.0.1:$PORT/$PG_DB"

echo "export MDP_TEST_PG_URL=postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PORT/$PG_DB"
