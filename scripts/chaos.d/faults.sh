# shellcheck shell=bash
# The faults of scripts/chaos. Each writes its timeline to $RUN/marks (`mark NAME NOTE`): `fault`
# when it strikes, `restart` when the victim is started again, `back` when it answers again, plus
# steps of its own. `chaos verify` measures recovery from these marks.

mark() {
  printf '%s %s %s\n' "$(date +%s%3N)" "$1" "${2:-}" >>"$RUN/marks"
  say "  $1${2:+: $2}"
}

kafka_tool() { java -cp "$CIRC_KAFKA_HOME/libs/*" "$@"; }
broker_pid() { head -n 1 "$CHAOS_DIR/run/kafka-$1.pid"; }
service_pid() { head -n 1 "$CHAOS_DIR/run/$1.pid"; }

quorum_leader() {
  kafka_tool org.apache.kafka.tools.MetadataQuorumCommand --bootstrap-server "$CIRC_KAFKA_BOOTSTRAP" \
    describe --status 2>>"$RUN/tools.log" | awk '/^LeaderId:/ {print $2; exit}'
}

# partition_leader TOPIC PARTITION: the node id leading it.
partition_leader() {
  kcat -b "$CIRC_KAFKA_BOOTSTRAP" -L -t "$1" -m 10 2>>"$RUN/tools.log" |
    sed -n "s/^ *partition $2, leader \([0-9-]*\),.*/\1/p"
}

# A broker that leads a payments partition and is not the quorum leader (if any is).
leader_not_controller() {
  local quorum=$1 p n first=""
  for p in 0 1 2 3 4 5; do
    n=$(partition_leader payments.critical "$p")
    [[ -n $n ]] || continue
    first=${first:-$n:$p}
    if [[ $n != "$quorum" ]]; then
      echo "$n:$p"
      return
    fi
  done
  echo "$first"
}

restart_brokers() {
  "$STACK" up --brokers 3 >>"$RUN/stack.log" 2>&1 || { tail -n 20 "$RUN/stack.log" >&2; die "restarting the broker failed"; }
}

# kill -9 of broker N, restart after BROKER_DOWN_SECS.
kill_broker() {
  local node=$1 why=$2
  kill -KILL "$(broker_pid "$node")"
  mark fault "kill -9 broker $node ($why)"
  sleep "$BROKER_DOWN_SECS"
  mark restart "broker $node"
  restart_brokers
  mark back "broker $node in the cluster"
}

# The victims are chosen before the load starts (Kafka's tools take seconds to start), so the
# fault strikes on time: VICTIM (a node id) and WHY.
VICTIM='' WHY=''

prepare_leader_kill() {
  local quorum pick
  quorum=$(quorum_leader)
  pick=$(leader_not_controller "$quorum")
  [[ -n $pick ]] || die "no leader found for payments.critical"
  VICTIM=${pick%%:*}
  WHY="leader of payments.critical/${pick#*:}; quorum leader is $quorum"
}

prepare_controller_kill() {
  VICTIM=$(quorum_leader)
  [[ -n $VICTIM ]] || die "no KRaft quorum leader found"
  WHY="the KRaft quorum leader"
}

prepare_broker_restart() {
  VICTIM=$(partition_leader payments.critical 0)
  [[ -n $VICTIM ]] || die "no leader found for payments.critical/0"
  WHY="leader of payments.critical/0"
}

# No under-replicated partition left (up to 120 s).
wait_isr_complete() {
  local deadline=$((SECONDS + 120)) out
  while ((SECONDS < deadline)); do
    out=$(kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$CIRC_KAFKA_BOOTSTRAP" \
      --describe --under-replicated-partitions 2>>"$RUN/tools.log") || out=error
    [[ -z $out ]] && return 0
    sleep 1
  done
  return 1
}

# Clean stop (controlled shutdown moves its leaderships away), restart, then the preferred-leader
# election hands the leaderships back: the routine of a rolling restart.
fault_broker_restart_election() {
  local node=$VICTIM pid deadline
  pid=$(broker_pid "$node")
  kill -TERM "$pid"
  mark fault "clean stop (SIGTERM) of broker $node, $WHY"
  deadline=$((SECONDS + 90))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && die "broker $node did not stop within 90 s"
  mark stopped "broker $node exited"
  mark restart "broker $node"
  restart_brokers
  mark back "broker $node in the cluster"
  wait_isr_complete || say "warning: partitions still under-replicated after 120 s"
  mark isr "no under-replicated partition"
  kafka_tool org.apache.kafka.tools.LeaderElectionCommand --bootstrap-server "$CIRC_KAFKA_BOOTSTRAP" \
    --election-type PREFERRED --all-topic-partitions >>"$RUN/tools.log" 2>&1 || true
  mark election "preferred-leader election, all partitions"
}

# kill -9 of a group, restarted after CONSUMER_DOWN_SECS with the same instance id.
fault_consumer_kill() {
  local group=$1 pid
  pid=$(chaos_svc_pid "$group") || die "$group is not running"
  kill -KILL "$pid"
  mark fault "kill -9 $group (pid $pid)"
  sleep "$CONSUMER_DOWN_SECS"
  start_service "$group"
  mark restart "$group, CIRC_INSTANCE_ID=$group-0"
  wait_service_ready "$group"
  mark back "$group /readyz"
}

redis_keys() { redis-cli -h 127.0.0.1 -p "$CIRC_REDIS_PORT" dbsize 2>/dev/null || echo '?'; }

fault_redis_kill() {
  local before after
  before=$(redis_keys)
  kill -KILL "$(service_pid redis)"
  mark fault "kill -9 redis ($before keys)"
  sleep "$REDIS_DOWN_SECS"
  mark restart "redis"
  "$STACK" start redis >>"$RUN/stack.log" 2>&1 || die "restarting Redis failed (see $RUN/stack.log)"
  after=$(redis_keys)
  mark back "redis ($after keys right after the restart, from its AOF)"
}

fault_postgres_immediate() {
  local data as_user=()
  data=$(sed -n 2p "$CHAOS_DIR/run/postgres.pid")
  if ((EUID == 0)); then as_user=(setpriv --reuid=postgres --regid=postgres --init-groups --); fi
  (cd / && "${as_user[@]}" "$PG_BIN_DIR/pg_ctl" stop -D "$data" -m immediate) \
    >>"$RUN/tools.log" 2>&1 || die "pg_ctl stop -m immediate failed (see $RUN/tools.log)"
  mark fault "pg_ctl stop -m immediate"
  sleep "$PG_DOWN_SECS"
  mark restart "postgres"
  "$STACK" start postgres >>"$RUN/stack.log" 2>&1 || die "starting PostgreSQL failed (see $RUN/stack.log)"
  mark back "postgres accepts connections"
}

# prepare FAULT: what must be known before the load starts.
prepare() {
  VICTIM='' WHY=''
  case $1 in
    leader-kill) prepare_leader_kill ;;
    controller-kill) prepare_controller_kill ;;
    broker-restart-election) prepare_broker_restart ;;
  esac
}

# inject FAULT: the fault of that name.
inject() {
  case $1 in
    baseline) mark fault "none: the same load without a fault" ;;
    leader-kill | controller-kill) kill_broker "$VICTIM" "$WHY" ;;
    broker-restart-election) fault_broker_restart_election ;;
    consumer-kill-user-lifecycle) fault_consumer_kill user-lifecycle ;;
    consumer-kill-payments) fault_consumer_kill payments ;;
    redis-kill) fault_redis_kill ;;
    postgres-immediate) fault_postgres_immediate ;;
    *) die "unknown fault $1" ;;
  esac
}

# What "time to recover" means for FAULT (chaos verify --recovery).
recovery_kind() {
  case $1 in
    consumer-kill-*) echo "group:${1#consumer-kill-}" ;;
    postgres-immediate) echo postgres ;;
    *) echo ingest ;;
  esac
}
