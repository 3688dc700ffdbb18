#!/usr/bin/env bash
# Start -> Started latency of VM instances through the real processes, on loopback.
#
# What it measures. One cloisterd (its own temp data dir, ephemeral ports) and N cloister-node
# agents running the in-process sim driver with no delay (--sim-delay 0), so every millisecond
# is the system's own: the HTTP hops, the scheduler pass, the agent's long-poll wake-up, the
# agent's durable store writes, the report round-trip, and the controller's fsync'd commits.
#   1. single: one instance at a time (POST /api/v1/vm {"vmid":...}), waited for until Started,
#      then terminated and waited for until Terminated, repeated (200 times by default, after 5
#      uncounted warm-up instances; bounded by a time budget).
#   2. burst: 1,000 instances posted at once (10 POSTs of count=100, the API's maximum), with
#      capacity for all of them (4 nodes x --max-vm-count 250), waited for until all Started.
#
# How. Latencies come from the event log, not from client-side polling: `cloister audit export`
# (which reads a live data dir in one consistent snapshot) gives every event with the time the
# engine stamped it; an instance's latency is the time of its VmInstanceStateChanged(Started)
# event minus the time of its VmInstanceRequested event. The same events split the latency into
# stages: Requested -> Scheduled (the scheduler pass), Scheduled -> Pulling (the agent's
# long-poll wakes, it records the command and reports Pulling, which is committed), Pulling ->
# Started (the sim clone + start, the agent's store writes and the Started report's commit).
# The client only polls to know when to go on: over one keep-alive connection (bash /dev/tcp,
# no process per request) in the single phase, curl every 250 ms in the burst phase.
# Burst throughput is instances / (last Started - first Requested).
#
# There is no peer in this benchmark (no Anka controller to run against): the figures are
# absolute, and docs/benchmarks.md keeps them with the date and the machine.
#
# Usage (from the repository):  bench/start_latency.sh [--help]
# Builds //api/cloisterd:cloisterd, //node:cloister-node and //tools:cloister with -c opt in a
# separate output base (see --help) unless --bin DIR is given. Needs bash >= 5, curl, awk, sort,
# sha256sum.
# Every process it starts is stopped on exit (trap), and its temp dir is removed.
set -Eeuo pipefail
export LC_ALL=C  # Byte lengths for Content-Length and read -N; "." decimals in awk/printf.

usage() {
  cat <<'EOF'
Usage: bench/start_latency.sh [options]

Measures Start -> Started latency of VM instances through cloisterd and cloister-node agents
(sim driver, no delay) on loopback, from the event log's timestamps, and prints p50/p99/max and
the burst throughput. No peer: the figures are absolute.

Options:
  --single N         single-instance round trips to measure (default 200)
  --warmup N         uncounted single-instance round trips first (default 5)
  --single-budget S  stop the single phase after S seconds whatever N (default 60)
  --burst N          instances in the burst (default 1000; at most nodes x max-vm-count)
  --burst-timeout S  give up waiting for the burst after S seconds (default 90)
  --nodes N          sim agents to join (default 4)
  --max-vm-count N   capacity of each agent (default 250)
  --bin DIR          take cloisterd, cloister-node and cloister from this bazel-bin directory
                     (default: build them, see below)
  --workdir DIR      where the temp directory goes (default: $TMPDIR or /var/tmp; not tmpfs)
  --keep             keep the temp directory (logs, data dirs, the exported events)
  -h, --help         this help

Without --bin, the script runs, in the repository,
  $BAZEL build -c opt --symlink_prefix=/tmp/bench- //api/cloisterd:cloisterd \
      //node:cloister-node //tools:cloister
with BAZEL defaulting to "bazel --output_base=$HOME/.cache/bazel-bench" (a separate output base,
leaving the workspace's server and bazel-* links alone), and uses /tmp/bench-bin.

Exit status: 0 figures printed; 1 a process failed or a wait timed out; 2 bad arguments.
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

SINGLE=200
WARMUP=5
SINGLE_BUDGET=60
BURST=1000
BURST_TIMEOUT=90
NODES=4
MAX_VMS=250
BIN=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --single) SINGLE=${2:?}; shift ;;
    --warmup) WARMUP=${2:?}; shift ;;
    --single-budget) SINGLE_BUDGET=${2:?}; shift ;;
    --burst) BURST=${2:?}; shift ;;
    --burst-timeout) BURST_TIMEOUT=${2:?}; shift ;;
    --nodes) NODES=${2:?}; shift ;;
    --max-vm-count) MAX_VMS=${2:?}; shift ;;
    --bin) BIN=${2:?}; shift ;;
    *) parse_common_option "$@"; shift "$OPTION_WORDS"; continue ;;
  esac
  shift
done
for n in "$SINGLE" "$WARMUP" "$SINGLE_BUDGET" "$BURST" "$BURST_TIMEOUT" "$NODES" "$MAX_VMS"; do
  [[ $n =~ ^[0-9]+$ ]] || { echo "start_latency.sh: $n is not a whole number" >&2; exit 2; }
done
if ((NODES < 1 || BURST > NODES * MAX_VMS)); then
  echo "start_latency.sh: --burst $BURST needs nodes x max-vm-count >= it" >&2
  exit 2
fi
if ((BASH_VERSINFO[0] < 5)); then
  echo "start_latency.sh: needs bash 5 (EPOCHREALTIME)" >&2
  exit 2
fi
require_tools "start_latency.sh needs them" curl awk sort

die() { log "FAILED: $*"; exit 1; }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }  # Wall clock, ms (no fork).

# ---- Binaries. ----

if [[ -z $BIN ]]; then
  read -r -a BAZEL_CMD <<<"${BAZEL:-bazel --output_base=$HOME/.cache/bazel-bench}"
  log "building with: ${BAZEL_CMD[*]} build -c opt --symlink_prefix=/tmp/bench- ..."
  (cd "$REPO" && "${BAZEL_CMD[@]}" build -c opt --symlink_prefix=/tmp/bench- \
     //api/cloisterd:cloisterd //node:cloister-node //tools:cloister) >&2
  BIN=/tmp/bench-bin
fi
CLOISTERD=$BIN/api/cloisterd/cloisterd
NODE=$BIN/node/cloister-node
CLOISTER=$BIN/tools/cloister
for b in "$CLOISTERD" "$NODE" "$CLOISTER"; do
  [[ -x $b ]] || { echo "start_latency.sh: no executable $b" >&2; exit 2; }
done

# ---- Work directory, processes, cleanup. ----

make_work cloister-startlat "${TMPDIR:-/var/tmp}"
trap_cleanup
trap 'log "FAILED: line $LINENO: $BASH_COMMAND exited $?"' ERR
# A write to a socket the server closed fails (EPIPE) instead of killing the script unreported.
# A handler rather than ignoring: the processes started here keep the default disposition.
trap ':' PIPE

# A file descriptor nothing is ever written to: `read -t` on it is a sleep without a fork.
exec {SLEEP_FD}<> <(:)
nap() { read -r -t "$1" -u "$SLEEP_FD" _ || true; }
count_in() { { grep -oF -- "$2" "$1" || true; } | wc -l; }  # Occurrences of a fixed string.

# ---- cloisterd and the agents. ----

launch_cloisterd "$CLOISTERD" "$WORK/cloisterd" || die "cloisterd"
CLOISTERD_PID=$STARTED_PID
PORT=$STARTED_PORT
URL=http://127.0.0.1:$PORT
log "cloisterd pid $CLOISTERD_PID on $URL, data $WORK/cloisterd/data ($(fs_type "$WORK"))"

for ((n = 1; n <= NODES; n++)); do
  "$NODE" join "$URL" --name "sim-$n" --max-vm-count "$MAX_VMS" --sim-delay 0 \
    --data "$WORK/node-$n" >"$WORK/node-$n.log" 2>&1 &
  PIDS+=("$!")
done
deadline=$(($(now_ms) + 30000))
while :; do
  curl -sf --max-time 5 "$URL/api/v1/node" >"$WORK/nodes.json" || : >"$WORK/nodes.json"
  active=$(count_in "$WORK/nodes.json" '"state":"Active"')
  ((active == NODES)) && break
  for pid in "${PIDS[@]:1}"; do
    kill -0 "$pid" 2>/dev/null || { cat "$WORK"/node-*.log >&2; die "an agent exited"; }
  done
  (($(now_ms) < deadline)) || die "only $active of $NODES nodes Active after 30 s"
  nap 0.1
done
log "$NODES sim agents Active (max-vm-count $MAX_VMS, sim delay 0)"

# ---- HTTP/1.1 keep-alive over bash's /dev/tcp: no process per request. ----

HTTP_FD=""
http_open() {
  [[ -n $HTTP_FD ]] && exec {HTTP_FD}>&-
  exec {HTTP_FD}<>"/dev/tcp/127.0.0.1/$PORT"
}
# http_once METHOD PATH [BODY]: sets HTTP_CODE and HTTP_BODY. Returns 0 on an answer, 2 when
# the connection was gone (the write failed, or end of file before any answer: the request was
# not served, so it may be sent again), 1 on any other failure.
http_once() {
  local body=${3-} line len=-1 req
  # The request must leave in one write(2): split over several segments, its tail waits (Nagle)
  # for the server's delayed ACK, ~40 ms on loopback. Bash's stdout is line-buffered, so it is
  # formatted first, printed with one %s, and ends with a newline (the body gets one: JSON
  # allows trailing white space), which makes glibc flush it whole.
  [[ -n $body ]] && body+=$'\n'
  printf -v req '%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%s' \
    "$1" "$2" "Content-Length: ${#body}"$'\r\n\r\n'"$body"
  printf '%s' "$req" 2>/dev/null 1>&"$HTTP_FD" || return 2
  local rc=0
  IFS= read -r -t 10 -u "$HTTP_FD" line || rc=$?
  if ((rc != 0)); then
    ((rc == 1)) && [[ -z $line ]] && return 2  # End of file, nothing read: not served.
    return 1
  fi
  [[ $line =~ ^HTTP/1\.[01]\ ([0-9]+) ]] || return 1
  HTTP_CODE=${BASH_REMATCH[1]}
  while IFS= read -r -t 10 -u "$HTTP_FD" line; do
    line=${line%$'\r'}
    [[ -z $line ]] && break
    if [[ ${line,,} =~ ^content-length:\ *([0-9]+) ]]; then len=${BASH_REMATCH[1]}; fi
  done
  ((len >= 0)) || return 1
  HTTP_BODY=""
  ((len == 0)) || IFS= read -r -d '' -N "$len" -t 10 -u "$HTTP_FD" HTTP_BODY || return 1
}
# http METHOD PATH [BODY]: http_once, once more on a new connection if the old one was gone
# (closed by the server's idle timeout, say); returns 1 if there was no answer.
http() {
  local rc=0
  http_once "$@" || rc=$?
  ((rc == 0)) && return 0
  ((rc == 2)) || return 1
  http_open || return 1
  http_once "$@"
}
http_open

# The template the instances name, made as clients make templates: a one-layer OCI image pushed
# to the registry listener (each blob by POST /v2/<name>/blobs/uploads/ and PUT <Location>?digest=,
# then the manifest by PUT /v2/<name>/manifests/bench). The registry gives the template a fresh
# id, the vmid; each agent pulls the (tiny) image once, before its first clone.
REGISTRY_URL=http://127.0.0.1:$(sed -n 's/^registry=//p' "$WORK/cloisterd/ready")
push_blob() {  # push_blob FILE: one blob of the image, uploaded monolithically.
  local digest location sep='?'
  digest=sha256:$(sha256sum "$1" | cut -d' ' -f1)
  location=$(curl -sf --max-time 10 -X POST -D - -o /dev/null \
    "$REGISTRY_URL/v2/bench-template/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  [[ -n $location ]] || return 1
  [[ $location == *\?* ]] && sep='&'
  curl -sf --max-time 30 -X PUT -H 'Content-Type: application/octet-stream' \
    --data-binary "@$1" -o /dev/null "$REGISTRY_URL$location${sep}digest=$digest"
}
printf '{"architecture":"arm64","os":"darwin"}' >"$WORK/image-config.json"
printf 'bench template disk' >"$WORK/image-layer"
push_blob "$WORK/image-config.json" || die "pushing the template's config blob to $REGISTRY_URL"
push_blob "$WORK/image-layer" || die "pushing the template's layer blob to $REGISTRY_URL"
blob_json() {  # blob_json MEDIA_TYPE FILE: a manifest's descriptor of FILE.
  printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$1" \
    "$(sha256sum "$2" | cut -d' ' -f1)" "$(stat -c %s "$2")"
}
printf '{"schemaVersion":2,"mediaType":"%s","config":%s,"layers":[%s]}' \
  application/vnd.oci.image.manifest.v1+json \
  "$(blob_json application/vnd.oci.image.config.v1+json "$WORK/image-config.json")" \
  "$(blob_json application/vnd.oci.image.layer.v1.tar "$WORK/image-layer")" \
  >"$WORK/image-manifest.json"
curl -sf --max-time 10 -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary "@$WORK/image-manifest.json" -o /dev/null \
  "$REGISTRY_URL/v2/bench-template/manifests/bench" || die "pushing the template's manifest"
TEMPLATE=$(curl -sf --max-time 10 "$REGISTRY_URL/registry/vm?id=bench-template") ||
  die "GET /registry/vm?id=bench-template"
[[ $TEMPLATE =~ \"id\":\"([^\"]+)\" ]] || die "no template id in $TEMPLATE"
VMID=${BASH_REMATCH[1]}
log "pushed template bench-template:bench to $REGISTRY_URL: vmid $VMID"

# wait_state ID STATE TIMEOUT_MS: polls GET /api/v1/vm?id= until the instance is in STATE.
wait_state() {
  local deadline=$(($(now_ms) + $3))
  while :; do
    http GET "/api/v1/vm?id=$1" || die "GET /api/v1/vm?id=$1: no answer"
    [[ $HTTP_BODY == *"\"instance_state\":\"$2\""* ]] && return 0
    [[ $HTTP_BODY == *'"instance_state":"Error"'* ]] && die "instance $1 in Error: $HTTP_BODY"
    (($(now_ms) < deadline)) || die "instance $1 not $2 within $3 ms: $HTTP_BODY"
    nap 0.005
  done
}

# ---- Phase 1: one instance at a time. ----

: >"$WORK/single.ids"
log "single: $WARMUP warm-up + $SINGLE measured round trips (budget ${SINGLE_BUDGET}s)"
budget_end=$(($(now_ms) + SINGLE_BUDGET * 1000))
single_done=0
t0=$(now_ms)
for ((i = 0; i < WARMUP + SINGLE; i++)); do
  http POST /api/v1/vm "{\"vmid\":\"$VMID\"}" || die "POST /api/v1/vm: no answer"
  [[ $HTTP_BODY =~ \"body\":\[\"([^\"]+)\"\] ]] || die "POST /api/v1/vm: $HTTP_BODY"
  id=${BASH_REMATCH[1]}
  wait_state "$id" Started 10000
  http DELETE /api/v1/vm "{\"id\":\"$id\"}" || die "DELETE /api/v1/vm: no answer"
  [[ $HTTP_BODY == *'"status":"OK"'* ]] || die "DELETE /api/v1/vm: $HTTP_BODY"
  wait_state "$id" Terminated 10000
  if ((i >= WARMUP)); then
    echo "$id" >>"$WORK/single.ids"
    single_done=$((single_done + 1))
  fi
  if (($(now_ms) > budget_end)); then
    log "single: time budget reached after $single_done measured round trips"
    break
  fi
done
log "single: $single_done measured in $(($(now_ms) - t0)) ms (client side, with terminations)"

# ---- Phase 2: a burst. ----

: >"$WORK/burst.ids"
log "burst: posting $BURST instances"
left=$BURST
while ((left > 0)); do
  count=$((left > 100 ? 100 : left))
  http POST /api/v1/vm "{\"vmid\":\"$VMID\",\"count\":$count}" ||
    die "POST /api/v1/vm: no answer"
  [[ $HTTP_BODY == *'"status":"OK"'* ]] || die "POST /api/v1/vm count=$count: $HTTP_BODY"
  ids=${HTTP_BODY#*\"body\":[}
  ids=${ids%%]*}
  tr -d '"' <<<"$ids" | tr ',' '\n' >>"$WORK/burst.ids"
  left=$((left - count))
done
posted=$(wc -l <"$WORK/burst.ids")
((posted == BURST)) || die "burst: posted $BURST, got $posted ids"
# Every single-phase instance is Terminated by now, so each Started instance is a burst one.
deadline=$(($(now_ms) + BURST_TIMEOUT * 1000))
while :; do
  curl -sf --max-time 10 "$URL/api/v1/vm" >"$WORK/vms.json" || die "GET /api/v1/vm failed"
  started=$(count_in "$WORK/vms.json" '"instance_state":"Started"')
  errors=$(count_in "$WORK/vms.json" '"instance_state":"Error"')
  ((errors == 0)) || die "burst: $errors instances in Error"
  ((started >= BURST)) && break
  (($(now_ms) < deadline)) || die "burst: only $started of $BURST Started after ${BURST_TIMEOUT}s"
  nap 0.25
done
log "burst: all $BURST Started"
exec {HTTP_FD}>&-

# ---- Latencies from the event log. ----

"$CLOISTER" audit export --data "$WORK/cloisterd/data" \
  --type VmInstanceRequested,VmInstanceScheduled,VmInstanceStateChanged >"$WORK/events.jsonl" ||
  die "cloister audit export failed"
log "exported $(wc -l <"$WORK/events.jsonl") instance events"

# One row per measured instance: phase, requested (ms, relative), total latency, then the
# stages Requested->Scheduled, Scheduled->Pulling, Pulling->Started, and the Started time.
awk -v single="$WORK/single.ids" -v burst="$WORK/burst.ids" '
  function field(line, name,    m) {  # First "name":"value" in the line.
    if (!match(line, "\"" name "\":\"[^\"]*\"")) return ""
    m = substr(line, RSTART, RLENGTH)
    sub("^\"" name "\":\"", "", m)
    return substr(m, 1, length(m) - 1)
  }
  function days(y, m, d) {  # Days since 1970-01-01 (proleptic Gregorian).
    if (m <= 2) { y--; m += 12 }
    return 365 * y + int(y / 4) - int(y / 100) + int(y / 400) + int((153 * (m - 3) + 2) / 5) \
           + d - 719469
  }
  function ms(t,    dd) {  # "2026-11-24T20:37:43.827995826Z" -> ms since the first day seen.
    dd = days(substr(t, 1, 4) + 0, substr(t, 6, 2) + 0, substr(t, 9, 2) + 0)
    if (day0 == "") day0 = dd
    return ((dd - day0) * 86400 + substr(t, 12, 2) * 3600 + substr(t, 15, 2) * 60 \
            + substr(t, 18, 2)) * 1000 + ("0" substr(t, 20, length(t) - 20)) * 1000
  }
  FILENAME == single { phase[$1] = "single"; next }
  FILENAME == burst { phase[$1] = "burst"; next }
  {
    payload = substr($0, index($0, "\"payload\":"))
    id = field(payload, "instance_id")
    if (!(id in phase)) next
    type = field($0, "type")
    t = ms(field($0, "time"))
    if (type == "VmInstanceRequested") req[id] = t
    else if (type == "VmInstanceScheduled") sched[id] = t
    else {
      state = field(payload, "state")
      if (state == "Pulling" && !(id in pull)) pull[id] = t
      if (state == "Started" && !(id in start)) start[id] = t
    }
  }
  END {
    for (id in phase) {
      if (!(id in req) || !(id in sched) || !(id in pull) || !(id in start)) {
        print "missing events for " id > "/dev/stderr"; bad = 1; continue
      }
      printf "%s %.3f %.3f %.3f %.3f %.3f %.3f\n", phase[id], req[id], start[id] - req[id],
             sched[id] - req[id], pull[id] - sched[id], start[id] - pull[id], start[id]
    }
    exit bad
  }' "$WORK/single.ids" "$WORK/burst.ids" "$WORK/events.jsonl" >"$WORK/latencies.txt" ||
  die "some instances lack events (see above)"

# pct COLUMN PHASE: "p50 p99 max" (nearest rank) of a column of latencies.txt, in ms.
pct() {
  awk -v c="$1" -v p="$2" '$1 == p {print $c}' "$WORK/latencies.txt" | sort -g |
    awk '{a[NR] = $1}
         function rank(q,    r) { r = int(q * NR); if (r < q * NR) r++; return r < 1 ? 1 : r }
         END { if (NR == 0) print "nan nan nan"
               else printf "%.1f %.1f %.1f\n", a[rank(0.50)], a[rank(0.99)], a[NR] }'
}

echo
echo "Start -> Started latency (VmInstanceRequested -> VmInstanceStateChanged(Started), from the"
echo "event log); cloisterd + $NODES cloister-node agents, sim driver with no delay, loopback."
echo "No peer to compare against: these figures are absolute."
n_single=$(awk '$1 == "single"' "$WORK/latencies.txt" | wc -l)
if ((n_single > 0)); then
  read -r p50 p99 max <<<"$(pct 3 single)"
  echo "single: n=$n_single p50=$p50 ms p99=$p99 ms max=$max ms"
  for stage in "4 requested->scheduled" "5 scheduled->pulling" "6 pulling->started"; do
    read -r p50 p99 max <<<"$(pct "${stage%% *}" single)"
    printf '  %-22s p50=%s ms p99=%s ms max=%s ms\n' "${stage#* }" "$p50" "$p99" "$max"
  done
fi
n_burst=$(awk '$1 == "burst"' "$WORK/latencies.txt" | wc -l)
if ((n_burst > 0)); then
  read -r p50 p99 max <<<"$(pct 3 burst)"
  read -r span post_span <<<"$(awk '$1 == "burst" {
      if (first == "" || $2 < first) first = $2
      if (last == "" || $2 > last) last = $2
      if (end == "" || $7 > end) end = $7 }
    END { printf "%.3f %.3f\n", end - first, last - first }' "$WORK/latencies.txt")"
  rate=$(awk -v n="$n_burst" -v s="$span" 'BEGIN { printf "%.0f", n / (s / 1000) }')
  echo "burst $n_burst: p50=$p50 ms p99=$p99 ms max=$max ms started/s=$rate" \
    "(first Requested -> last Started: $span ms; the posts took $post_span ms)"
  for stage in "4 requested->scheduled" "5 scheduled->pulling" "6 pulling->started"; do
    read -r p50 p99 max <<<"$(pct "${stage%% *}" burst)"
    printf '  %-22s p50=%s ms p99=%s ms max=%s ms\n' "${stage#* }" "$p50" "$p99" "$max"
  done
fi
