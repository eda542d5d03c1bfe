# shellcheck shell=bash
# The seed design's peer (sourced by scripts/bench/peers/run): its npm install in the cache, a
# redis-server of its own per persistence mode, the HTTP service (server.mjs beside this file), the
# queue pre-fill and the worker drain. Needs lib.sh.

BULLMQ_SRC=$ROOT/scripts/bench/peers/bullmq
BULLMQ_HOME=$PEERS_CACHE/bullmq
REDIS_SERVER=${BENCH_REDIS_SERVER:-/usr/bin/redis-server}

# redis_mode_args MODE: the persistence flags of a mode: aof (the durable setting: append-only file,
# fsync every second) or none. RDB snapshots are off in both (--save '').
redis_mode_args() {
  case $1 in
    aof) REDIS_ARGS=(--appendonly yes --appendfsync everysec --save '') ;;
    none) REDIS_ARGS=(--appendonly no --save '') ;;
    *) die "unknown redis mode $1" ;;
  esac
}

# install_bullmq: `npm ci` of bullmq/package-lock.json into $BULLMQ_HOME (again only when the lock
# changed), then the service's sources beside it (Node resolves `bullmq` from the script's folder).
install_bullmq() {
  local lock_sum
  lock_sum=$(sha256sum "$BULLMQ_SRC/package-lock.json" | cut -d' ' -f1)
  mkdir -p "$BULLMQ_HOME"
  if [[ $(cat "$BULLMQ_HOME/.lock-sum" 2>/dev/null) != "$lock_sum" ]]; then
    say "npm ci (bullmq) into $BULLMQ_HOME"
    cp "$BULLMQ_SRC/package.json" "$BULLMQ_SRC/package-lock.json" "$BULLMQ_HOME/"
    (cd "$BULLMQ_HOME" && npm ci --omit=dev --no-audit --no-fund --loglevel=error) >&2
    echo "$lock_sum" >"$BULLMQ_HOME/.lock-sum"
  fi
  cp "$BULLMQ_SRC"/*.mjs "$BULLMQ_HOME/"
}

bullmq_version() {
  node -e 'console.log(require(process.argv[1]).version)' "$BULLMQ_HOME/node_modules/bullmq/package.json"
}

# start_redis MODE: a redis-server on a free port with a throwaway dir under $RAW (removed at the
# end); sets REDIS_PORT_<MODE> and REDIS_PID_<MODE>, adds the pid to PIDS and the dir to TEMP_DIRS.
start_redis() {
  local mode=$1 port dir argv REDIS_ARGS
  port=$(free_port)
  dir=$RAW/redis-$mode
  mkdir -p "$dir"
  redis_mode_args "$mode"
  argv=("$REDIS_SERVER" --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize no "${REDIS_ARGS[@]}")
  SHOW_SUFFIX=' &' show "${argv[@]}"
  "${argv[@]}" >"$RAW/redis-$mode.log" 2>&1 &
  PIDS+=("$!")
  printf -v "REDIS_PID_$mode" '%s' "$!"
  printf -v "REDIS_PORT_$mode" '%s' "$port"
  TEMP_DIRS+=("$dir")
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  tail -n 20 "$RAW/redis-$mode.log" >&2
  die "redis-server ($mode) did not start"
}

# start_bullmq MODE: the HTTP service on a free port against that mode's redis; sets
# BULLMQ_PORT_<MODE> and BULLMQ_PID_<MODE>, adds the pid to PIDS.
start_bullmq() {
  local mode=$1 port redis_port_var=REDIS_PORT_$1 pid
  port=$(free_port)
  SHOW_SUFFIX=' &' show env "LISTEN=127.0.0.1:$port" "REDIS_URL=redis://127.0.0.1:${!redis_port_var}" \
    node "$BULLMQ_HOME/server.mjs"
  LISTEN=127.0.0.1:$port REDIS_URL=redis://127.0.0.1:${!redis_port_var} \
    node "$BULLMQ_HOME/server.mjs" >"$RAW/bullmq-$mode.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  printf -v "BULLMQ_PID_$mode" '%s' "$pid"
  printf -v "BULLMQ_PORT_$mode" '%s' "$port"
  wait_http "http://127.0.0.1:$port/readyz" "$pid" "$RAW/bullmq-$mode.log"
}

# redis_flush MODE: empty that redis between measurements (the jobs of one would fill its memory).
redis_flush() {
  local port_var=REDIS_PORT_$1
  show redis-cli -p "${!port_var}" flushall
  redis-cli -p "${!port_var}" flushall >/dev/null
}

# bullmq_drain NAME MODE COUNT EVENTS: pre-fill COUNT jobs, then time a worker (concurrency 50)
# completing them all: its JSON line (with its own CPU time) to $RAW/NAME.json, redis's ticks in
# $RAW/NAME.ticks.
bullmq_drain() {
  local name=$1 mode=$2 count=$3 events=$4 port_var=REDIS_PORT_$2 pid_var=REDIS_PID_$2 url
  url=redis://127.0.0.1:${!port_var}
  redis_flush "$mode"
  show env "REDIS_URL=$url" "COUNT=$count" "EVENTS=$events" node "$BULLMQ_HOME/fill.mjs"
  REDIS_URL=$url COUNT=$count EVENTS=$events node "$BULLMQ_HOME/fill.mjs" >"$RAW/$name-fill.json"
  show env "REDIS_URL=$url" "DRAIN=$count" CONCURRENCY=50 node "$BULLMQ_HOME/worker.mjs"
  cpu_snapshot "redis=${!pid_var}" >"$RAW/$name.ticks"
  REDIS_URL=$url DRAIN=$count CONCURRENCY=50 timeout 600 node "$BULLMQ_HOME/worker.mjs" >"$RAW/$name.json" ||
    say "worker drain $name failed"
  cpu_snapshot "redis=${!pid_var}" >>"$RAW/$name.ticks"
  redis_flush "$mode"
}
