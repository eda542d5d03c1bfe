# shellcheck shell=bash
# What the benchmark harnesses share (sourced by scripts/bench/ingest, scripts/bench/consumer/run
# and scripts/bench/peers/run): log lines, the commands file every run writes for its reader, free
# ports, waiting for a server, the machine's load, the ingest's effective settings, the load
# generator's install.
#
# Expects COMMANDS (the commands file) set by the caller; AUTH, when set, is shown as $TOKEN;
# BENCH_TAG names the harness in log lines (default: bench).

OHA_VERSION=1.16.0
TOOLS=${CIRC_CACHE_DIR:-$HOME/.cache/circulatory}/tools
OHA=$TOOLS/bin/oha

say() { printf '[%s %s] %s\n' "${BENCH_TAG:-bench}" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

# show ARG...: the command as a copy-pasteable line (the token as $TOKEN), appended to COMMANDS.
show() {
  local arg out=()
  for arg in "$@"; do
    if [[ -n ${AUTH:-} && $arg == "$AUTH" ]]; then
      # shellcheck disable=SC2016 # literally $TOKEN: the reader sets it
      out+=('"Authorization: Bearer $TOKEN"')
    else
      out+=("$(printf '%q' "$arg")")
    fi
  done
  printf '%s%s\n' "${out[*]}" "${SHOW_SUFFIX:-}" >>"$COMMANDS"
}
note() { printf '\n# %s\n' "$*" >>"$COMMANDS"; }

# run_shown ARG...: show the command, then run it.
run_shown() {
  show "$@"
  "$@"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL PID LOG [SECONDS]: until URL answers 2xx; dies with LOG's tail if PID exits or
# SECONDS (default 90) pass.
wait_http() {
  local url=$1 pid=$2 log=$3 deadline=$((SECONDS + ${4:-90}))
  until curl -fsS "$url" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)) || ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2
      die "$url did not answer"
    fi
    sleep 0.2
  done
}

# machine_ticks: the machine's busy and idle clock ticks so far, all CPUs (/proc/stat).
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat; }

# machine_busy SECONDS: busy percentage of all CPUs over the interval.
machine_busy() {
  local a b
  a=$(machine_ticks)
  sleep "$1"
  b=$(machine_ticks)
  awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); busy = y[1] - x[1];
    idle = y[2] - x[2]; printf "%.0f", ((busy + idle) > 0 ? 100 * busy / (busy + idle) : 0)}'
}

# ingest_setting BIN FLAG ENV FALLBACK: an ingest's effective value of a setting: the environment
# if set, else the default its --help shows, else FALLBACK (a build without the flag).
ingest_setting() {
  local bin=$1 flag=$2 env=$3 fallback=$4 value
  if [[ -n ${!env:-} ]]; then
    echo "${!env}"
    return
  fi
  value=$("$bin" --help | awk -v f="--$flag " 'index($0, f) {found = 1} found && /\[default: / {
    sub(/.*\[default: /, ""); sub(/\].*/, ""); print; exit}')
  echo "${value:-$fallback}"
}

# ms_of DURATION: milliseconds of a duration written like the flags (250ms, 2s, 1m); a bare
# number is taken as milliseconds.
ms_of() {
  case $1 in
    *ms) echo "${1%ms}" ;;
    *s) echo "$((${1%s} * 1000))" ;;
    *m) echo "$((${1%m} * 60000))" ;;
    *) echo "$1" ;;
  esac
}

# ensure_oha: the load generator, installed into the cache with cargo once per version.
ensure_oha() {
  if [[ ! -x $OHA ]] || [[ $("$OHA" --version) != *"$OHA_VERSION"* ]]; then
    say "installing oha $OHA_VERSION into $TOOLS"
    cargo install oha --locked --version "$OHA_VERSION" --root "$TOOLS" --quiet
  fi
}
