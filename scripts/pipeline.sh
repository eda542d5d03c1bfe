# shellcheck shell=bash
# Shared by scripts/up, scripts/down and scripts/test: client settings, provisioning (migrations,
# topics, schemas) and the project's long-running services.

STATE_DIR=$ROOT/.stack

# The services scripts/up runs, as "name:binary". Each is a binary of the workspace that runs until
# SIGTERM; its log goes to .stack/logs/<name>.log.
SERVICES=()

step() { printf '\n==> %s\n' "$*" >&2; }

load_stack_env() {
  eval "$("$ROOT/scripts/stack" env)"
}

# provision CIRC: bring PostgreSQL, Kafka and the registry in line with migrations/, topics.yaml and
# schemas/. Every step is idempotent.
provision() {
  local circ=$1
  step "database migrations"
  "$circ" db migrate
  step "topics (replication factor $CIRC_REPLICATION_FACTOR)"
  "$circ" topics apply --replication-factor "$CIRC_REPLICATION_FACTOR" | tail -n 1
  step "schemas (FULL_TRANSITIVE)"
  "$circ" schemas register | tail -n 1
}

# start_services PROFILE: start each service not already running (pid files in .stack/run).
start_services() {
  local profile=$1 spec name binary pidf
  mkdir -p "$STATE_DIR/run" "$STATE_DIR/logs"
  for spec in "${SERVICES[@]}"; do
    name=${spec%%:*}
    binary=$ROOT/target/$profile/${spec#*:}
    pidf=$STATE_DIR/run/svc-$name.pid
    if [[ -f $pidf ]] && kill -0 "$(<"$pidf")" 2>/dev/null; then
      continue
    fi
    (exec setsid nohup "$binary" >>"$STATE_DIR/logs/$name.log" 2>&1 </dev/null) &
    echo $! >"$pidf"
    printf 'started %s (pid %s, log .stack/logs/%s.log)\n' "$name" "$!" "$name" >&2
  done
}

stop_services() {
  local pidf pid
  for pidf in "$STATE_DIR"/run/svc-*.pid; do
    [[ -f $pidf ]] || continue
    pid=$(<"$pidf")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidf"
  done
}

list_services() {
  if ((${#SERVICES[@]} == 0)); then
    printf 'Services: none yet; the circ CLI is at target/release/circ\n'
  else
    printf 'Services: %s\n' "${SERVICES[*]%%:*}"
  fi
}
