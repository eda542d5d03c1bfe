# shellcheck shell=bash
# Helpers of scripts/bench/peers/run and its parts (sourced after scripts/bench/lib.sh): stopping
# processes, CPU ticks of each server from /proc, the load generator's runs, the dedicated ingest,
# throwaway topics.
#
# Expects ROOT, RAW and COMMANDS set by the caller; AUTH, when set, is shown as $TOKEN.

# shellcheck disable=SC2034 # read by bullmq/peer.sh and bridge/peer.sh
PEERS_CACHE=${CIRC_CACHE_DIR:-$HOME/.cache/circulatory}/peers

# stop_pid PID: SIGTERM, up to 15 s, then SIGKILL. Only for processes this script started.
stop_pid() {
  local pid=$1
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# ticks PID: CPU time (utime + stime, all threads) used so far by PID, in clock ticks; 0 if gone.
ticks() {
  [[ -n $1 ]] || { echo 0; return; }
  awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# cpu_snapshot ROLE=PID...: one line "ROLE=TICKS ... machine=BUSY:IDLE" (machine ticks from /proc/stat).
cpu_snapshot() {
  local spec out=()
  for spec in "$@"; do out+=("${spec%%=*}=$(ticks "${spec#*=}")"); done
  out+=("machine=$(machine_ticks | tr ' ' :)")
  echo "${out[*]}"
}

# oha_run NAME URL BODY CONCURRENCY CONTENT_TYPE RATE ROLE=PID...: one load-generator run (RATE
# empty: as fast as it goes), JSON to $RAW/NAME.json, CPU snapshots of the roles to $RAW/NAME.ticks;
# prints the compact summary of scripts/bench/report.py.
oha_run() {
  local name=$1 url=$2 body=$3 conc=$4 ctype=$5 rate=$6 argv
  shift 6
  argv=("$OHA" --no-tui --output-format json --stats-success-breakdown -z "${DURATION}s" -c "$conc"
    -m POST -H "$AUTH" -T "$ctype" -Z "$body")
  [[ -n $rate ]] && argv+=(-q "$rate" --latency-correction)
  argv+=("$url")
  show "${argv[@]}"
  cpu_snapshot "$@" >"$RAW/$name.ticks"
  "${argv[@]}" >"$RAW/$name.json"
  cpu_snapshot "$@" >>"$RAW/$name.ticks"
  python3 "$ROOT/scripts/bench/report.py" oha "$RAW/$name.json"
}

# warm_up URL BODY CONTENT_TYPE SECONDS CONCURRENCY: load, not recorded.
warm_up() {
  local argv=("$OHA" --no-tui --output-format quiet -z "$4s" -c "$5" -m POST -H "$AUTH" -T "$3" -Z "$2" "$1")
  show "${argv[@]}"
  "${argv[@]}" >/dev/null
}

# start_ingest BIN NAMESPACE: a dedicated ingest on a free port, started as scripts/bench/ingest
# starts its own (scripts/up's environment, the per-client rate limit raised so it does not cap the
# load, the namespace's throwaway topics); sets INGEST_PORT and INGEST_PID, adds it to PIDS (stopped
# by the caller's clean-up).
start_ingest() {
  local bin=$1 ns=$2 raised=1000000000
  INGEST_PORT=$(free_port)
  SHOW_SUFFIX=' &' show env "CIRC_INGEST_LISTEN=127.0.0.1:$INGEST_PORT" "CIRC_NAMESPACE=$ns" \
    "CIRC_INGEST_RATE_PER_SEC=$raised" "CIRC_INGEST_RATE_BURST=$raised" "$bin"
  CIRC_INGEST_LISTEN=127.0.0.1:$INGEST_PORT CIRC_NAMESPACE=$ns \
    CIRC_INGEST_RATE_PER_SEC=$raised CIRC_INGEST_RATE_BURST=$raised \
    "$bin" >"$RAW/ingest.log" 2>&1 &
  INGEST_PID=$!
  PIDS+=("$INGEST_PID")
  wait_http "http://127.0.0.1:$INGEST_PORT/readyz" "$INGEST_PID" "$RAW/ingest.log"
}

# topic_create TOPIC PARTITIONS / topic_delete TOPIC: throwaway topics on the stack's broker.
topic_create() {
  run_shown java -cp "$CIRC_KAFKA_HOME/libs/*" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$CIRC_KAFKA_BOOTSTRAP" --create --if-not-exists --topic "$1" --partitions "$2" \
    --replication-factor 1 --config min.insync.replicas=1 >/dev/null
}
topic_delete() {
  java -cp "$CIRC_KAFKA_HOME/libs/*" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$CIRC_KAFKA_BOOTSTRAP" --delete --topic "$1" >/dev/null 2>&1 ||
    say "could not delete topic $1"
}

# child_ticks OUT CMD...: runs CMD with its stdout to OUT; prints the CPU ticks CMD and its children
# used (cutime + cstime of the shell that waited for it). Fails as CMD fails.
child_ticks() {
  local file=$1
  shift
  # shellcheck disable=SC2016 # expanded by the inner shell
  bash -c '"$@" >"$0" || exit; awk "{sub(/^.*\\) /, \"\"); print \$14 + \$15}" /proc/$$/stat' "$file" "$@"
}
