# shellcheck shell=bash
# Shared by scripts/up, scripts/down and scripts/test: client settings, provisioning (migrations,
# topics, schemas) and the project's long-running services.

# CIRC_STACK_DIR: the state folder of another stack (scripts/stack reads it too).
STATE_DIR=${CIRC_STACK_DIR:-$ROOT/.stack}

# The services scripts/up runs, as "name:port": each is a binary of the workspace of that name that
# runs until SIGTERM and answers /readyz on that port; its log goes to .stack/logs/<name>.log.
# The ingest API and the realtime gateway serve clients, the console serves operators; each
# consumer group serves /metrics, /healthz and /readyz on 91xx.
SERVICES=(
  "ingest:${CIRC_INGEST_PORT:-8080}"
  "gateway:${CIRC_GATEWAY_PORT:-8090}"
  "console:${CIRC_CONSOLE_PORT:-8070}"
  "user-lifecycle:9101"
  "feed-fanout:9102"
  "notifier:9103"
  "payments:9104"
  "transcoder:9105"
  "thumbnailer:9106"
  "video-publisher:9107"
  "event-tracking:9108"
  "analytics-aggregation:9109"
  "vector-embedding:9110"
  "vector-update:9111"
  "moderation:9112"
  "messenger:9113"
  "realtime-bridge:9114"
  "audit-log:9115"
  "search-indexer:9116"
)

service_port() {
  local spec
  for spec in "${SERVICES[@]}"; do
    if [[ ${spec%%:*} == "$1" ]]; then
      echo "${spec#*:}"
      return
    fi
  done
}

step() { printf '\n==> %s\n' "$*" >&2; }

load_stack_env() {
  eval "$("$ROOT/scripts/stack" env)"
  # A development token secret, made once per checkout; `circ token` mints tokens with it.
  if [[ ! -s $STATE_DIR/jwt-secret ]]; then
    mkdir -p "$STATE_DIR"
    (umask 077 && head -c 36 /dev/urandom | base64 | tr -d '/+=\n' >"$STATE_DIR/jwt-secret")
  fi
  CIRC_JWT_SECRET=$(<"$STATE_DIR/jwt-secret")
  export CIRC_JWT_SECRET
  export CIRC_INGEST_LISTEN=127.0.0.1:${CIRC_INGEST_PORT:-8080}
  export CIRC_GATEWAY_LISTEN=127.0.0.1:${CIRC_GATEWAY_PORT:-8090}
  export CIRC_CONSOLE_LISTEN=127.0.0.1:${CIRC_CONSOLE_PORT:-8070}
  export CIRC_OBJECT_STORE=$STATE_DIR/objects
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
    binary=$ROOT/target/$profile/$name
    pidf=$STATE_DIR/run/svc-$name.pid
    if [[ -f $pidf ]] && kill -0 "$(<"$pidf")" 2>/dev/null; then
      continue
    fi
    # One replica of each: a stable instance id makes a restarted group take its partitions
    # back at once (static membership); a second copy started by hand needs its own.
    (CIRC_HANDLER_LISTEN=127.0.0.1:$(service_port "$name") CIRC_INSTANCE_ID=$name-0 \
      exec setsid nohup "$binary" >>"$STATE_DIR/logs/$name.log" 2>&1 </dev/null) &
    echo $! >"$pidf"
    printf 'started %s (pid %s, log .stack/logs/%s.log)\n' "$name" "$!" "$name" >&2
  done
  for spec in "${SERVICES[@]}"; do
    wait_service "${spec%%:*}"
  done
}

# Waits for a service's /readyz, failing with the end of its log.
wait_service() {
  local name=$1 port deadline=$((SECONDS + 60))
  port=$(service_port "$name")
  [[ -n $port ]] || return 0
  until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)) || ! kill -0 "$(<"$STATE_DIR/run/svc-$name.pid")" 2>/dev/null; then
      printf 'error: %s is not ready; last lines of .stack/logs/%s.log:\n' "$name" "$name" >&2
      tail -n 20 "$STATE_DIR/logs/$name.log" >&2
      return 1
    fi
    sleep 0.5
  done
  printf '%s ready on 127.0.0.1:%s\n' "$name" "$port" >&2
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
  printf 'Services: %s (logs in .stack/logs/)\n' "${SERVICES[*]%%:*}"
  printf 'Ingest API: http://127.0.0.1:%s (OpenAPI at /openapi.json)\n' "${CIRC_INGEST_PORT:-8080}"
  printf 'Console:    http://127.0.0.1:%s (sign in with an admin token; API under /admin/circulatory/)\n' "${CIRC_CONSOLE_PORT:-8070}"
  # shellcheck disable=SC2016 # printed for the reader to run, not expanded here
  printf 'An admin:   target/release/circ token --sub ops --role operator --secret "$(cat .stack/jwt-secret)"\n'
  # shellcheck disable=SC2016 # printed for the reader to run, not expanded here
  printf 'A token:    TOKEN=$(target/release/circ token --sub dev --events "*" --secret "$(cat .stack/jwt-secret)")\n'
}
