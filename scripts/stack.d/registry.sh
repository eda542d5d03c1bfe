# shellcheck shell=bash
# Apicurio Registry 3.x, in-memory storage (its default: H2 in memory, no auth), serving the
# Confluent-compatible API at /apis/ccompat/v7. In-memory means every restart starts empty.

registry_start() {
  svc_pid registry >/dev/null && return 0
  ensure_port_free "$REGISTRY_PORT" "Apicurio Registry (CIRC_REGISTRY_PORT)"
  ensure_port_free "$REGISTRY_MGMT_PORT" "Apicurio Registry management (CIRC_REGISTRY_MGMT_PORT)"
  mkdir -p "$STATE_DIR/registry"
  local runner extra=()
  runner=$APICURIO_HOME/$(<"$APICURIO_HOME/.runner")
  # Extra -D options, e.g. CIRC_REGISTRY_JAVA_OPTS=-Dapicurio.ccompat.use-canonical-hash=true
  read -r -a extra <<<"${CIRC_REGISTRY_JAVA_OPTS:-}"
  # -Dcirc.stack.registry marks the process as ours. Access logging is off because it writes a line per
  # request (load tests); the log format fixes the upstream date pattern.
  start_bg registry "$STATE_DIR/registry" "-Dcirc.stack.registry=$STATE_DIR" "$REGISTRY_PORT,$REGISTRY_MGMT_PORT" \
    "$REGISTRY_JAVA" "-Xmx${CIRC_REGISTRY_HEAP:-384m}" -XX:+ExitOnOutOfMemoryError \
    "-Dcirc.stack.registry=$STATE_DIR" \
    -Dquarkus.http.host=127.0.0.1 "-Dquarkus.http.port=$REGISTRY_PORT" \
    -Dquarkus.management.host=127.0.0.1 "-Dquarkus.management.port=$REGISTRY_MGMT_PORT" \
    -Dquarkus.http.access-log.enabled=false \
    '-Dquarkus.log.console.format=%d{yyyy-MM-dd HH:mm:ss,SSS} %-5p [%c{3.}] (%t) %s%e%n' \
    "-Dapicurio.storage.snapshot.location=$STATE_DIR/registry" \
    "-Dapicurio.import.work-dir=$STATE_DIR/registry" \
    "-Djava.io.tmpdir=$STATE_DIR/registry" \
    "${extra[@]}" -jar "$runner"
}

registry_ready() {
  [[ $(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 3 "$REGISTRY_URL/subjects" || true) == 200 ]]
}

# Smoke test: register a schema, read it back by the returned id, set a subject's compatibility, then
# delete the subject (soft, then permanently).
registry_check() {
  local subject=circ-stack-check-value ct='Content-Type: application/vnd.schemaregistry.v1+json' resp id back cfg
  local schema='{"type":"record","name":"Check","namespace":"circulatory.stack","fields":[{"name":"id","type":"string"}]}'
  local body
  body=$(printf '{"schema":"%s"}' "${schema//\"/\\\"}")
  local c=(curl --noproxy '*' -sS --max-time 10)
  resp=$("${c[@]}" -X POST -H "$ct" --data "$body" "$REGISTRY_URL/subjects/$subject/versions" 2>&1 || true)
  if [[ ! $resp =~ \"id\":([0-9]+) ]]; then
    log "registry: FAILED to register a schema: $resp"
    return 1
  fi
  id=${BASH_REMATCH[1]}
  back=$("${c[@]}" "$REGISTRY_URL/schemas/ids/$id" 2>&1 || true)
  cfg=$("${c[@]}" -X PUT -H "$ct" --data '{"compatibility":"FULL_TRANSITIVE"}' "$REGISTRY_URL/config/$subject" 2>&1 || true)
  "${c[@]}" -X DELETE "$REGISTRY_URL/subjects/$subject" >/dev/null 2>&1 || true
  "${c[@]}" -X DELETE "$REGISTRY_URL/subjects/$subject?permanent=true" >/dev/null 2>&1 || true
  if [[ $back != *'circulatory.stack'* || $cfg != *FULL_TRANSITIVE* ]]; then
    log "registry: FAILED (GET /schemas/ids/$id: $back; PUT /config: $cfg)"
    return 1
  fi
  log "registry: ok (schema id $id registered and read back, subject compatibility set)"
}
