# shellcheck shell=bash
# The services under test on the chaos stack: the ingest and the consumer groups, each from
# target/release with the chaos stack's environment; pids in $CHAOS_DIR/run/svc-<name>.pid, logs
# (appended across restarts) in $CHAOS_DIR/logs/svc-<name>.log.

svc_pidfile() { printf '%s/run/svc-%s.pid' "$CHAOS_DIR" "$1"; }
svc_log() { printf '%s/logs/svc-%s.log' "$CHAOS_DIR" "$1"; }

# The /readyz port of a service.
chaos_port() {
  case $1 in
    ingest) echo "$CIRC_INGEST_PORT" ;;
    user-lifecycle) echo $((GROUP_PORT + 1)) ;;
    payments) echo $((GROUP_PORT + 4)) ;;
    *) die "no port for $1" ;;
  esac
}

chaos_svc_pid() {
  local f
  f=$(svc_pidfile "$1")
  [[ -s $f ]] && kill -0 "$(<"$f")" 2>/dev/null && cat "$f"
}

# start_service NAME: the binary of that name, detached; a group with its stable instance id
# (static membership: a restart under the same id takes the partitions back at once).
start_service() {
  local name=$1 port
  port=$(chaos_port "$name")
  mkdir -p "$CHAOS_DIR/run" "$CHAOS_DIR/logs"
  printf '\n===== %s scripts/chaos: starting %s =====\n' "$(date '+%F %T')" "$name" >>"$(svc_log "$name")"
  if [[ $name == ingest ]]; then
    (exec setsid nohup "$BIN/ingest" >>"$(svc_log "$name")" 2>&1 </dev/null) &
  else
    (CIRC_HANDLER_LISTEN=127.0.0.1:$port CIRC_INSTANCE_ID=$name-0 \
      exec setsid nohup "$BIN/$name" >>"$(svc_log "$name")" 2>&1 </dev/null) &
  fi
  echo $! >"$(svc_pidfile "$name")"
  # Killing it is the point of some runs: no job report from this shell when that happens.
  disown "$!"
}

# wait_service_ready NAME [TIMEOUT]: its /readyz answers 200.
wait_service_ready() {
  local name=$1 timeout=${2:-90} port deadline
  port=$(chaos_port "$name")
  deadline=$((SECONDS + timeout))
  until curl --noproxy '*' -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)) || ! chaos_svc_pid "$name" >/dev/null; then
      tail -n 20 "$(svc_log "$name")" >&2
      die "$name is not ready on port $port"
    fi
    sleep 0.3
  done
}

start_chaos_services() {
  local name port
  for name in ingest "${GROUPS_RUN[@]}"; do
    chaos_svc_pid "$name" >/dev/null && continue
    port=$(chaos_port "$name")
    [[ -z $(ss -Hltn "sport = :$port" 2>/dev/null) ]] || die "port $port (for $name) is in use; set CHAOS_INGEST_PORT / CHAOS_GROUP_PORT"
    start_service "$name"
  done
  for name in ingest "${GROUPS_RUN[@]}"; do
    wait_service_ready "$name"
    say "$name ready on 127.0.0.1:$(chaos_port "$name")"
  done
}

stop_chaos_services() {
  local name pid
  for name in ingest "${GROUPS_RUN[@]}"; do
    pid=$(chaos_svc_pid "$name") || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$(svc_pidfile "$name")"
  done
}

# Every topic of the chaos stack: replication factor 3, min.insync.replicas 2 (topic or broker
# setting), unclean leader election off. Writes topics.txt and the summary line to the metadata.
check_topics() {
  local out rf_bad isr_bad unclean
  out=$RAW/topics.txt
  java -cp "$CIRC_KAFKA_HOME/libs/*" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$CIRC_KAFKA_BOOTSTRAP" --describe --exclude-internal >"$out" 2>>"$RAW/provision.log"
  rf_bad=$(grep -c 'PartitionCount' "$out" || true)
  rf_bad=$((rf_bad - $(grep 'PartitionCount' "$out" | grep -c 'ReplicationFactor: 3' || true)))
  isr_bad=$(grep 'PartitionCount' "$out" | grep -vc 'min.insync.replicas=2' || true)
  unclean=$(java -cp "$CIRC_KAFKA_HOME/libs/*" kafka.admin.ConfigCommand --bootstrap-server "$CIRC_KAFKA_BOOTSTRAP" \
    --entity-type brokers --entity-name 1 --describe --all 2>>"$RAW/provision.log" |
    sed -n 's/^ *unclean.leader.election.enable=\([a-z]*\).*/\1/p' | head -n 1)
  TOPICS_SUMMARY="$(grep -c PartitionCount "$out") topics: replication factor 3 on all but $rf_bad, min.insync.replicas=2 on all but $isr_bad; broker unclean.leader.election.enable=${unclean:-unknown}"
  say "$TOPICS_SUMMARY"
  if ((rf_bad > 0 || isr_bad > 0)) || [[ $unclean != false ]] || grep -q 'unclean.leader.election.enable=true' "$out"; then
    die "the chaos stack's topics are not as the suite needs (see $out)"
  fi
}
