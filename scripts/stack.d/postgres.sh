# shellcheck shell=bash
# PostgreSQL from Debian's package, as our own cluster (initdb) with its data in .stack/pg/data, TCP on
# 127.0.0.1 only. The server refuses to run as root, so as root it runs as the postgres user.
# No Unix socket is opened (nothing to clash with Debian's own cluster in /var/run/postgresql): the
# superuser "postgres" logs in over TCP with the password kept in .stack/pg/superuser.password.

PG_SUPERUSER_PW_FILE=$STATE_DIR/pg/superuser.password

pg_os_user() {
  if ((EUID == 0)); then echo postgres; else id -un; fi
}

# Run a command as the server's user. setpriv execs in place (runuser would stay as a parent process and
# turn our SIGINT into a SIGKILL of the server).
as_pg() {
  if ((EUID == 0)); then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

# Where the cluster lives: .stack/pg when the postgres user can reach it, otherwise (a checkout under a
# private home such as /root) a folder of its own under /var/lib/postgresql, one per checkout.
pg_base() {
  local base=$STATE_DIR/pg
  if ((EUID != 0)) || runuser -u postgres -- test -x "$base" 2>/dev/null; then
    echo "$base"
  else
    pg_private_base
  fi
}

# The folder of its own under /var/lib/postgresql: one per checkout, and one per other state folder
# (CIRC_STACK_DIR) so that a second stack never shares the first one's cluster.
pg_private_base() {
  local key=$ROOT
  [[ $STATE_DIR == "$ROOT/.stack" ]] || key=$STATE_DIR
  echo "/var/lib/postgresql/circulatory/$(printf '%s' "$key" | cksum | cut -d' ' -f1)"
}

pg_init() {
  local base=$1 data=$1/data pwtmp
  log "creating PostgreSQL $PG_MAJOR cluster in $data"
  if [[ ! -s $PG_SUPERUSER_PW_FILE ]]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$PG_SUPERUSER_PW_FILE")
  fi
  mkdir -p "$data"
  chmod 700 "$data"
  pwtmp=$base/.initdb-pw
  (umask 077 && cp "$PG_SUPERUSER_PW_FILE" "$pwtmp")
  if ((EUID == 0)); then chown postgres:postgres "$data" "$pwtmp"; fi
  # --no-sync: a throwaway dev cluster does not need initdb's fsync of every file.
  if ! (cd / && as_pg "$PG_BIN/initdb" -D "$data" -U postgres --pwfile="$pwtmp" --auth-local=peer \
    --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync) >>"$(log_file postgres)" 2>&1; then
    rm -f "$pwtmp"
    fail_with_log "initdb failed" postgres
  fi
  rm -f "$pwtmp"
}

pg_start() {
  svc_pid postgres >/dev/null && return 0
  ensure_port_free "$PG_PORT" "PostgreSQL (CIRC_PG_PORT)"
  mkdir -p "$STATE_DIR/pg"
  chmod 755 "$STATE_DIR/pg"
  local base data
  base=$(pg_base)
  data=$base/data
  if [[ $base != "$STATE_DIR/pg" ]]; then
    log "the postgres user cannot reach $STATE_DIR; the cluster lives in $base"
    mkdir -p "$base"
    chown postgres:postgres "$base"
    chmod 700 "$base"
  fi
  [[ -s $data/PG_VERSION ]] || pg_init "$base"
  [[ -s $PG_SUPERUSER_PW_FILE ]] || die "$PG_SUPERUSER_PW_FILE is missing; 'scripts/stack reset' makes a new cluster"
  local as_user=()
  if ((EUID == 0)); then as_user=(setpriv --reuid=postgres --regid=postgres --init-groups --); fi
  start_bg postgres / "$data" "$PG_PORT" \
    "${as_user[@]}" "$PG_BIN/postgres" -D "$data" -c listen_addresses=127.0.0.1 -c "port=$PG_PORT" \
    -c unix_socket_directories=
}

pg_ready() {
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2
}

# The application's role and database, created once. CREATEDB lets test harnesses make scratch databases.
pg_setup() {
  if ! PGPASSWORD=$(<"$PG_SUPERUSER_PW_FILE") "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres >/dev/null 2>>"$(log_file postgres)" <<'SQL'; then
SELECT 'CREATE ROLE circulatory LOGIN CREATEDB PASSWORD ''circulatory'''
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'circulatory') \gexec
SELECT 'CREATE DATABASE circulatory OWNER circulatory'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'circulatory') \gexec
SQL
    fail_with_log "creating the circulatory role and database failed" postgres
  fi
  "$PG_BIN/psql" -X -qAt "$DATABASE_URL" -c 'SELECT 1' >/dev/null 2>>"$(log_file postgres)" ||
    fail_with_log "cannot log in with $DATABASE_URL" postgres
}

pg_check() {
  local got
  got=$("$PG_BIN/psql" -X -qAt "$DATABASE_URL" -c 'SELECT current_user || $$@$$ || current_database()' 2>&1 || true)
  if [[ $got != circulatory@circulatory ]]; then
    log "postgres: FAILED ($got)"
    return 1
  fi
  log "postgres: ok (logged in with $DATABASE_URL)"
}

# Remove the cluster, wherever it lives (see pg_base).
pg_wipe() {
  local alt
  alt=$(pg_private_base)
  if [[ -d $alt ]]; then as_root rm -rf "$alt"; fi
}
