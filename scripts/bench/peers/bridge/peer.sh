# shellcheck shell=bash
# The Kafka HTTP bridge peer (sourced by scripts/bench/peers/run): its jars, its config file, the
# process. Needs lib.sh and the stack's environment (CIRC_KAFKA_BOOTSTRAP).
#
#   BENCH_BRIDGE_VERSION=0.33.1   io.strimzi:kafka-bridge version resolved from Maven Central
#   BENCH_BRIDGE_HOME=            a folder holding the bridge's jars (libs/ or lib/ of an unpacked
#                                 release archive or of a build): used instead of Maven Central
#   BENCH_BRIDGE_JAVA=java        the java that runs it (1.x releases need Java 21 or later)

BRIDGE_VERSION=${BENCH_BRIDGE_VERSION:-0.33.1}
BRIDGE_JAVA=${BENCH_BRIDGE_JAVA:-java}
BRIDGE_MAIN=io.strimzi.kafka.bridge.Application

# bridge_pom DIR: a throwaway pom whose only dependency is the bridge, for dependency:copy-dependencies.
bridge_pom() {
  cat >"$1/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>circulatory.bench</groupId>
  <artifactId>bridge-jars</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>io.strimzi</groupId>
      <artifactId>kafka-bridge</artifactId>
      <version>$BRIDGE_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
}

# install_bridge: sets BRIDGE_LIB (a folder of jars) or, when there are none, BRIDGE_MISSING (why;
# the commands and errors are in $RAW/bridge-install.log).
# shellcheck disable=SC2034 # BRIDGE_MISSING is read by the caller
install_bridge() {
  local dir=$PEERS_CACHE/kafka-bridge-$BRIDGE_VERSION sub
  BRIDGE_LIB='' BRIDGE_MISSING=''
  if [[ -n ${BENCH_BRIDGE_HOME:-} ]]; then
    for sub in libs lib .; do
      if compgen -G "$BENCH_BRIDGE_HOME/$sub/*kafka-bridge-*.jar" >/dev/null; then
        BRIDGE_LIB=$(cd "$BENCH_BRIDGE_HOME/$sub" && pwd -P)
        return 0
      fi
    done
    BRIDGE_MISSING="no *kafka-bridge-*.jar under BENCH_BRIDGE_HOME=$BENCH_BRIDGE_HOME"
    return 0
  fi
  if compgen -G "$dir/lib/kafka-bridge-$BRIDGE_VERSION.jar" >/dev/null; then
    BRIDGE_LIB=$dir/lib
    return 0
  fi
  mkdir -p "$dir"
  bridge_pom "$dir"
  local argv=(mvn -B -U -f "$dir/pom.xml" dependency:copy-dependencies -DincludeScope=runtime
    "-DoutputDirectory=$dir/lib")
  note "the bridge's jars from Maven Central"
  show "${argv[@]}"
  say "resolving io.strimzi:kafka-bridge:$BRIDGE_VERSION from Maven Central"
  if "${argv[@]}" >"$RAW/bridge-install.log" 2>&1 && [[ -f $dir/lib/kafka-bridge-$BRIDGE_VERSION.jar ]]; then
    BRIDGE_LIB=$dir/lib
  else
    rm -rf "${dir:?}/lib"
    BRIDGE_MISSING="io.strimzi:kafka-bridge:$BRIDGE_VERSION could not be resolved from Maven Central: \
$(grep -m 1 -o 'Could not find artifact [^ ]*' "$RAW/bridge-install.log" || echo 'see bridge-install.log');\
 set BENCH_BRIDGE_HOME to an unpacked release archive (its libs/)"
  fi
}

bridge_version() {
  local jar
  jar=$(compgen -G "$BRIDGE_LIB/*kafka-bridge-*.jar" | head -n 1)
  jar=${jar##*kafka-bridge-}
  echo "${jar%.jar}"
}

# bridge_config FILE PORT MANAGEMENT_PORT: the bridge's settings, its producer set like the ingest's
# (acks=all, idempotence, zstd: services/runtime/src/kafka.rs; linger.ms: LINGER_MS); no consumer side.
bridge_config() {
  cat >"$1" <<EOF
bridge.id=circulatory-peers
kafka.bootstrap.servers=$CIRC_KAFKA_BOOTSTRAP
kafka.producer.acks=all
kafka.producer.enable.idempotence=true
kafka.producer.compression.type=zstd
kafka.producer.linger.ms=$LINGER_MS
http.host=127.0.0.1
http.port=$2
http.management.port=$3
http.consumer.enabled=false
http.producer.enabled=true
http.cors.enabled=false
EOF
}

# bridge_logging FILE: warnings and errors only, on stdout: without a configuration the bridge logs a
# line per request at INFO, which the ingest does not.
bridge_logging() {
  cat >"$1" <<EOF
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = %d{ISO8601} %p [%t] %c{1}: %m%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
EOF
}

# start_bridge: the bridge on free ports (BRIDGE_PORT, BRIDGE_PID, added to PIDS), from its jars.
start_bridge() {
  local conf=$RAW/bridge.properties logging=$RAW/bridge-log4j2.properties mport argv
  BRIDGE_PORT=$(free_port)
  mport=$(free_port)
  bridge_config "$conf" "$BRIDGE_PORT" "$mport"
  bridge_logging "$logging"
  argv=("$BRIDGE_JAVA" -Xmx1g "-Dlog4j2.configurationFile=file:$logging" -cp "$BRIDGE_LIB/*" "$BRIDGE_MAIN"
    --config-file "$conf")
  SHOW_SUFFIX=' &' show "${argv[@]}"
  "${argv[@]}" >"$RAW/bridge.log" 2>&1 &
  BRIDGE_PID=$!
  PIDS+=("$BRIDGE_PID")
  wait_http "http://127.0.0.1:$BRIDGE_PORT/" "$BRIDGE_PID" "$RAW/bridge.log"
}
