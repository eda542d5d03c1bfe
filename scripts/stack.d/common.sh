# shellcheck shell=bash
# Helpers for scripts/stack: messages, detached processes and their pid files, ports, readiness polling.

log() { printf '[stack] %s\n' "$*" >&2; }
die() {
  printf '[stack] error: %s\n' "$*" >&2
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# apt-get and chown need root; a non-root developer goes through sudo.
as_root() {
  if ((EUID == 0)); then "$@"; else sudo "$@"; fi
}

pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }
log_file() { printf '%s/%s.log' "$LOG_DIR" "$1"; }

# Write a file only when its content changes, so a repeated `up` leaves everything as it was.
write_if_changed() {
  local file=$1 content=$2
  if [[ -f $file && $(<"$file") == "$content" ]]; then return 0; fi
  printf '%s\n' "$content" >"$file.tmp"
  mv -f "$file.tmp" "$file"
}

# A pid file holds three lines: the pid, a marker that must appear in that process's command line, and the
# ports it serves. The marker keeps a recycled pid from being taken for ours.
svc_pid() {
  local f pid="" marker="" cmdline
  f=$(pid_file "$1")
  [[ -r $f ]] || return 1
  { IFS= read -r pid && IFS= read -r marker; } <"$f" || true
  [[ $pid =~ ^[0-9]+$ && -n $marker && -r /proc/$pid/cmdline ]] || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == *"$marker"* ]] || return 1
  printf '%s\n' "$pid"
}

svc_ports() { sed -n 3p "$(pid_file "$1")" 2>/dev/null || true; }

# Alive and not a zombie (a zombie's command line is empty).
pid_alive() {
  local cmdline
  cmdline=$(tr -d '\0' 2>/dev/null <"/proc/$1/cmdline") || return 1
  [[ -n $cmdline ]]
}

# start_bg NAME CWD MARKER PORTS CMD...: run CMD detached from this script so that it keeps running after
# the script (and its terminal or CI step) ends: its own session (setsid), SIGHUP ignored (nohup), no stdin,
# output appended to .stack/logs/NAME.log, and the lock descriptor closed.
start_bg() {
  local name=$1 cwd=$2 marker=$3 ports=$4
  shift 4
  local logf
  logf=$(log_file "$name")
  printf '\n===== %s scripts/stack: starting %s =====\n' "$(date '+%F %T')" "$name" >>"$logf"
  # A background child of a non-interactive shell is never a process-group leader, so setsid does not fork
  # and $! is the service's own pid once the execs are done.
  (cd "$cwd" && exec setsid nohup "$@" >>"$logf" 2>&1 </dev/null 9>&-) &
  printf '%s\n%s\n%s\n' "$!" "$marker" "$ports" >"$(pid_file "$name")"
  log "started $name (pid $!, log $logf)"
}

# Signal used for a clean stop: PostgreSQL's "fast" shutdown is SIGINT; the others stop cleanly on SIGTERM.
stop_signal() {
  case $1 in
    postgres) echo INT ;;
    *) echo TERM ;;
  esac
}

# stop_services TIMEOUT NAME...: signal all at once (Kafka nodes of one cluster must go down together),
# wait for each, and SIGKILL whatever still runs at the deadline.
stop_services() {
  local timeout=$1
  shift
  local name pid pids=() names=()
  for name in "$@"; do
    if pid=$(svc_pid "$name"); then
      log "stopping $name (pid $pid)"
      kill "-$(stop_signal "$name")" "$pid" 2>/dev/null || true
      pids+=("$pid")
      names+=("$name")
    fi
  done
  local deadline=$((SECONDS + timeout)) i
  for i in "${!pids[@]}"; do
    while pid_alive "${pids[$i]}" && ((SECONDS < deadline)); do sleep 0.2; done
    if pid_alive "${pids[$i]}"; then
      log "warning: ${names[$i]} did not stop within ${timeout}s; killing it"
      kill -KILL "${pids[$i]}" 2>/dev/null || true
    fi
  done
  for name in "$@"; do rm -f "$(pid_file "$name")"; done
}

port_listening() {
  [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
}

# Refuse to start on a port another program listens on, and say which program it is.
ensure_port_free() {
  local port=$1 what=$2 owner
  owner=$(ss -Hltnp "sport = :$port" 2>/dev/null) || owner=""
  [[ -z $owner ]] && return 0
  owner=$(awk '{print $4, $6}' <<<"$owner" | sort -u | paste -sd';')
  die "port $port, needed by $what, is already in use by another program: $owner"
}

# Print the last lines of each named service's log after a failure, then exit non-zero.
fail_with_log() {
  local msg=$1
  shift
  printf '[stack] error: %s\n' "$msg" >&2
  local name logf
  for name in "$@"; do
    logf=$(log_file "$name")
    printf '[stack] last lines of %s:\n' "$logf" >&2
    tail -n 25 "$logf" 2>/dev/null | sed 's/^/    /' >&2 || true
  done
  exit 1
}

# wait_ready WHAT TIMEOUT CHECK SERVICE...: poll the CHECK function every half second until it succeeds.
# Fails at once if one of the services has exited, and at the deadline; either way with the logs' last lines.
wait_ready() {
  local what=$1 timeout=$2 check=$3
  shift 3
  local deadline=$((SECONDS + timeout)) start=$SECONDS name
  until "$check"; do
    for name in "$@"; do
      svc_pid "$name" >/dev/null || fail_with_log "$what: $name exited during startup" "$name"
    done
    ((SECONDS < deadline)) || fail_with_log "$what: not ready after ${timeout}s" "$@"
    sleep 0.5
  done
  log "$what: ready (${SECONDS}s into this run, waited $((SECONDS - start))s)"
}

# Major version of a java binary: "17.0.15" -> 17, "1.8.0_402" -> 8.
java_major() {
  local v
  v=$("$1" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}') || return 1
  v=${v#1.}
  v=${v%%[.+-]*}
  [[ $v =~ ^[0-9]+$ ]] || return 1
  printf '%s\n' "$v"
}

# find_java MIN: a java binary of at least version MIN (JAVA_HOME, then PATH, then the newest under
# /usr/lib/jvm); prints nothing when there is none.
find_java() {
  local min=$1 cand v best="" best_v=0 path_java
  path_java=$(command -v java || true)
  for cand in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} ${path_java:+"$path_java"}; do
    [[ -x $cand ]] || continue
    v=$(java_major "$cand") || continue
    if ((v >= min)); then
      printf '%s\n' "$cand"
      return 0
    fi
  done
  local seen=" "
  for cand in /usr/lib/jvm/*/bin/java; do
    [[ -x $cand ]] || continue
    cand=$(readlink -f "$cand")
    [[ $seen == *" $cand "* ]] && continue
    seen+="$cand "
    v=$(java_major "$cand") || continue
    if ((v >= min && v > best_v)); then
      best=$cand
      best_v=$v
    fi
  done
  if [[ -n $best ]]; then printf '%s\n' "$best"; fi
}
