# shellcheck shell=bash
# The HTTP → Kafka floor (sourced by scripts/bench/peers/run): target/release/bare-produce produces
# each body unchanged with the ingest's producer settings and answers 202 after the ack; what the
# ingest does beyond that (auth, validation, Avro, headers, idempotency, the trace index) is its
# cost. Needs lib.sh and the stack's environment (CIRC_KAFKA_BOOTSTRAP; CIRC_INGEST_LINGER,
# CIRC_INGEST_COMPRESSION and CIRC_INGEST_DELIVERY_TIMEOUT when set apply to both).

BARE_BIN=$ROOT/target/release/bare-produce

# start_bare TOPIC: bare-produce on a free port producing to TOPIC; sets BARE_PORT and BARE_PID,
# adds the pid to PIDS.
start_bare() {
  local argv
  BARE_PORT=$(free_port)
  argv=(env "BARE_PRODUCE_LISTEN=127.0.0.1:$BARE_PORT" "BARE_PRODUCE_TOPIC=$1" "$BARE_BIN")
  SHOW_SUFFIX=' &' show "${argv[@]}"
  "${argv[@]}" >"$RAW/bare.log" 2>&1 &
  BARE_PID=$!
  PIDS+=("$BARE_PID")
  wait_http "http://127.0.0.1:$BARE_PORT/readyz" "$BARE_PID" "$RAW/bare.log"
}
