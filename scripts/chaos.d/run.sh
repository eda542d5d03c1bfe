# shellcheck shell=bash
# One fault run of scripts/chaos (load, fault, drain, verify) and the run's metadata (machine,
# versions, CPU use).

LOAD_PID=''

now_ms() { date +%s%3N; }

sleep_until_ms() {
  local left=$(($1 - $(now_ms)))
  if ((left > 0)); then sleep "$(awk -v ms="$left" 'BEGIN {printf "%.3f", ms / 1000}')"; fi
}

stop_load() {
  [[ -n $LOAD_PID ]] || return 0
  kill -TERM "$LOAD_PID" 2>/dev/null || true
  wait "$LOAD_PID" 2>/dev/null || true
  LOAD_PID=''
}

# Everything up and caught up before a run: three brokers, no under-replicated partition, Redis,
# PostgreSQL, the services ready.
wait_healthy() {
  local deadline=$((SECONDS + 180)) name
  until [[ $(kcat -b "$CIRC_KAFKA_BOOTSTRAP" -L -m 5 2>/dev/null) == *" 3 brokers:"* ]]; do
    ((SECONDS < deadline)) || die "the chaos cluster does not list 3 brokers"
    sleep 1
  done
  wait_isr_complete || die "partitions still under-replicated before the run"
  redis-cli -h 127.0.0.1 -p "$CIRC_REDIS_PORT" ping >/dev/null || die "chaos Redis does not answer"
  "$PG_BIN_DIR/pg_isready" -q -h 127.0.0.1 -p "$CIRC_PG_PORT" -t 5 || die "chaos PostgreSQL does not answer"
  for name in ingest "${GROUPS_RUN[@]}"; do wait_service_ready "$name" 60; done
}

# CPU ticks so far of a process and its live children (PostgreSQL's backends), plus the children
# it already reaped.
proc_ticks() {
  local pid=$1 total child
  if ((pid <= 1)); then
    echo 0
    return
  fi
  total=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat" 2>/dev/null || echo 0)
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$child/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# cpu_snapshot FILE: "name ticks" per process of the chaos stack, then the machine's busy and
# idle ticks (/proc/stat); two snapshots give the run's CPU split.
cpu_snapshot() {
  local out=$1 node name
  {
    for node in 1 2 3; do echo "kafka-$node $(proc_ticks "$(broker_pid "$node" 2>/dev/null || echo 0)")"; done
    for name in registry redis postgres; do echo "$name $(proc_ticks "$(service_pid "$name" 2>/dev/null || echo 0)")"; done
    for name in ingest "${GROUPS_RUN[@]}"; do echo "$name $(proc_ticks "$(chaos_svc_pid "$name" || echo 0)")"; done
    echo "load $(proc_ticks "${LOAD_PID:-0}")"
    awk '/^cpu / {print "machine_busy", $2 + $3 + $4 + $7 + $8 + $9; print "machine_idle", $5 + $6}' /proc/stat
  } >"$out"
}

# run_fault RUN_NAME FAULT
run_fault() {
  local name=$1 fault=$2 started end
  RUN=$RAW/$name
  mkdir -p "$RUN"
  : >"$RUN/marks"
  say "== $fault: waiting until everything is up and in sync"
  wait_healthy
  kcat -b "$CIRC_KAFKA_BOOTSTRAP" -L -m 10 >"$RUN/metadata-before.txt" 2>&1 || true
  prepare "$fault"
  ps -eo pcpu,pid,comm --sort=-pcpu | head -n 8 >"$RUN/top-before.txt"
  "$CHAOS_BIN" --dir "$RUN" load --ingest-url "http://127.0.0.1:$CIRC_INGEST_PORT" --rate "$RATE" \
    --max-in-flight "$MAX_IN_FLIGHT" >"$RUN/load.json" 2>"$RUN/load.log" &
  LOAD_PID=$!
  for _ in $(seq 1 600); do [[ -s $RUN/load-started ]] && break; sleep 0.1; done
  [[ -s $RUN/load-started ]] || die "the load did not start (see $RUN/load.log)"
  started=$(cut -d. -f1 <"$RUN/load-started")
  cpu_snapshot "$RUN/cpu-begin"
  say "== $fault: load at $RATE events/s; the fault comes at ${FAULT_AT}s"
  sleep_until_ms $((started + FAULT_AT * 1000))
  inject "$fault"
  end=$((started + LOAD_SECS * 1000))
  (($(now_ms) + TAIL_SECS * 1000 > end)) && end=$(($(now_ms) + TAIL_SECS * 1000))
  sleep_until_ms "$end"
  cpu_snapshot "$RUN/cpu-end"
  stop_load
  kcat -b "$CIRC_KAFKA_BOOTSTRAP" -L -m 10 >"$RUN/metadata-after.txt" 2>&1 || true
  say "== $fault: load stopped; waiting for the groups, reading the topics back"
  "$CHAOS_BIN" --dir "$RUN" verify --fault "$fault" --recovery "$(recovery_kind "$fault")" \
    --slow-ms "$SLOW_MS" >"$RUN/verify.json" 2>"$RUN/verify.log" ||
    { tail -n 20 "$RUN/verify.log" >&2; die "verify failed for $fault"; }
  python3 "$ROOT/scripts/bench/chaos_report.py" row "$RUN" >>"$RAW/rows.jsonl"
  python3 "$ROOT/scripts/bench/chaos_report.py" line "$RUN" >&2
}

# Load without a fault, not reported: the JVMs compile their hot paths and the groups' pools
# fill, so the first fault does not pay for a cold stack. Verified all the same (a failure here
# stops the suite early).
warm_up() {
  ((WARMUP_SECS > 0)) || return 0
  local dir=$RAW/00-warm-up
  mkdir -p "$dir"
  say "== warm-up: ${WARMUP_SECS}s of load, not reported"
  "$CHAOS_BIN" --dir "$dir" load --ingest-url "http://127.0.0.1:$CIRC_INGEST_PORT" --rate "$RATE" \
    --max-in-flight "$MAX_IN_FLIGHT" --max-secs "$WARMUP_SECS" >"$dir/load.json" 2>"$dir/load.log" ||
    die "the warm-up load failed (see $dir/load.log)"
  "$CHAOS_BIN" --dir "$dir" verify --fault warm-up >"$dir/verify.json" 2>"$dir/verify.log" ||
    die "verifying the warm-up failed (see $dir/verify.log)"
}

write_meta_before() {
  {
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "command=$COMMAND_LINE"
    echo "nproc=$(nproc)"
    echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "memory=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel=$(uname -sr)"
    echo "rustc=$(rustc --version)"
    echo "java=$(java -version 2>&1 | head -n 1)"
    echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "binaries_built=$(date -u -r "$BIN/ingest" +%Y-%m-%dT%H:%M:%SZ)"
    echo "rate=$RATE"
    echo "max_in_flight=$MAX_IN_FLIGHT"
    echo "fault_at=$FAULT_AT"
    echo "load_secs=$LOAD_SECS"
    echo "tail_secs=$TAIL_SECS"
    echo "broker_down_secs=$BROKER_DOWN_SECS"
    echo "consumer_down_secs=$CONSUMER_DOWN_SECS"
    echo "redis_down_secs=$REDIS_DOWN_SECS"
    echo "pg_down_secs=$PG_DOWN_SECS"
    echo "slow_ms=$SLOW_MS"
    echo "warmup_secs=$WARMUP_SECS"
    echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
  } >"$RAW/meta.env"
  ps -eo pcpu,pid,comm --sort=-pcpu | head -n 12 >"$RAW/top-before.txt"
}

write_meta_after() {
  {
    echo "topics=$TOPICS_SUMMARY"
    echo "kafka=$(basename "$(ls "$CIRC_KAFKA_HOME"/libs/kafka-tools-[0-9]*.jar)" .jar)"
    echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)"
  } >>"$RAW/meta.env"
  "$BIN/ingest" --help >"$RAW/ingest-help.txt" 2>&1 || true
}
