# Shell functions shared by the benchmark scripts (bench/http/run.sh, bench/auth/run.sh,
# bench/start_latency.sh); sourced, never run. The scripts start servers and load generators
# of their own, so what they share is how those are started, measured and always stopped.
#
# A script defines usage() and sources this first; it may then set BENCH_NAME (the prefix of
# its error lines; default: its file name). Globals: REPO (the repository), WORK (set by
# make_work), PIDS (the processes to stop on exit), LOAD_PID (the load generator in progress),
# KEEP and WORKBASE (the common options); with rounds_defaults, ROUNDS, DURATION, WARMUP, ONLY,
# THREADS and CONNS.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=$(basename "$0")
WORKBASE=""
KEEP=0

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
loud() {
  printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  printf '!!! %s\n' "$@" >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
}
bad_usage() { echo "$BENCH_NAME: $*" >&2; exit 2; }

# ---- Options. ----

# parse_common_option "$@": the options every script takes (-h/--help, --workdir, --keep);
# sets OPTION_WORDS to how many words it used. An unknown option exits 2. Called from the
# script's own option loop, for what that loop does not know, as
#   *) parse_common_option "$@"; shift "$OPTION_WORDS"; continue ;;
OPTION_WORDS=1
parse_common_option() {
  OPTION_WORDS=1
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --workdir) WORKBASE=${2:?}; OPTION_WORDS=2 ;;
    --keep) KEEP=1 ;;
    *) bad_usage "unknown option $1 (see --help)" ;;
  esac
}

# The defaults of the scripts that measure in rounds of a test list, each round against wrk:
# 3 rounds of 10 s after a 1 s warm-up, wrk with 2 threads and 64 connections, every test.
rounds_defaults() {
  ROUNDS=3
  DURATION=10
  WARMUP=1
  THREADS=2
  CONNS=64
  ONLY=()
}

# parse_rounds_option "$@": parse_common_option, and the options of the scripts that measure
# in rounds (--quick, --rounds, --duration, --only, --threads, --connections).
parse_rounds_option() {
  OPTION_WORDS=2
  case "$1" in
    --quick) ROUNDS=1; DURATION=2; OPTION_WORDS=1 ;;
    --rounds) ROUNDS=${2:?} ;;
    --duration) DURATION=${2:?} ;;
    --only) ONLY+=("${2:?}") ;;
    --threads) THREADS=${2:?} ;;
    --connections) CONNS=${2:?} ;;
    *) parse_common_option "$@" ;;
  esac
}

# require_positive N...: exits 2 unless each N is a positive whole number.
require_positive() {
  local n
  for n in "$@"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || bad_usage "$n is not a positive whole number"
  done
}

# select_tests TEST...: TESTS, the given tests (in that order) that --only named, or all of
# them without --only; an --only that names none of them exits 2.
select_tests() {
  local all=("$@") o t
  for o in "${ONLY[@]}"; do
    [[ " ${all[*]} " == *" $o "* ]] || bad_usage "unknown test $o"
  done
  if [[ ${#ONLY[@]} -eq 0 ]]; then
    TESTS=("${all[@]}")
    return
  fi
  TESTS=()
  for t in "${all[@]}"; do
    for o in "${ONLY[@]}"; do [[ $o == "$t" ]] && TESTS+=("$t") && break; done
  done
}
wants() { [[ " ${TESTS[*]} " == *" $1 "* ]]; }

# require_tools HINT TOOL...: exits 2, naming what is missing and HINT, unless every TOOL is on
# the PATH or in /usr/sbin (where Debian puts nginx, outside a normal user's PATH).
require_tools() {
  local hint=$1 tool missing=()
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || [[ -x /usr/sbin/$tool ]] || missing+=("$tool")
  done
  [[ ${#missing[@]} -eq 0 ]] || bad_usage "missing ${missing[*]}; $hint"
}

# ---- Work directory, processes, cleanup. ----

fs_type() { df -PT "$1" | awk 'NR==2 {print $2}'; }

# make_work NAME DEFAULT_BASE: WORK, a new directory under WORKBASE (default DEFAULT_BASE, or
# /var/tmp when that is tmpfs: the benchmarks fsync, and fsync must be real).
make_work() {
  if [[ -z $WORKBASE ]]; then
    WORKBASE=$2
    if [[ $(fs_type "$WORKBASE") == tmpfs ]]; then WORKBASE=/var/tmp; fi
  fi
  WORK=$(mktemp -d "$WORKBASE/$1.XXXXXX")
  chmod 755 "$WORK"  # nginx's worker runs as another user when started by root.
}

PIDS=()      # Processes this script started, in order.
LOAD_PID=""  # The load generator in progress (see run_bounded).

# wait_stopped pid [name]: waits up to 15 s for a signalled pid to exit, then SIGKILLs it.
wait_stopped() {
  local pid=$1 i
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "${2:-process} $pid did not stop within 15 s of SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

stop_pid() {  # pid [name]: SIGTERM, wait_stopped, and forget it.
  local pid=$1 keep=() p
  kill -TERM "$pid" 2>/dev/null && wait_stopped "$@"
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [[ $p != "$pid" ]] && keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# On exit: the load generator, then every process still running, signalled last-started first
# (agents before the cloisterd whose graceful shutdown answers their long-polls) and all at
# once, so that their shutdowns overlap; then the work directory, unless --keep.
cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  if [[ -n $LOAD_PID ]]; then
    kill -TERM "$LOAD_PID" 2>/dev/null || true
    wait "$LOAD_PID" 2>/dev/null || true
  fi
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait_stopped "$pid"; done
  if [[ $KEEP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap_cleanup() {
  trap cleanup EXIT
  trap 'log "interrupted"; exit 130' INT
  trap 'log "terminated"; exit 143' TERM
}

free_port() {  # A loopback port nobody uses now (the server's bind is the real check: retry).
  local p i
  for ((i = 0; i < 100; i++)); do
    p=$((20000 + RANDOM % 40000))
    if ! ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null | grep -q .; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# run_bounded seconds outfile command...: runs a load generator in the background (so that the
# cleanup trap can stop it), bounded by timeout; returns its exit status. Not to be called in
# $(...): LOAD_PID must reach the trap.
run_bounded() {
  local secs=$1 out=$2 rc=0
  shift 2
  timeout -k 5 "$secs" "$@" >"$out" 2>"$out.err" &
  LOAD_PID=$!
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=""
  return "$rc"
}

# ---- cloisterd. ----

# launch_cloisterd BINARY DIR [VAR=value...] [-- ARG...]: starts cloisterd with its data in
# DIR/data, on ephemeral loopback ports (the ready file says which), with the environment
# and extra arguments given; waits up to 30 s for it to be ready. Sets STARTED_PID and
# STARTED_PORT; returns 1 (after logging the end of its stderr and stopping it) when it exits
# or is not ready in time.
STARTED_PID="" STARTED_PORT=""
launch_cloisterd() {
  local bin=$1 dir=$2 env=() args=()
  shift 2
  while [[ $# -gt 0 && $1 != -- ]]; do env+=("$1"); shift; done
  [[ $# -gt 0 ]] && shift
  args=("$@")
  mkdir -p "$dir"
  env "${env[@]}" "$bin" --data "$dir/data" --listen-addr 127.0.0.1:0 \
    --registry-listen-address 127.0.0.1:0 --access-log=false --log-level warn \
    --ready-file "$dir/ready" "${args[@]}" >"$dir/stdout.log" 2>"$dir/stderr.log" &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  local deadline=$((SECONDS + 30))
  # The ready file is complete once it names the controller's port.
  while [[ ! -s $dir/ready ]] || ! grep -q '^controller=' "$dir/ready"; do
    if ! kill -0 "$STARTED_PID" 2>/dev/null || ((SECONDS > deadline)); then
      log "cloisterd ($dir) did not start:"
      tail -5 "$dir/stderr.log" >&2
      stop_pid "$STARTED_PID" cloisterd
      return 1
    fi
    sleep 0.02
  done
  STARTED_PORT=$(sed -n 's/^controller=//p' "$dir/ready")
}

# ---- nginx, the peer. ----

NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# launch_nginx CONFIGURE READY: starts nginx (prefix $WORK/nginx) and waits for it; up to 5
# attempts, since free_port only guesses. Each attempt runs CONFIGURE (which picks the ports
# and writes $WORK/nginx/nginx.conf), starts nginx, and runs READY (which polls nginx at
# $NGINX_PID, 10 s at most). Sets NGINX_PID; returns 1, after printing nginx's logs, when no
# attempt got ready.
NGINX_PID=""
launch_nginx() {
  mkdir -p "$WORK/nginx/tmp"
  chmod -R a+rX "$WORK/nginx"
  local _
  for _ in 1 2 3 4 5; do
    "$1"
    "$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" \
      >"$WORK/nginx/stdout.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    "$2" && return 0
    stop_pid "$NGINX_PID" nginx
  done
  cat "$WORK/nginx/error.log" "$WORK/nginx/stdout.log" >&2 || true
  return 1
}

# ---- Measurements. ----

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {  # utime + stime of the given pids (the comm field may hold spaces: cut after ')').
  local total=0 p
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] || continue
    total=$((total + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}

# per_op_us BEFORE AFTER OPS: server CPU in microseconds per operation from cpu_ticks figures.
per_op_us() {
  awk -v a="$1" -v b="$2" -v n="${3:-0}" -v hz="$CLK_TCK" \
    'BEGIN {if (n > 0) printf "%.2f", (b - a) / hz * 1e6 / n; else print "nan"}'
}

median() {  # Of the numbers on stdin, separated by spaces or lines; nan when none.
  tr ' ' '\n' | grep . | sort -g |
    awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2];
                         else print (a[NR/2]+a[NR/2+1])/2}'
}
fmt() { awk -v x="$1" 'BEGIN {if (x == "nan") print "nan"; else printf "%.0f", x}'; }
fmt_ratio() { awk -v x="$1" 'BEGIN {if (x == "nan") print "nan"; else printf "%.3f", x}'; }
ratio() { awk -v s="$1" -v p="$2" 'BEGIN {if (p > 0) printf "%.4f", s / p; else print "nan"}'; }
