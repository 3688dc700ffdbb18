#!/usr/bin/env bash
# Authentication costs of cloisterd: root token and Bearer against no authentication, TAP logins
# per second, and new mTLS connections against nginx. See bench/auth/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bench/auth/run.sh [options]

Starts its own servers on ephemeral loopback ports, with fresh data directories, and prints
per-round figures, medians and ratios against targets:

  getauth  GET /api/v1/status, keep-alive, wrk: cloisterd with authentication on, once with the
           root token (Basic) and once with a TAP session (Bearer), against a cloisterd with
           authentication off (the peer). Rounds alternate the three. Target: each >= 0.90.
  tap      //bench:tap_bench against the auth-on cloisterd: complete TAP logins (hand + shake,
           the client's RSA decryption excluded) per second. Target: >= 10000 logins/s.
  mtls     new TLS connections/s with a client certificate and CRL checking (full handshakes,
           one GET with Connection: close each; //bench:tls_connect_bench) against nginx
           (1 worker, ssl_verify_client on, same CA, CRL and server certificate, serving the
           same bytes). Target: >= 0.90. Skipped, saying so, while cloisterd does not take
           ANKA_CA_CERT: it does not stay up with ANKA_CA_CERT and ANKA_CRL set, or a client
           certificate alone does not authenticate GET /api/v1/status there. Both servers
           must also refuse a revoked client certificate (the CRL's one serial).

Options:
  --quick                  1 round x 2 s per measurement (default: 3 rounds x 10 s; each server
                           first gets a 1 s warm-up, tap 2000 logins, that are not counted)
  --rounds N               rounds (default 3)
  --duration S             seconds per measurement (default 10)
  --only TEST              run one test: getauth, tap or mtls (repeatable)
  --logins N               TAP logins per tap round (default 20000)
  --tap-connections N      keep-alive connections of tap_bench (default 32)
  --tls-threads N          tls_connect_bench threads (default 2)
  --threads N              wrk threads (default 2)
  --connections N          wrk connections (default 64)
  --cloisterd PATH         cloisterd binary
  --tap-bench PATH         tap_bench binary
  --tls-connect-bench PATH tls_connect_bench binary
  --workdir DIR            where the temporary directory goes (default: $TMPDIR or /tmp, or
                           /var/tmp when that is tmpfs: shakes are durable, fsync must be real)
  --keep                   keep the temporary directory (logs, data dirs, certificates, outputs)
  -h, --help               this help

Binaries not given (or in $CLOISTERD, $TAP_BENCH, $TLS_CONNECT_BENCH) are built, in the
repository, with
  $BAZEL build -c opt --symlink_prefix=/ //api/cloisterd:cloisterd //bench:tap_bench \
      //bench:tls_connect_bench
and taken from `$BAZEL info -c opt bazel-bin` (the bazel-* links are left alone). BAZEL
defaults to "bazel"; BAZEL="bazel --output_base=$HOME/.cache/bazel-bench" builds in a separate
output base.

Needs wrk, curl, openssl (and nginx for mtls). Each figure comes with the server's CPU time
(user + system, all threads, from /proc) per request, login or connection.

Exit status: 0 all measurements valid (targets met or not); 1 some measurement invalid
(errors, non-2xx, failed logins, a revoked certificate accepted); 2 bad arguments or a
missing tool.
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/../lib.sh"

rounds_defaults
LOGINS=20000
TAP_CONNS=32
TLS_THREADS=2
CLOISTERD_BIN=${CLOISTERD:-}
TAP_BENCH_BIN=${TAP_BENCH:-}
TLS_BENCH_BIN=${TLS_CONNECT_BENCH:-}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --logins) LOGINS=${2:?}; shift ;;
    --tap-connections) TAP_CONNS=${2:?}; shift ;;
    --tls-threads) TLS_THREADS=${2:?}; shift ;;
    --cloisterd) CLOISTERD_BIN=${2:?}; shift ;;
    --tap-bench) TAP_BENCH_BIN=${2:?}; shift ;;
    --tls-connect-bench) TLS_BENCH_BIN=${2:?}; shift ;;
    *) parse_rounds_option "$@"; shift "$OPTION_WORDS"; continue ;;
  esac
  shift
done

require_positive "$ROUNDS" "$DURATION" "$THREADS" "$CONNS" "$LOGINS" "$TAP_CONNS" "$TLS_THREADS"
((DURATION <= 600)) || bad_usage "--duration is at most 600 s"
((ROUNDS <= 20)) || bad_usage "--rounds is at most 20"
((LOGINS <= 150000)) || bad_usage "--logins is at most 150000"
select_tests getauth tap mtls

# ---- Tools and binaries. ----

need=(curl openssl base64 timeout ss)
wants getauth && need+=(wrk)
wants mtls && need+=(nginx)
require_tools "bench/http/setup.sh (Debian) installs them" "${need[@]}"

if [[ -z $CLOISTERD_BIN || -z $TAP_BENCH_BIN || -z $TLS_BENCH_BIN ]]; then
  read -r -a BAZEL_CMD <<<"${BAZEL:-bazel}"
  log "building cloisterd, tap_bench and tls_connect_bench with: ${BAZEL_CMD[*]} build -c opt"
  (cd "$REPO" && "${BAZEL_CMD[@]}" build -c opt --symlink_prefix=/ //api/cloisterd:cloisterd \
     //bench:tap_bench //bench:tls_connect_bench) >&2 ||
    { echo "run.sh: build failed" >&2; exit 2; }
  BIN_DIR=$(cd "$REPO" && "${BAZEL_CMD[@]}" info -c opt bazel-bin 2>/dev/null)
  CLOISTERD_BIN=${CLOISTERD_BIN:-$BIN_DIR/api/cloisterd/cloisterd}
  TAP_BENCH_BIN=${TAP_BENCH_BIN:-$BIN_DIR/bench/tap_bench}
  TLS_BENCH_BIN=${TLS_BENCH_BIN:-$BIN_DIR/bench/tls_connect_bench}
fi
for b in "$CLOISTERD_BIN" "$TAP_BENCH_BIN" "$TLS_BENCH_BIN"; do
  [[ -x $b ]] || { echo "run.sh: not an executable: $b" >&2; exit 2; }
done
CLOISTERD_BIN=$(readlink -f "$CLOISTERD_BIN")
TAP_BENCH_BIN=$(readlink -f "$TAP_BENCH_BIN")
TLS_BENCH_BIN=$(readlink -f "$TLS_BENCH_BIN")

# ---- Work directory, processes, cleanup. ----

make_work cloister-authbench "${TMPDIR:-/tmp}"
WORK_FS=$(fs_type "$WORK")
trap_cleanup

# ---- Servers. ----

ROOT_TOKEN="rta_bench_$(openssl rand -hex 16)"
ROOT_BASIC="Basic $(printf 'root:%s' "$ROOT_TOKEN" | base64 -w0)"

# start_cloisterd name [VAR=value...]: sets STARTED_PID and STARTED_PORT; returns 1 (after
# printing the log) when it exits or does not get ready in 30 s.
start_cloisterd() {
  local name=$1 dir=$WORK/cloisterd-$1
  shift
  launch_cloisterd "$CLOISTERD_BIN" "$dir" "$@" || return 1
  log "cloisterd ($name) pid $STARTED_PID on 127.0.0.1:$STARTED_PORT, data $dir/data"
}

AUTH_ENV=(ANKA_ENABLE_AUTH=true "ANKA_ROOT_TOKEN=$ROOT_TOKEN" ANKA_ENABLE_API_KEYS=true
          ANKA_API_KEYS_SESSION_TTL=1h)

# make_bearer port: one TAP login with the openssl and curl CLIs; sets BEARER.
BEARER=""
make_bearer() {
  local url=http://127.0.0.1:$1 d=$WORK/bearer id=bench-bearer pub secret answer data
  mkdir -p "$d"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/key.pem" 2>/dev/null
  pub=$(openssl pkey -in "$d/key.pem" -pubout -outform DER | base64 -w0)
  curl -sf -o /dev/null -H "Authorization: $ROOT_BASIC" -H 'Content-Type: application/json' \
    --data "{\"id\":\"$id\",\"ttl\":3600,\"groups\":[\"ci\"],\"publicKey\":\"$pub\"}" \
    "$url/api/v1/apikey" || { log "POST /api/v1/apikey failed"; return 1; }
  curl -sf -H 'Content-Type: application/json' --data "{\"id\":\"$id\"}" "$url/tap/v1/hand" |
    base64 -d >"$d/hand.bin" || { log "POST /tap/v1/hand failed"; return 1; }
  secret=$(openssl pkeyutl -decrypt -inkey "$d/key.pem" -in "$d/hand.bin" \
           -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \
           -pkeyopt rsa_mgf1_md:sha256) || { log "cannot decrypt the hand"; return 1; }
  answer=$(curl -sf -H 'Content-Type: application/json' \
           --data "{\"id\":\"$id\",\"secret\":\"$secret\"}" "$url/tap/v1/shake") ||
    { log "POST /tap/v1/shake failed"; return 1; }
  data=$(sed -n 's/.*"data":\({[^}]*}\).*/\1/p' <<<"$answer")
  [[ -n $data ]] || { log "shake answer without data: $answer"; return 1; }
  BEARER="Bearer $(printf '%s' "$data" | base64 -w0)"
}

# ---- Rounds and summary. ----

INVALID=()
SKIPPED=()
declare -A RATES CPUS RATIO_LIST

# ---- Test: getauth. ----

UNAUTH_PID="" UNAUTH_PORT="" AUTH_PID="" AUTH_PORT=""

# getauth_run side out seconds tag: sets RATE and CPU (us per request).
RATE=0 CPU=nan
getauth_run() {
  local side=$1 out=$2 secs=$3 tag=$4 url pid rc=0 before after requests problems
  local hdr=()
  case $side in
    unauth) url=http://127.0.0.1:$UNAUTH_PORT/api/v1/status pid=$UNAUTH_PID ;;
    root) url=http://127.0.0.1:$AUTH_PORT/api/v1/status pid=$AUTH_PID
          hdr=(-H "Authorization: $ROOT_BASIC") ;;
    bearer) url=http://127.0.0.1:$AUTH_PORT/api/v1/status pid=$AUTH_PID
            hdr=(-H "Authorization: $BEARER") ;;
  esac
  before=$(cpu_ticks "$pid")
  run_bounded $((secs + 30)) "$out" wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --timeout 5s \
    "${hdr[@]}" "$url" || rc=$?
  after=$(cpu_ticks "$pid")
  requests=$(awk '/ requests in / {print $1}' "$out")
  RATE=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  CPU=$(per_op_us "$before" "$after" "$requests")
  problems=""
  [[ $rc -eq 0 ]] || problems+="wrk exit $rc; "
  [[ -n $RATE ]] || { problems+="no Requests/sec line; "; RATE=0; }
  problems+=$(grep -E '^  Socket errors|Non-2xx or 3xx' "$out" | sed 's/^ *//; s/$/; /' || true)
  if [[ -n $problems && $tag != warmup ]]; then
    INVALID+=("getauth/$side $tag: $problems")
    loud "INVALID: getauth $side $tag: $problems" "(wrk output: $out)"
    cat "$out.err" >&2 || true
  fi
}

test_getauth() {
  echo "== getauth: GET /api/v1/status, keep-alive, wrk -t$THREADS -c$CONNS"
  start_cloisterd unauth || { INVALID+=("getauth: the auth-off cloisterd did not start"); return; }
  UNAUTH_PID=$STARTED_PID UNAUTH_PORT=$STARTED_PORT
  start_cloisterd auth "${AUTH_ENV[@]}" ||
    { INVALID+=("getauth: the auth-on cloisterd did not start"); return; }
  AUTH_PID=$STARTED_PID AUTH_PORT=$STARTED_PORT
  if ! make_bearer "$AUTH_PORT"; then
    INVALID+=("getauth: no TAP session for the Bearer")
    return
  fi
  local side code sizes
  for side in unauth root bearer; do
    local hdr=()
    local port=$AUTH_PORT
    case $side in
      unauth) port=$UNAUTH_PORT ;;
      root) hdr=(-H "Authorization: $ROOT_BASIC") ;;
      bearer) hdr=(-H "Authorization: $BEARER") ;;
    esac
    sizes=$(curl -s -o /dev/null -w '%{http_code} %{size_header} %{size_download}' "${hdr[@]}" \
            "http://127.0.0.1:$port/api/v1/status")
    read -r code _ _ <<<"$sizes"
    awk -v l="$side" '{printf "  %-7s HTTP %s, response %d bytes (head %d + body %d)\n", l, $1,
                       $2 + $3, $2, $3}' <<<"$sizes"
    [[ $code == 200 ]] || INVALID+=("getauth/$side answers HTTP $code")
  done
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$AUTH_PORT/api/v1/status")
  echo "  auth-on without credentials: HTTP $code (one counted failure, far from the 429 limit)"
  [[ $code == 401 ]] ||
    INVALID+=("getauth: auth-on cloisterd answers HTTP $code without credentials")

  log "getauth: warm-up ${WARMUP}s each"
  for side in unauth root bearer; do
    getauth_run "$side" "$WORK/wrk-getauth-warmup-$side.txt" "$WARMUP" warmup
  done
  local r order s
  local -A rate cpu
  for ((r = 1; r <= ROUNDS; r++)); do
    case $(((r - 1) % 3)) in
      0) order=(unauth root bearer) ;;
      1) order=(root bearer unauth) ;;
      2) order=(bearer unauth root) ;;
    esac
    for s in "${order[@]}"; do
      getauth_run "$s" "$WORK/wrk-getauth-r$r-$s.txt" "$DURATION" "r$r"
      rate[$s]=$RATE cpu[$s]=$CPU
      RATES[getauth-$s]+="$RATE " CPUS[getauth-$s]+="$CPU "
    done
    RATIO_LIST[getauth-root]+="$(ratio "${rate[root]}" "${rate[unauth]}") "
    RATIO_LIST[getauth-bearer]+="$(ratio "${rate[bearer]}" "${rate[unauth]}") "
    printf '%s %7s req/s (%5s us CPU)  root %7s (%5s us)  bearer %7s (%5s us)  %s %s  %s %s\n' \
      "getauth round $r: unauth" "$(fmt "${rate[unauth]}")" "${cpu[unauth]}" \
      "$(fmt "${rate[root]}")" "${cpu[root]}" \
      "$(fmt "${rate[bearer]}")" "${cpu[bearer]}" \
      root/unauth "$(fmt_ratio "$(ratio "${rate[root]}" "${rate[unauth]}")")" \
      bearer/unauth "$(fmt_ratio "$(ratio "${rate[bearer]}" "${rate[unauth]}")")"
  done
  stop_pid "$UNAUTH_PID" cloisterd
  UNAUTH_PID=""
  echo
}

# ---- Test: tap. ----

test_tap() {
  echo "== tap: complete TAP logins (hand + shake), $LOGINS per round over $TAP_CONNS connections"
  if [[ -z $AUTH_PID ]] || ! kill -0 "$AUTH_PID" 2>/dev/null; then
    start_cloisterd auth "${AUTH_ENV[@]}" ||
      { INVALID+=("tap: the auth-on cloisterd did not start"); return; }
    AUTH_PID=$STARTED_PID AUTH_PORT=$STARTED_PORT
  fi
  local data=$WORK/cloisterd-auth/data
  echo "  data dir: $(fs_type "$data") on $(df -P "$data" | awk 'NR==2 {print $1}')"
  local r out rc line warm=$((LOGINS < 2000 ? LOGINS : 2000))
  log "tap: warm-up, $warm logins (not counted)"
  rc=0
  run_bounded 120 "$WORK/tap-warmup.txt" "$TAP_BENCH_BIN" --url "http://127.0.0.1:$AUTH_PORT" \
    --root-token "$ROOT_TOKEN" --logins "$warm" --connections "$TAP_CONNS" || rc=$?
  if [[ $rc -ne 0 ]]; then
    cat "$WORK/tap-warmup.txt" "$WORK/tap-warmup.txt.err" >&2
    INVALID+=("tap warm-up: exit $rc")
    loud "INVALID: the tap warm-up failed (exit $rc)"
    return
  fi
  for ((r = 1; r <= ROUNDS; r++)); do
    out=$WORK/tap-r$r.txt
    rc=0
    run_bounded 240 "$out" "$TAP_BENCH_BIN" --url "http://127.0.0.1:$AUTH_PORT" \
      --root-token "$ROOT_TOKEN" --logins "$LOGINS" --connections "$TAP_CONNS" \
      --pid "$AUTH_PID" || rc=$?
    sed 's/^/  /' "$out"
    line=$(grep '^TAP ' "$out" || true)
    if [[ $rc -ne 0 || -z $line || $line != *" errors=0 "* ]]; then
      INVALID+=("tap r$r: exit $rc; ${line:-no TAP line}")
      loud "INVALID: tap round $r (exit $rc)" "$(head -3 "$out.err" 2>/dev/null)"
      [[ $rc -eq 124 ]] && break
      continue
    fi
    RATES[tap]+="$(sed -n 's/.* logins_per_s=\([0-9.]*\).*/\1/p' <<<"$line") "
    CPUS[tap]+="$(sed -n 's/.* cpu_us_per_login=\([0-9.a-z/]*\).*/\1/p' <<<"$line") "
    RATES[tap-hands]+="$(sed -n 's/.* hands_per_s=\([0-9.]*\).*/\1/p' <<<"$line") "
    RATES[tap-shakes]+="$(sed -n 's/.* shakes_per_s=\([0-9.]*\).*/\1/p' <<<"$line") "
  done
  echo
}

# ---- Test: mtls. ----

PKI=$WORK/pki
make_pki() {  # EC P-256 CA; server (SAN 127.0.0.1), client (O=ci, CN=bench-client), revoked.
  mkdir -p "$PKI/db"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -days 2 -subj "/O=cloister bench/CN=bench CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null
  issue() {  # name subject serial extensions
    openssl req -new "${ec[@]}" -subj "$2" -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null
    printf '%b' "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n$4" >"$PKI/$1.ext"
    openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -set_serial "$3" \
      -days 2 -sha256 -extfile "$PKI/$1.ext" -out "$PKI/$1.pem" 2>/dev/null
  }
  issue server /CN=127.0.0.1 0x10 \
    'extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n'
  issue client /O=ci/CN=bench-client 0x11 'extendedKeyUsage=clientAuth\n'
  issue revoked /O=ci/CN=bench-revoked 0x12 'extendedKeyUsage=clientAuth\n'
  : >"$PKI/db/index.txt"
  echo 01 >"$PKI/db/crlnumber"
  cat >"$PKI/ca.cnf" <<EOF
[ ca ]
default_ca = bench
[ bench ]
database = $PKI/db/index.txt
crlnumber = $PKI/db/crlnumber
certificate = $PKI/ca.pem
private_key = $PKI/ca.key
default_md = sha256
default_crl_days = 2
EOF
  openssl ca -config "$PKI/ca.cnf" -revoke "$PKI/revoked.pem" >/dev/null 2>&1
  openssl ca -config "$PKI/ca.cnf" -gencrl -out "$PKI/crl.pem" >/dev/null 2>&1
  chmod 644 "$PKI"/*.key  # Throwaway keys; nginx's master and cloisterd read them.
  chmod -R a+rX "$PKI"
  openssl verify -crl_check -CAfile "$PKI/ca.pem" -CRLfile "$PKI/crl.pem" \
    "$PKI/server.pem" "$PKI/client.pem" >/dev/null || return 1
  ! openssl verify -crl_check -CAfile "$PKI/ca.pem" -CRLfile "$PKI/crl.pem" \
    "$PKI/revoked.pem" >/dev/null 2>&1
}

CIPHERSUITES="TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
NGINX_PORT=""
nginx_mtls_configure() {
  NGINX_PORT=$(free_port)
  sed -e "s|@WORK@|$WORK|g" -e "s|@PORT@|$NGINX_PORT|g" -e "s|@CERT@|$PKI/server.pem|g" \
      -e "s|@KEY@|$PKI/server.key|g" -e "s|@CA@|$PKI/ca.pem|g" -e "s|@CRL@|$PKI/crl.pem|g" \
      -e "s|@CIPHERSUITES@|$CIPHERSUITES|g" "$HERE/nginx-mtls.conf.in" >"$WORK/nginx/nginx.conf"
}
nginx_mtls_ready() {  # The client certificate gets a 200.
  local deadline=$((SECONDS + 10))
  while ((SECONDS < deadline)) && kill -0 "$NGINX_PID" 2>/dev/null; do
    [[ $(mtls_code "$NGINX_PORT" client) == 200 ]] && return 0
    sleep 0.1
  done
  return 1
}
start_nginx_mtls() {
  launch_nginx nginx_mtls_configure nginx_mtls_ready || return 1
  log "nginx pid $NGINX_PID on 127.0.0.1:$NGINX_PORT (mTLS)"
}

mtls_code() {  # port certname: the HTTP status of GET /api/v1/status with that client cert
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$PKI/ca.pem" \
    --cert "$PKI/$2.pem" --key "$PKI/$2.key" "https://127.0.0.1:$1/api/v1/status" || true
}

tls_facts() {  # label port: negotiated protocol, suite and key exchange, with the client cert
  local info proto_cipher kx
  info=$(printf 'GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' |
         timeout 10 openssl s_client -connect "127.0.0.1:$2" -CAfile "$PKI/ca.pem" \
           -cert "$PKI/client.pem" -key "$PKI/client.key" -ign_eof 2>/dev/null || true)
  proto_cipher=$(sed -n 's/^New, \([^,]*\), Cipher is \(.*\)/\1 \2/p' <<<"$info" | head -1)
  kx=$(sed -n 's/^Server Temp Key: //p' <<<"$info" | head -1)
  printf '  %-9s %s, key exchange %s\n' "$1" "$proto_cipher" "$kx"
  echo "$proto_cipher $kx" >"$WORK/tls-$1.txt"
}

MTLS_PID="" MTLS_PORT=""
mtls_skip() {
  SKIPPED+=("mtls")
  echo "  SKIPPED: $*"
  loud "mtls SKIPPED: $*"
}

test_mtls() {
  echo "== mtls: new TLS connections with a client certificate and CRL checking"
  echo "   (tls_connect_bench, $TLS_THREADS threads, full handshakes, GET + Connection: close)"
  local in_help="its --help does not mention ANKA_CA_CERT"
  "$CLOISTERD_BIN" --help 2>&1 | grep -q 'ANKA_CA_CERT' && in_help="its --help has ANKA_CA_CERT"
  make_pki || { INVALID+=("mtls: the openssl CLI could not make the certificates"); return; }
  if ! start_cloisterd mtls ANKA_USE_HTTPS=true "ANKA_SERVER_CERT=$PKI/server.pem" \
      "ANKA_SERVER_KEY=$PKI/server.key" ANKA_ENABLE_AUTH=true "ANKA_ROOT_TOKEN=$ROOT_TOKEN" \
      "ANKA_CA_CERT=$PKI/ca.pem" "ANKA_CRL=$PKI/crl.pem"; then
    mtls_skip "cloisterd does not stay up with ANKA_CA_CERT and ANKA_CRL (see above; $in_help)"
    echo
    return
  fi
  MTLS_PID=$STARTED_PID MTLS_PORT=$STARTED_PORT
  sleep 0.5
  if ! kill -0 "$MTLS_PID" 2>/dev/null; then
    tail -5 "$WORK/cloisterd-mtls/stderr.log" >&2
    mtls_skip "cloisterd exited soon after starting with ANKA_CA_CERT and ANKA_CRL ($in_help)"
    echo
    return
  fi
  local code
  code=$(mtls_code "$MTLS_PORT" client)
  if [[ $code != 200 ]]; then
    stop_pid "$MTLS_PID" cloisterd
    mtls_skip "cloisterd stays up with ANKA_CA_CERT, but a client certificate alone does not" \
              "authenticate GET /api/v1/status (HTTP $code; $in_help): no server side yet"
    echo
    return
  fi
  mkdir -p "$WORK/nginx/www/api/v1"
  curl -sf --cacert "$PKI/ca.pem" --cert "$PKI/client.pem" --key "$PKI/client.key" \
    "https://127.0.0.1:$MTLS_PORT/api/v1/status" -o "$WORK/nginx/www/api/v1/status"
  if ! start_nginx_mtls; then
    INVALID+=("mtls: nginx did not start")
    stop_pid "$MTLS_PID" cloisterd
    return
  fi
  # Both must check: the client certificate passes, the revoked one does not.
  local side port
  for side in cloisterd nginx; do
    port=$MTLS_PORT
    [[ $side == nginx ]] && port=$NGINX_PORT
    code=$(mtls_code "$port" revoked)
    printf '  %-9s client cert: HTTP %s; revoked cert (serial 12, in the CRL): HTTP %s\n' \
      "$side" "$(mtls_code "$port" client)" "$code"
    [[ $code != 200 ]] || INVALID+=("mtls/$side accepts a revoked client certificate")
  done
  tls_facts cloisterd "$MTLS_PORT"
  tls_facts nginx "$NGINX_PORT"
  cmp -s "$WORK/tls-cloisterd.txt" "$WORK/tls-nginx.txt" ||
    INVALID+=("mtls: cloisterd and nginx negotiate different TLS parameters")
  cmp -s <(curl -s --cacert "$PKI/ca.pem" --cert "$PKI/client.pem" --key "$PKI/client.key" \
             "https://127.0.0.1:$MTLS_PORT/api/v1/status") "$WORK/nginx/www/api/v1/status" ||
    INVALID+=("mtls: the bodies differ")

  log "mtls: warm-up ${WARMUP}s each"
  mtls_run cloisterd "$WORK/mtls-warmup-cloisterd.txt" "$WARMUP" warmup
  mtls_run nginx "$WORK/mtls-warmup-nginx.txt" "$WARMUP" warmup
  local r first second c n cc nc
  for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then first=cloisterd second=nginx; else first=nginx second=cloisterd; fi
    for side in "$first" "$second"; do
      mtls_run "$side" "$WORK/mtls-r$r-$side.txt" "$DURATION" "r$r"
      if [[ $side == cloisterd ]]; then c=$RATE cc=$CPU; else n=$RATE nc=$CPU; fi
      RATES[mtls-$side]+="$RATE " CPUS[mtls-$side]+="$CPU "
    done
    RATIO_LIST[mtls]+="$(ratio "$c" "$n") "
    printf '%s %6s conn/s (%6s us CPU each)   nginx %6s conn/s (%6s us CPU each)   ratio %s\n' \
      "mtls round $r: cloisterd" "$(fmt "$c")" "$cc" "$(fmt "$n")" "$nc" \
      "$(fmt_ratio "$(ratio "$c" "$n")")"
  done
  stop_pid "$NGINX_PID" nginx
  stop_pid "$MTLS_PID" cloisterd
  echo
}

mtls_run() {  # side out seconds tag: sets RATE and CPU
  local side=$1 out=$2 secs=$3 tag=$4 port pids=() rc=0 line p
  if [[ $side == cloisterd ]]; then
    port=$MTLS_PORT pids=(--pid "$MTLS_PID")
  else
    port=$NGINX_PORT pids=(--pid "$NGINX_PID")
    for p in $(pgrep -P "$NGINX_PID"); do pids+=(--pid "$p"); done
  fi
  run_bounded $((secs + 30)) "$out" "$TLS_BENCH_BIN" --port "$port" --ca "$PKI/ca.pem" \
    --cert "$PKI/client.pem" --key "$PKI/client.key" --threads "$TLS_THREADS" \
    --duration "$secs" "${pids[@]}" || rc=$?
  line=$(grep '^TLSCONNECT ' "$out" || true)
  RATE=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$line")
  CPU=$(sed -n 's/.* cpu_us_per_conn=\([0-9.a-z]*\).*/\1/p' <<<"$line")
  RATE=${RATE:-0} CPU=${CPU:-nan}
  if [[ $tag != warmup && ($rc -ne 0 || $line != *" errors=0 "*) ]]; then
    INVALID+=("mtls/$side $tag: exit $rc; ${line:-no TLSCONNECT line}")
    loud "INVALID: mtls $side $tag (exit $rc)" "$(head -5 "$out" "$out.err" 2>/dev/null)"
  fi
}

# ---- Run. ----

TOOLS=$(openssl version)
wants getauth && TOOLS+="; $({ wrk -v 2>&1 || true; } | head -1 | cut -d' ' -f1-2)"
wants mtls && TOOLS+="; $({ "$NGINX" -v 2>&1 || true; } | sed 's/^nginx version: //') (1 worker)"
CPU_MODEL=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
cat <<EOF
cloister authentication benchmark — $(date '+%Y-%m-%d %H:%M %Z')
  tests: ${TESTS[*]}; $ROUNDS round(s) x ${DURATION}s (+${WARMUP}s warm-up each)
  machine: nproc=$(nproc), $CPU_MODEL, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)
  work dir: $WORK ($WORK_FS)
  cloisterd: $CLOISTERD_BIN ($("$CLOISTERD_BIN" --version 2>&1 | head -1))
  $TOOLS

EOF
if [[ $WORK_FS == tmpfs ]]; then
  loud "the work directory is on tmpfs: fsync is free there, the shake figures mean little" \
       "use --workdir on a real disk"
fi

wants getauth && test_getauth
wants tap && test_tap
[[ -n $AUTH_PID ]] && stop_pid "$AUTH_PID" cloisterd
wants mtls && test_mtls

echo "== summary (medians over $ROUNDS round(s); ratio = median of per-round ratios)"
printf '| %-14s | %-24s | %-24s | %7s | %-8s | %-8s |\n' test subject peer ratio target result
printf '|%s|%s|%s|%s|%s|%s|\n' ---------------- -------------------------- \
  -------------------------- --------- ---------- ----------
result_of() {  # test-key ratio target prefix
  local r
  r=$(awk -v q="$2" -v t="$3" 'BEGIN {print (q != "nan" && q + 0 >= t + 0) ? "met" : "missed"}')
  for bad in "${INVALID[@]}"; do [[ $bad == "$4"* ]] && r=INVALID; done
  echo "$r"
}
if wants getauth; then
  u=$(median <<<"${RATES[getauth-unauth]:-}")
  for s in root bearer; do
    q=$(median <<<"${RATIO_LIST[getauth-$s]:-}")
    printf '| %-14s | %-24s | %-24s | %7s | %-8s | %-8s |\n' "getauth $s" \
      "$(fmt "$(median <<<"${RATES[getauth-$s]:-}")") req/s ($s)" "$(fmt "$u") req/s (unauth)" \
      "$(fmt_ratio "$q")" ">= 0.90" "$(result_of "getauth-$s" "$q" 0.90 getauth)"
  done
fi
if wants tap; then
  l=$(median <<<"${RATES[tap]:-}")
  printf '| %-14s | %-24s | %-24s | %7s | %-8s | %-8s |\n' "tap logins" "$(fmt "$l") logins/s" \
    "(none: absolute)" "" ">= 10000" "$(result_of tap "$l" 10000 tap)"
fi
if wants mtls; then
  if [[ " ${SKIPPED[*]} " == *" mtls "* ]]; then
    printf '| %-14s | %-24s | %-24s | %7s | %-8s | %-8s |\n' "mtls" "skipped" "skipped" "" \
      ">= 0.90" "SKIPPED"
  else
    q=$(median <<<"${RATIO_LIST[mtls]:-}")
    printf '| %-14s | %-24s | %-24s | %7s | %-8s | %-8s |\n' "mtls new conn" \
      "$(fmt "$(median <<<"${RATES[mtls-cloisterd]:-}")") conn/s" \
      "$(fmt "$(median <<<"${RATES[mtls-nginx]:-}")") conn/s (nginx)" "$(fmt_ratio "$q")" \
      ">= 0.90" "$(result_of mtls "$q" 0.90 mtls)"
  fi
fi
echo
echo "Server CPU (user + system, all threads) per request, login or connection, median, us:"
if wants getauth; then
  printf '  getauth   unauth %s   root %s   bearer %s\n' \
    "$(median <<<"${CPUS[getauth-unauth]:-}")" "$(median <<<"${CPUS[getauth-root]:-}")" \
    "$(median <<<"${CPUS[getauth-bearer]:-}")"
fi
if wants tap; then
  printf '  tap       %s per login (hands %s/s, shakes %s/s)\n' "$(median <<<"${CPUS[tap]:-}")" \
    "$(fmt "$(median <<<"${RATES[tap-hands]:-}")")" "$(fmt "$(median <<<"${RATES[tap-shakes]:-}")")"
fi
if wants mtls && [[ " ${SKIPPED[*]} " != *" mtls "* ]]; then
  printf '  mtls      cloisterd %s   nginx %s per connection\n' \
    "$(median <<<"${CPUS[mtls-cloisterd]:-}")" "$(median <<<"${CPUS[mtls-nginx]:-}")"
fi
if [[ ${#SKIPPED[@]} -gt 0 ]]; then
  echo "Skipped: ${SKIPPED[*]} (the reason is above: the server side is not there yet)"
fi
if [[ ${#INVALID[@]} -gt 0 ]]; then
  loud "SOME MEASUREMENTS ARE INVALID:" "${INVALID[@]}"
  exit 1
fi
