#!/usr/bin/env bash
# Side-by-side HTTP benchmark of cloisterd against nginx and etcd. See bench/http/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bench/http/run.sh [options]

Measures cloisterd against a peer started by this script, alternating subject and peer in
rounds, and prints per-round figures, per-subject medians and the median of per-round ratios:

  status     GET /api/v1/status, keep-alive          vs nginx (1 worker) serving the same bytes
  https      the same over HTTPS keep-alive          vs nginx HTTPS, same certificate
  newtls     new TLS connections/s (Connection: close, full handshakes) vs nginx, same certificate
  mutations  durable PUT /api/v1/config {"description":...} vs etcd puts (POST /v3/kv/put)

Options:
  --quick              1 round x 2 s per measurement (default: 3 rounds x 10 s; either way
                       each server first gets a 1 s warm-up that is not counted)
  --rounds N           rounds (default 3)
  --duration S         seconds per measurement (default 10)
  --only TEST          run one test: status, https, newtls or mutations (repeatable)
  --cloisterd PATH     cloisterd binary (default: build it, see below)
  --cloister PATH      cloister tool, to count events after the mutation runs
                       (default: next to cloisterd in the same bazel-bin)
  --threads N          wrk threads (default 2)
  --connections N      wrk connections (default 64)
  --workdir DIR        where the temporary directory goes (default: $TMPDIR or /tmp; not tmpfs)
  --keep               keep the temporary directory (logs, data dirs, wrk outputs)
  -h, --help           this help

Without --cloisterd (or $CLOISTERD), the script runs, in the repository,
  $BAZEL build -c opt --symlink_prefix=/ //api/cloisterd:cloisterd //tools:cloister
and takes the binaries from `$BAZEL info -c opt bazel-bin` (the bazel-* links are left alone).
BAZEL defaults to "bazel"; BAZEL="bazel --output_base=$HOME/.cache/bazel-bench" builds in a
separate output base, leaving the workspace's server and analysis cache alone.

Needs wrk, nginx, etcd, etcdctl, openssl, curl (bench/http/setup.sh installs them on Debian).
Besides requests/s, each run reports the server's CPU time (user + system, all threads, from
/proc) per request or connection: a figure the shared machine's noise disturbs much less.

Exit status: 0 all measurements valid; 1 some measurement invalid (errors, non-2xx, rejected
mutations, or events/puts that did not land); 2 bad arguments or a missing tool.
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/../lib.sh"

rounds_defaults
CLOISTERD_BIN=${CLOISTERD:-}
CLOISTER_BIN=${CLOISTER:-}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --cloisterd) CLOISTERD_BIN=${2:?}; shift ;;
    --cloister) CLOISTER_BIN=${2:?}; shift ;;
    *) parse_rounds_option "$@"; shift "$OPTION_WORDS"; continue ;;
  esac
  shift
done

require_positive "$ROUNDS" "$DURATION" "$THREADS" "$CONNS"
select_tests status https newtls mutations

# ---- Tools. ----

need=(wrk curl)
if wants status || wants https || wants newtls; then need+=(nginx openssl); fi
if wants mutations; then need+=(etcd etcdctl); fi
require_tools "run bench/http/setup.sh (Debian) first" "${need[@]}"

if [[ -z $CLOISTERD_BIN ]]; then
  read -r -a BAZEL_CMD <<<"${BAZEL:-bazel}"
  log "building cloisterd and cloister with: ${BAZEL_CMD[*]} build -c opt"
  # --symlink_prefix=/: the workspace's bazel-* links keep pointing where they did.
  (cd "$REPO" && "${BAZEL_CMD[@]}" build -c opt --symlink_prefix=/ //api/cloisterd:cloisterd \
     //tools:cloister) >&2
  BIN_DIR=$(cd "$REPO" && "${BAZEL_CMD[@]}" info -c opt bazel-bin 2>/dev/null)
  CLOISTERD_BIN=$BIN_DIR/api/cloisterd/cloisterd
  CLOISTER_BIN=${CLOISTER_BIN:-$BIN_DIR/tools/cloister}
fi
if [[ -z $CLOISTER_BIN ]]; then
  CLOISTER_BIN=$(dirname "$CLOISTERD_BIN")/../../tools/cloister
fi
[[ -x $CLOISTERD_BIN ]] || { echo "run.sh: no cloisterd at $CLOISTERD_BIN" >&2; exit 2; }
if wants mutations && [[ ! -x $CLOISTER_BIN ]]; then
  echo "run.sh: no cloister tool at $CLOISTER_BIN (needed to count events; --cloister PATH)" >&2
  exit 2
fi
CLOISTERD_BIN=$(readlink -f "$CLOISTERD_BIN")
[[ -x $CLOISTER_BIN ]] && CLOISTER_BIN=$(readlink -f "$CLOISTER_BIN")

# ---- Work directory, processes, cleanup. ----

make_work cloister-httpbench "${TMPDIR:-/tmp}"
WORK_FS=$(fs_type "$WORK")
trap_cleanup

wait_http() {  # url pid seconds: until the url answers at all, while pid lives.
  local url=$1 pid=$2 deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || return 1
    curl -sk -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.1
  done
  return 1
}

# ---- Servers. ----

CERT=$WORK/tls/cert.pem
KEY=$WORK/tls/key.pem
CIPHERSUITES="TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

make_cert() {
  [[ -f $CERT ]] && return 0
  mkdir -p "$WORK/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$KEY" -out "$CERT" >/dev/null 2>&1
  chmod 644 "$KEY"  # Throwaway key; nginx's master reads it, cloisterd too.
}

CLOISTERD_PID="" CLOISTERD_PORT="" CLOISTERD_DATA=""
start_cloisterd() {  # name [https]
  local dir=$WORK/cloisterd-$1 args=()
  CLOISTERD_DATA=$dir/data
  if [[ ${2:-} == https ]]; then
    make_cert
    args+=(--use-https --server-cert "$CERT" --server-key "$KEY")
  fi
  launch_cloisterd "$CLOISTERD_BIN" "$dir" -- "${args[@]}" || exit 1
  CLOISTERD_PID=$STARTED_PID CLOISTERD_PORT=$STARTED_PORT
  log "cloisterd pid $CLOISTERD_PID on 127.0.0.1:$CLOISTERD_PORT (${2:-http}), data $CLOISTERD_DATA"
}

NGINX_HTTP_PORT="" NGINX_HTTPS_PORT=""
nginx_configure() {
  NGINX_HTTP_PORT=$(free_port)
  NGINX_HTTPS_PORT=$(free_port)
  sed -e "s|@WORK@|$WORK|g" -e "s|@HTTP_PORT@|$NGINX_HTTP_PORT|g" \
      -e "s|@HTTPS_PORT@|$NGINX_HTTPS_PORT|g" -e "s|@CERT@|$CERT|g" -e "s|@KEY@|$KEY|g" \
      -e "s|@CIPHERSUITES@|$CIPHERSUITES|g" "$HERE/nginx.conf.in" >"$WORK/nginx/nginx.conf"
}
nginx_ready() {
  wait_http "http://127.0.0.1:$NGINX_HTTP_PORT/" "$NGINX_PID" 10 &&
    wait_http "https://127.0.0.1:$NGINX_HTTPS_PORT/" "$NGINX_PID" 10
}
start_nginx() {  # after the status body is in $WORK/nginx/www/api/v1/status
  make_cert
  launch_nginx nginx_configure nginx_ready || { echo "run.sh: nginx did not start" >&2; exit 1; }
  log "nginx pid $NGINX_PID on 127.0.0.1:$NGINX_HTTP_PORT (http) and :$NGINX_HTTPS_PORT (https)"
}

ETCD_PID="" ETCD_URL="" ETCD_DATA=""
start_etcd() {
  local attempt client peer
  for attempt in 1 2 3 4 5; do
    client=$(free_port)
    peer=$(free_port)
    ETCD_DATA=$WORK/etcd/data
    rm -rf "$WORK/etcd"
    mkdir -p "$WORK/etcd"
    ETCD_URL=http://127.0.0.1:$client
    etcd --name bench --data-dir "$ETCD_DATA" \
      --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
      --listen-peer-urls "http://127.0.0.1:$peer" \
      --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "bench=http://127.0.0.1:$peer" --initial-cluster-state new \
      --logger zap --log-level warn >"$WORK/etcd/stdout.log" 2>"$WORK/etcd/stderr.log" &
    ETCD_PID=$!
    PIDS+=("$ETCD_PID")
    if wait_http "$ETCD_URL/version" "$ETCD_PID" 20; then
      log "etcd pid $ETCD_PID on $ETCD_URL, data $ETCD_DATA"
      return 0
    fi
    stop_pid "$ETCD_PID" etcd
  done
  cat "$WORK/etcd/stderr.log" >&2 || true
  echo "run.sh: etcd did not start" >&2
  exit 1
}

# ---- wrk. ----

# run_wrk outfile seconds url [wrk args...] [-- script args...]: bounded in time; sets RATE
# (Requests/sec). Not to be called in $(...): LOAD_PID must reach the cleanup trap.
RATE=0
CPU_PER_REQ=0   # Server CPU (user + system, all threads) per completed request, microseconds.
SERVER_PIDS=""  # Set by the caller: the processes whose CPU time the run is charged with.
run_wrk() {
  local out=$1 secs=$2 url=$3
  shift 3
  local rc=0 opts=() ticks_before ticks_after requests
  # shellcheck disable=SC2086
  ticks_before=$(cpu_ticks $SERVER_PIDS)
  while [[ $# -gt 0 && $1 != -- ]]; do opts+=("$1"); shift; done
  run_bounded $((secs + 30)) "$out" wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --timeout 5s \
    "${opts[@]}" "$url" "$@" || rc=$?
  # shellcheck disable=SC2086
  ticks_after=$(cpu_ticks $SERVER_PIDS)
  requests=$(awk '/ requests in / {print $1}' "$out")
  CPU_PER_REQ=$(per_op_us "$ticks_before" "$ticks_after" "$requests")
  RATE=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  if [[ $rc -ne 0 || -z $RATE ]]; then
    cat "$out" "$out.err" >&2
    loud "wrk failed (exit $rc) for $url"
    RATE=0
  fi
}

# Problems in a wrk output (socket errors, non-2xx), empty when none.
wrk_problems() {
  local out=$1 p=""
  if grep -q '^  Socket errors' "$out"; then p+="$(grep '^  Socket errors' "$out" | sed 's/^ *//'); "; fi
  if grep -q 'Non-2xx or 3xx' "$out"; then p+="$(grep 'Non-2xx or 3xx' "$out" | sed 's/^ *//'); "; fi
  if ! grep -q '^Requests/sec:' "$out"; then p+="no Requests/sec line; "; fi
  echo "$p"
}

INVALID=()

# ---- Rounds and summary. ----

declare -A SUBJECT_RATES PEER_RATES RATIOS PEER_NAME TARGET UNIT SUBJECT_CPU PEER_CPU


# run_rounds test: calls ${test}_run cloisterd|peer outfile seconds, alternating the order.
run_rounds() {
  local test=$1 r first second side rate s p sc pc
  log "$test: warm-up ${WARMUP}s each"
  "${test}_run" cloisterd "$WORK/wrk-$test-warmup-cloisterd.txt" "$WARMUP" warmup
  "${test}_run" peer "$WORK/wrk-$test-warmup-peer.txt" "$WARMUP" warmup
  for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2 == 1)); then first=cloisterd second=peer; else first=peer second=cloisterd; fi
    s="" p=""
    for side in $first $second; do
      "${test}_run" "$side" "$WORK/wrk-$test-r$r-$side.txt" "$DURATION" "r$r"
      rate=$RATE
      if [[ $side == cloisterd ]]; then s=$rate sc=$CPU_PER_REQ; else p=$rate pc=$CPU_PER_REQ; fi
    done
    SUBJECT_CPU[$test]+="$sc "
    PEER_CPU[$test]+="$pc "
    local ratio
    ratio=$(ratio "$s" "$p")
    SUBJECT_RATES[$test]+="$s "
    PEER_RATES[$test]+="$p "
    RATIOS[$test]+="$ratio "
    printf '%-10s round %d: cloisterd %8s %s (%6s us CPU each)   %-5s %8s %s (%6s us CPU each)   ratio %s\n' \
      "$test" "$r" "$(fmt "$s")" "${UNIT[$test]}" "$sc" "${PEER_NAME[$test]}" "$(fmt "$p")" \
      "${UNIT[$test]}" "$pc" "$(fmt_ratio "$ratio")"
  done
}

# check_wrk test side out: records an invalid measurement when wrk saw errors.
check_wrk() {
  local problems
  problems=$(wrk_problems "$3")
  if [[ -n $problems ]]; then
    INVALID+=("$1/$2 ($(basename "$3")): $problems")
    loud "INVALID: $1 $2: $problems" "(wrk output: $3)"
  fi
}

# ---- Test: status (plain HTTP keep-alive). ----

size_line() {  # label url [curl args]: header+body bytes of one response
  local label=$1 url=$2
  shift 2
  curl -sk -o /dev/null -w "%{size_header} %{size_download}" "$@" "$url" |
    awk -v l="$label" '{printf "  %-10s response %d bytes (head %d + body %d)\n", l, $1 + $2, $1, $2}'
}

prepare_static_body() {  # fetch the status body from the running cloisterd ($1: scheme)
  mkdir -p "$WORK/nginx/www/api/v1"
  curl -sfk "$1://127.0.0.1:$CLOISTERD_PORT/api/v1/status" -o "$WORK/nginx/www/api/v1/status"
}

compare_bodies() {  # "tests" cloisterd_url nginx_url
  local t
  if ! cmp -s <(curl -sk "$2") <(curl -sk "$3"); then
    loud "the nginx body differs from cloisterd's ($2 vs $3)"
    for t in $1; do INVALID+=("$t/bodies differ: $2 vs $3"); done
  fi
}

server_pids() {  # side: SERVER_PIDS for the side's server (nginx: master and workers)
  if [[ $1 == cloisterd ]]; then
    SERVER_PIDS=$CLOISTERD_PID
  elif [[ -n $NGINX_PID ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
    SERVER_PIDS="$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"
  else
    SERVER_PIDS=$ETCD_PID
  fi
}

status_run() {  # side out seconds tag
  local url
  server_pids "$1"
  if [[ $1 == cloisterd ]]; then url=http://127.0.0.1:$CLOISTERD_PORT/api/v1/status
  else url=http://127.0.0.1:$NGINX_HTTP_PORT/api/v1/status; fi
  run_wrk "$2" "$3" "$url"
  [[ $4 == warmup ]] || check_wrk status "$1" "$2"
}

https_run() {
  local url
  server_pids "$1"
  if [[ $1 == cloisterd ]]; then url=https://127.0.0.1:$CLOISTERD_PORT/api/v1/status
  else url=https://127.0.0.1:$NGINX_HTTPS_PORT/api/v1/status; fi
  run_wrk "$2" "$3" "$url"
  [[ $4 == warmup ]] || check_wrk https "$1" "$2"
}

newtls_run() {
  local url
  server_pids "$1"
  if [[ $1 == cloisterd ]]; then url=https://127.0.0.1:$CLOISTERD_PORT/api/v1/status
  else url=https://127.0.0.1:$NGINX_HTTPS_PORT/api/v1/status; fi
  run_wrk "$2" "$3" "$url" -H "Connection: close"
  [[ $4 == warmup ]] || check_wrk newtls "$1" "$2"
}

tls_facts() {  # label port: negotiated protocol, cipher and key exchange; session resumption
  local label=$1 port=$2 info first second proto_cipher kx resumption
  local req='GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
  local sess=$WORK/tls/$label.session
  rm -f "$sess"
  # A whole request, so that a TLS 1.3 server's NewSessionTicket (sent after the handshake) is
  # read before the session is saved. (s_client -reconnect misses TLS 1.3 tickets.)
  info=$(printf "$req" | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
         -servername localhost -sess_out "$sess" -ign_eof 2>/dev/null || true)
  proto_cipher=$(sed -n 's/^New, \([^,]*\), Cipher is \(.*\)/\1 \2/p' <<<"$info" | head -1)
  kx=$(sed -n 's/^Server Temp Key: //p' <<<"$info" | head -1)
  if [[ ! -s $sess ]] || ! grep -q . "$sess"; then
    resumption="no session to resume (no ticket issued)"
  else
    second=$(printf "$req" | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
             -servername localhost -sess_in "$sess" -ign_eof 2>/dev/null || true)
    if grep -q '^Reused,' <<<"$second"; then
      resumption="RESUMED a saved session"
    elif openssl sess_id -in "$sess" -noout -text 2>/dev/null | grep -q 'TLS session ticket'; then
      resumption="a ticket was issued, but offering it gave a full handshake"
    else
      resumption="offering the saved session gave a full handshake"
    fi
  fi
  printf '  %-10s %s, key exchange %s; resumption: %s\n' "$label" "$proto_cipher" "$kx" "$resumption"
  echo "$proto_cipher $kx" >"$WORK/tls-$label.txt"
  if [[ $resumption == RESUMED* ]]; then
    loud "$label resumed a TLS session: new-connection figures would not be full handshakes"
    INVALID+=("newtls/$label resumes TLS sessions")
  fi
}

# ---- Test: mutations. ----

cloisterd_head_seq() {
  "$CLOISTER_BIN" audit verify --data "$CLOISTERD_DATA" | sed -n 's/^ok: head seq \([0-9]*\).*/\1/p'
}

etcd_revision() {
  ETCDCTL_API=3 etcdctl --endpoints "$ETCD_URL" --command-timeout=10s get config/description \
    -w json | grep -o '"revision":[0-9]*' | head -1 | cut -d: -f2
}

mutations_run() {  # side out seconds tag
  local side=$1 out=$2 secs=$3 tag=$4 before after url mode
  if [[ $side == cloisterd ]]; then
    url=http://127.0.0.1:$CLOISTERD_PORT mode=cloisterd before=$(cloisterd_head_seq)
    SERVER_PIDS=$CLOISTERD_PID
  else
    url=$ETCD_URL mode=etcd before=$(etcd_revision)
    SERVER_PIDS=$ETCD_PID
  fi
  run_wrk "$out" "$secs" "$url" -s "$HERE/mutations.lua" -- "$mode" "$tag"
  [[ $tag == warmup ]] && return 0
  sleep 0.5  # Let requests still in flight when wrk stopped commit before counting.
  if [[ $side == cloisterd ]]; then after=$(cloisterd_head_seq); else after=$(etcd_revision); fi
  check_wrk mutations "$side" "$out"
  local line sent ok bad landed
  line=$(grep '^MUTATIONS' "$out" || true)
  sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' <<<"$line")
  ok=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$line")
  bad=$(sed -n 's/.*bad=\([0-9]*\).*/\1/p' <<<"$line")
  landed=$((${after:-0} - ${before:-0}))
  local what=events label=cloisterd
  [[ $side == peer ]] && what="etcd revisions" label=etcd
  printf '  %-9s %s: sent %s, accepted %s, rejected/failed %s; %s %s -> %s (+%s)\n' \
    "$label" "$tag" "${sent:-?}" "${ok:-?}" "${bad:-?}" "$what" "${before:-?}" "${after:-?}" \
    "$landed" >&2
  if [[ -z $line || $bad != 0 || $ok == 0 ]]; then
    INVALID+=("mutations/$side $tag: ${line:-no MUTATIONS line} (see $out.err)")
    loud "INVALID: mutations $side $tag: ${line:-no MUTATIONS line}" "$(head -3 "$out.err" 2>/dev/null)"
  elif ((landed < ok || landed > sent)); then
    INVALID+=("mutations/$side $tag: $landed landed for $ok accepted, $sent sent")
    loud "INVALID: mutations $side $tag: $landed $what landed for $ok accepted responses ($sent sent)"
  fi
}

# ---- Run. ----

cat <<EOF
cloister HTTP benchmark — $(date '+%Y-%m-%d %H:%M %Z')
  tests: ${TESTS[*]}; $ROUNDS round(s) x ${DURATION}s (+${WARMUP}s warm-up each), wrk -t$THREADS -c$CONNS
  machine: nproc=$(nproc), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)
  work dir: $WORK ($WORK_FS)
  cloisterd: $CLOISTERD_BIN ($("$CLOISTERD_BIN" --version 2>&1 | head -1))
  wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(openssl version)
EOF
if [[ $WORK_FS == tmpfs ]]; then
  loud "the work directory is on tmpfs: fsync is free there, the mutation figures mean nothing" \
       "use --workdir on a real disk"
fi
echo

if wants status || wants https || wants newtls; then
  echo "  nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1"
fi

if wants status; then
  PEER_NAME[status]=nginx UNIT[status]="req/s" TARGET[status]=0.90
  echo "== status: GET /api/v1/status, HTTP keep-alive"
  start_cloisterd status
  prepare_static_body http
  start_nginx
  compare_bodies status "http://127.0.0.1:$CLOISTERD_PORT/api/v1/status" \
                 "http://127.0.0.1:$NGINX_HTTP_PORT/api/v1/status"
  size_line cloisterd "http://127.0.0.1:$CLOISTERD_PORT/api/v1/status"
  size_line nginx "http://127.0.0.1:$NGINX_HTTP_PORT/api/v1/status"
  run_rounds status
  stop_pid "$NGINX_PID" nginx
  stop_pid "$CLOISTERD_PID" cloisterd
  echo
fi

if wants https || wants newtls; then
  start_cloisterd https https
  prepare_static_body https
  start_nginx
  echo "== TLS: same certificate (EC P-256, self-signed) on both"
  tls_facts cloisterd "$CLOISTERD_PORT"
  tls_facts nginx "$NGINX_HTTPS_PORT"
  if ! cmp -s "$WORK/tls-cloisterd.txt" "$WORK/tls-nginx.txt"; then
    loud "cloisterd and nginx negotiate different TLS parameters"
    INVALID+=("https/TLS parameters differ" "newtls/TLS parameters differ")
  fi
  compare_bodies "https newtls" "https://127.0.0.1:$CLOISTERD_PORT/api/v1/status" \
                 "https://127.0.0.1:$NGINX_HTTPS_PORT/api/v1/status"
  if wants https; then
    PEER_NAME[https]=nginx UNIT[https]="req/s" TARGET[https]=0.90
    echo "== https: GET /api/v1/status, HTTPS keep-alive"
    size_line cloisterd "https://127.0.0.1:$CLOISTERD_PORT/api/v1/status"
    size_line nginx "https://127.0.0.1:$NGINX_HTTPS_PORT/api/v1/status"
    run_rounds https
    echo
  fi
  if wants newtls; then
    PEER_NAME[newtls]=nginx UNIT[newtls]="conn/s" TARGET[newtls]=0.90
    echo "== newtls: new TLS connections, one GET /api/v1/status each (Connection: close)"
    size_line cloisterd "https://127.0.0.1:$CLOISTERD_PORT/api/v1/status" -H "Connection: close"
    size_line nginx "https://127.0.0.1:$NGINX_HTTPS_PORT/api/v1/status" -H "Connection: close"
    run_rounds newtls
    echo
  fi
  stop_pid "$NGINX_PID" nginx
  stop_pid "$CLOISTERD_PID" cloisterd
fi

if wants mutations; then
  PEER_NAME[mutations]=etcd UNIT[mutations]="mut/s" TARGET[mutations]=10
  echo "== mutations: durable PUT /api/v1/config vs etcd put (POST /v3/kv/put), c=$CONNS"
  start_cloisterd mutations
  start_etcd
  echo "  etcd: $(etcd --version 2>/dev/null | head -1 | sed 's/^etcd Version: //'), gateway $ETCD_URL/v3/kv/put"
  echo "  data dirs: cloisterd $(fs_type "$CLOISTERD_DATA") on $(df -P "$CLOISTERD_DATA" | awk 'NR==2 {print $1}'), etcd $(fs_type "$ETCD_DATA") on $(df -P "$ETCD_DATA" | awk 'NR==2 {print $1}')"
  size_line cloisterd "http://127.0.0.1:$CLOISTERD_PORT/api/v1/config" -X PUT \
    -H 'Content-Type: application/json' --data '{"description":"bench size probe"}'
  size_line etcd "$ETCD_URL/v3/kv/put" -X POST -H 'Content-Type: application/json' \
    --data '{"key":"Y29uZmlnL2Rlc2NyaXB0aW9u","value":"YmVuY2ggc2l6ZSBwcm9iZQ=="}'
  run_rounds mutations
  log "etcd: $(ETCDCTL_API=3 etcdctl --endpoints "$ETCD_URL" endpoint status -w table 2>/dev/null | sed -n 4p)"
  stop_pid "$ETCD_PID" etcd
  stop_pid "$CLOISTERD_PID" cloisterd
  echo
fi

echo "== summary (medians over $ROUNDS round(s) of ${DURATION}s; ratio = median of per-round ratios)"
printf '| %-9s | %14s | %-16s | %7s | %6s | %-7s |\n' test cloisterd peer ratio target result
printf '|%s|%s|%s|%s|%s|%s|\n' ----------- ---------------- ------------------ --------- -------- ---------
for t in "${TESTS[@]}"; do
  s=$(median <<<"${SUBJECT_RATES[$t]}")
  p=$(median <<<"${PEER_RATES[$t]}")
  q=$(median <<<"${RATIOS[$t]}")
  result=$(awk -v q="$q" -v t="${TARGET[$t]}" 'BEGIN {print (q + 0 >= t + 0) ? "met" : "missed"}')
  for bad in "${INVALID[@]}"; do [[ $bad == "$t/"* ]] && result=INVALID; done
  printf '| %-9s | %8s %-5s | %-6s %9s | %7s | >= %-3s | %-7s |\n' "$t" "$(fmt "$s")" \
    "${UNIT[$t]%%/*}/s" "${PEER_NAME[$t]}" "$(fmt "$p")" "$(fmt_ratio "$q")" "${TARGET[$t]}" "$result"
done
echo
echo "Server CPU (user + system, all threads) per request or connection, median, microseconds:"
for t in "${TESTS[@]}"; do
  printf '  %-9s cloisterd %7s   %-5s %7s\n' "$t" "$(median <<<"${SUBJECT_CPU[$t]}")" \
    "${PEER_NAME[$t]}" "$(median <<<"${PEER_CPU[$t]}")"
done
if [[ ${#INVALID[@]} -gt 0 ]]; then
  loud "SOME MEASUREMENTS ARE INVALID:" "${INVALID[@]}"
  exit 1
fi
