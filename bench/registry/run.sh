#!/usr/bin/env bash
# OCI registry throughput of cloisterd against docker-registry (CNCF distribution 2.8), with
# //bench:registry_bench. See bench/registry/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bench/registry/run.sh [options]

Starts cloisterd (its registry listener, where the OCI /v2/ endpoints live) and docker-registry
(filesystem storage), both on ephemeral loopback ports with their data in one work directory
on the same disk, and runs //bench:registry_bench against each in alternating rounds:

  push_large  one blob of --large-mb MiB streamed from a file      MB/s
  pull_large  the same blob back to a file, SHA-256 checked        MB/s
  push_small  --small-count blobs of --small-bytes, --concurrency  blobs/s
              connections (threads, one client each)
  pull_small  the same blobs back, each SHA-256 checked            blobs/s

It prints each round's figures, then per-server medians side by side with the median of the
per-round ratios (cloisterd / docker-registry), each server's CPU time per phase and peak RSS
(VmHWM from /proc/PID/status, over the whole run), and, as the reference, the work disk's
sequential write and read rates measured with dd (1 GiB of random bytes, direct I/O,
fdatasync). A cloisterd whose registry listener does not answer GET /v2/ with 200 (its OCI
endpoints are not there yet) is reported as SKIPPED, loudly, and docker-registry's figures are
still printed.

Options:
  --rounds N           rounds (default 3)
  --large-mb N         the large blob, MiB (default 1024)
  --small-count N      small blobs per round (default 10000)
  --small-bytes N      bytes per small blob (default 4096)
  --concurrency N      connections for the small blobs (default 4)
  --mode MODE          blob uploads: monolithic (POST + PUT), chunked (POST + PATCH... + PUT)
                       or single (POST ?digest=); default monolithic
  --only SERVER        cloisterd or docker-registry (repeatable; default both)
  --no-dd              skip the dd reference
  --cloisterd PATH     cloisterd binary (default: build it, see below)
  --registry-bench PATH  registry_bench binary (default: build it)
  --workdir DIR        where the temporary directory goes (default: $TMPDIR or /var/tmp, not
                       tmpfs: the disk is part of what is measured)
  --keep               keep the temporary directory (logs, storage, bench outputs)
  -h, --help           this help

Binaries not given (or in $CLOISTERD, $REGISTRY_BENCH) are built, in the repository, with
  $BAZEL build -c opt --symlink_prefix=/ //bench:registry_bench [//api/cloisterd:cloisterd]
and taken from `$BAZEL info -c opt bazel-bin` (the bazel-* links are left alone). BAZEL
defaults to "bazel"; BAZEL="bazel --output_base=$HOME/.cache/bazel-bench" builds in a separate
output base.

Time: with the defaults, about 2.5 minutes per round for docker-registry on a busy 2-core VM
(most of it the 2 x 10000 small blobs; the blobs are generated afresh for each run, untimed),
less for cloisterd, plus 20 s of dd: about 12 minutes for 3 rounds of both.
Needs docker-registry (scripts/setup installs it), curl and dd.

Exit status: 0 every operation succeeded (cloisterd skipped or not); 1 some operation failed
or a server did not start; 2 bad arguments or a missing tool.
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/../lib.sh"

ROUNDS=3
LARGE_MB=1024
SMALL_COUNT=10000
SMALL_BYTES=4096
CONCURRENCY=4
MODE=monolithic
ONLY=()
DD=1
CLOISTERD_BIN=${CLOISTERD:-}
BENCH_BIN=${REGISTRY_BENCH:-}
DOCKER_REGISTRY=${DOCKER_REGISTRY:-/usr/bin/docker-registry}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS=${2:?}; shift ;;
    --large-mb) LARGE_MB=${2:?}; shift ;;
    --small-count) SMALL_COUNT=${2:?}; shift ;;
    --small-bytes) SMALL_BYTES=${2:?}; shift ;;
    --concurrency) CONCURRENCY=${2:?}; shift ;;
    --mode) MODE=${2:?}; shift ;;
    --only) ONLY+=("${2:?}"); shift ;;
    --no-dd) DD=0 ;;
    --cloisterd) CLOISTERD_BIN=${2:?}; shift ;;
    --registry-bench) BENCH_BIN=${2:?}; shift ;;
    *) parse_common_option "$@"; shift "$OPTION_WORDS"; continue ;;
  esac
  shift
done

require_positive "$ROUNDS" "$LARGE_MB" "$SMALL_COUNT" "$SMALL_BYTES" "$CONCURRENCY"
[[ $MODE =~ ^(monolithic|chunked|single)$ ]] || bad_usage "--mode: monolithic, chunked or single"
select_tests cloisterd docker-registry
SERVERS=("${TESTS[@]}")

require_tools "install them (scripts/setup installs docker-registry)" curl dd
if wants docker-registry && [[ ! -x $DOCKER_REGISTRY ]]; then
  bad_usage "no docker-registry at $DOCKER_REGISTRY (scripts/setup installs it)"
fi

# ---- Binaries. ----

targets=()
[[ -z $BENCH_BIN ]] && targets+=(//bench:registry_bench)
wants cloisterd && [[ -z $CLOISTERD_BIN ]] && targets+=(//api/cloisterd:cloisterd)
if [[ ${#targets[@]} -gt 0 ]]; then
  read -r -a BAZEL_CMD <<<"${BAZEL:-bazel}"
  log "building ${targets[*]} with: ${BAZEL_CMD[*]} build -c opt"
  # --symlink_prefix=/: the workspace's bazel-* links keep pointing where they did.
  (cd "$REPO" && "${BAZEL_CMD[@]}" build -c opt --symlink_prefix=/ "${targets[@]}") >&2
  BIN_DIR=$(cd "$REPO" && "${BAZEL_CMD[@]}" info -c opt bazel-bin 2>/dev/null)
  [[ -z $BENCH_BIN ]] && BENCH_BIN=$BIN_DIR/bench/registry_bench
  wants cloisterd && [[ -z $CLOISTERD_BIN ]] && CLOISTERD_BIN=$BIN_DIR/api/cloisterd/cloisterd
fi
[[ -x $BENCH_BIN ]] || bad_usage "no registry_bench at $BENCH_BIN"
BENCH_BIN=$(readlink -f "$BENCH_BIN")
if wants cloisterd; then
  [[ -x $CLOISTERD_BIN ]] || bad_usage "no cloisterd at $CLOISTERD_BIN"
  CLOISTERD_BIN=$(readlink -f "$CLOISTERD_BIN")
fi

# ---- Work directory, processes, cleanup. ----

make_work cloister-registrybench "${TMPDIR:-/var/tmp}"
WORK_FS=$(fs_type "$WORK")
WORK_DEV=$(df -P "$WORK" | awk 'NR==2 {print $1}')
trap_cleanup

INVALID=()
SKIPPED=()

http_code() {  # url: the HTTP status of a GET, 000 when nothing answers
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true
}

# ---- Servers. ----

declare -A PID URL

start_docker_registry() {
  local dir=$WORK/docker-registry port attempt i
  mkdir -p "$dir/storage"
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
    "$DOCKER_REGISTRY" serve "$dir/config.yml" >"$dir/stdout.log" 2>"$dir/stderr.log" &
    PID[docker-registry]=$!
    PIDS+=("${PID[docker-registry]}")
    for ((i = 0; i < 200; i++)); do
      kill -0 "${PID[docker-registry]}" 2>/dev/null || break
      if [[ $(http_code "http://127.0.0.1:$port/v2/") == 200 ]]; then
        URL[docker-registry]=http://127.0.0.1:$port
        log "docker-registry pid ${PID[docker-registry]} on 127.0.0.1:$port, storage $dir/storage"
        return 0
      fi
      sleep 0.05
    done
    stop_pid "${PID[docker-registry]}" docker-registry
    log "docker-registry attempt $attempt on port $port did not start: $(tail -3 "$dir/stderr.log")"
  done
  return 1
}

start_cloisterd() {  # returns 1 when cloisterd fails; 2 when its /v2/ is not there yet
  local dir=$WORK/cloisterd port code
  launch_cloisterd "$CLOISTERD_BIN" "$dir" || return 1
  PID[cloisterd]=$STARTED_PID
  port=$(sed -n 's/^registry=//p' "$dir/ready")
  if [[ -z $port ]]; then
    log "cloisterd's ready file names no registry port: $(tr '\n' ' ' <"$dir/ready")"
    return 1
  fi
  URL[cloisterd]=http://127.0.0.1:$port
  code=$(http_code "${URL[cloisterd]}/v2/")
  if [[ $code != 200 ]]; then
    CLOISTERD_SKIP="its registry listener (127.0.0.1:$port) answers GET /v2/ with HTTP $code"
    [[ $code == 000 ]] && CLOISTERD_SKIP="its registry listener (127.0.0.1:$port) does not answer"
    CLOISTERD_SKIP+=" (not 200): its OCI Distribution endpoints are not there yet"
    stop_pid "${PID[cloisterd]}" cloisterd
    return 2
  fi
  log "cloisterd pid ${PID[cloisterd]}, registry on 127.0.0.1:$port, data $dir/data"
}

peak_rss_mib() {  # pid: VmHWM in MiB, or nan
  awk '/^VmHWM:/ {printf "%.1f MiB", $2 / 1024; found = 1} END {if (!found) print "nan"}' \
    "/proc/$1/status" 2>/dev/null || echo nan
}

# ---- The disk. ----

DD_WRITE=nan DD_READ=nan
dd_rate() {  # dd's stderr: bytes / seconds in MB/s (10^6)
  awk '/copied/ {for (i = 1; i <= NF; i++) if ($i ~ /^s,?$/) s = $(i - 1);
       printf "%.0f", $1 / s / 1e6}'
}
measure_disk() {
  local src=$WORK/dd-source dst=$WORK/dd-target
  log "dd: 1 GiB of random bytes, written with oflag=direct conv=fdatasync, read with iflag=direct"
  # The source is random (the registries store random bytes) and read from the page cache.
  head -c 1G /dev/urandom >"$src"
  DD_WRITE=$(dd if="$src" of="$dst" bs=4M oflag=direct conv=fdatasync 2>&1 | dd_rate)
  rm -f "$src"
  DD_READ=$(dd if="$dst" of=/dev/null bs=4M iflag=direct 2>&1 | dd_rate)
  rm -f "$dst"
}

# ---- Rounds. ----

PHASES=(push_large pull_large push_small pull_small)
declare -A UNIT=([push_large]=MB/s [pull_large]=MB/s [push_small]=blobs/s [pull_small]=blobs/s)
declare -A FIELD=([push_large]=mb_per_s [pull_large]=mb_per_s [push_small]=blobs_per_s
                  [pull_small]=blobs_per_s)
declare -A RATES CPUS P99 RATIOS

# median (lib.sh) exits non-zero on empty input (grep in a pipeline); its "nan" is wanted here.
med() { median || true; }
fmt1() { awk -v x="$1" 'BEGIN {if (x == "nan") print "nan"; else printf "%.1f", x}'; }

field() {  # line name
  sed -n "s/.* $2=\\([^ ]*\\).*/\\1/p" <<<"$1"
}

run_bench() {  # server round: runs registry_bench, records its figures
  local server=$1 round=$2 out=$WORK/bench-$1-r$2.txt rc=0 phase line
  run_bounded 3600 "$out" "$BENCH_BIN" --url "${URL[$server]}" --large-mb "$LARGE_MB" \
    --small-count "$SMALL_COUNT" --small-bytes "$SMALL_BYTES" --concurrency "$CONCURRENCY" \
    --mode "$MODE" --workdir "$WORK" --pid "${PID[$server]}" \
    --repo "bench/$server-r$round" || rc=$?
  if [[ $rc -ne 0 ]]; then
    INVALID+=("$server round $round: registry_bench exit $rc: $(head -3 "$out.err" | tr '\n' ' ')")
    loud "INVALID: $server round $round (registry_bench exit $rc)" "$(head -5 "$out.err")"
  fi
  printf '%-5s %-16s' "$round" "$server"
  for phase in "${PHASES[@]}"; do
    line=$(grep "^REGISTRY phase=$phase " "$out" || true)
    if [[ -z $line ]]; then
      printf ' %11s' -
      continue
    fi
    RATES[$server-$phase]+="$(field "$line" "${FIELD[$phase]}") "
    CPUS[$server-$phase]+="$(field "$line" server_cpu_s) "
    P99[$server-$phase]+="$(field "$line" p99_ms) "
    printf ' %11s' "$(field "$line" "${FIELD[$phase]}")"
  done
  echo
}

# ---- Run. ----

CPU_MODEL=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
cat <<EOF
cloister registry benchmark — $(date '+%Y-%m-%d %H:%M %Z')
  servers: ${SERVERS[*]}; $ROUNDS round(s); large blob $LARGE_MB MiB
  small blobs: $SMALL_COUNT x $SMALL_BYTES bytes on $CONCURRENCY connections; uploads: $MODE
  machine: nproc=$(nproc), $CPU_MODEL, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)
  work dir: $WORK ($WORK_FS on $WORK_DEV)
  docker-registry: $("$DOCKER_REGISTRY" --version 2>&1 | head -1)
EOF
if wants cloisterd; then
  echo "  cloisterd: $CLOISTERD_BIN ($("$CLOISTERD_BIN" --version 2>&1 | head -1))"
fi
echo
if [[ $WORK_FS == tmpfs ]]; then
  loud "the work directory is on tmpfs: the figures do not include a disk" \
       "use --workdir on a real disk"
fi

[[ $DD == 1 ]] && measure_disk

ACTIVE=()
CLOISTERD_SKIP=""
if wants cloisterd; then
  rc=0
  start_cloisterd || rc=$?
  if [[ $rc == 0 ]]; then
    ACTIVE+=(cloisterd)
  elif [[ $rc == 2 ]]; then
    SKIPPED+=(cloisterd)
    loud "cloisterd SKIPPED:" "$CLOISTERD_SKIP"
  else
    INVALID+=("cloisterd did not start (see $WORK/cloisterd/stderr.log)")
  fi
fi
if wants docker-registry; then
  if start_docker_registry; then
    ACTIVE+=(docker-registry)
  else
    INVALID+=("docker-registry did not start")
    loud "docker-registry did not start"
  fi
fi

printf '%-5s %-16s %11s %11s %11s %11s\n' round server "${PHASES[@]}"
printf '%-5s %-16s %11s %11s %11s %11s\n' "" "" MB/s MB/s blobs/s blobs/s
for ((r = 1; r <= ROUNDS; r++)); do
  order=("${ACTIVE[@]}")
  if ((r % 2 == 0)) && [[ ${#ACTIVE[@]} -eq 2 ]]; then order=("${ACTIVE[1]}" "${ACTIVE[0]}"); fi
  for server in "${order[@]}"; do
    run_bench "$server" "$r"
  done
done

declare -A RSS
for server in "${ACTIVE[@]}"; do
  RSS[$server]=$(peak_rss_mib "${PID[$server]}")
done
if [[ " ${ACTIVE[*]} " == *" cloisterd "* && " ${ACTIVE[*]} " == *" docker-registry "* ]]; then
  for phase in "${PHASES[@]}"; do
    read -r -a c <<<"${RATES[cloisterd-$phase]:-}"
    read -r -a d <<<"${RATES[docker-registry-$phase]:-}"
    for ((i = 0; i < ${#c[@]} && i < ${#d[@]}; i++)); do
      RATIOS[$phase]+="$(ratio "${c[i]}" "${d[i]}") "
    done
  done
fi

show() {  # server phase: the median rate, or the reason there is none
  if [[ " ${ACTIVE[*]} " != *" $1 "* ]]; then
    [[ " ${SKIPPED[*]} " == *" $1 "* ]] && echo "skipped" || echo "-"
    return
  fi
  printf '%s %s' "$(fmt1 "$(med <<<"${RATES[$1-$2]:-}")")" "${UNIT[$2]}"
}

echo
echo "== summary (medians over $ROUNDS round(s); ratio = median of per-round cloisterd /" \
  "docker-registry)"
printf '| %-10s | %-18s | %-18s | %7s | %-23s |\n' phase cloisterd docker-registry ratio \
  "server CPU s (c / d)"
printf '|%s|%s|%s|%s|%s|\n' ------------ -------------------- -------------------- --------- \
  -------------------------
for phase in "${PHASES[@]}"; do
  q=$(med <<<"${RATIOS[$phase]:-}")
  printf '| %-10s | %-18s | %-18s | %7s | %-23s |\n' "$phase" "$(show cloisterd "$phase")" \
    "$(show docker-registry "$phase")" "$(fmt_ratio "$q")" \
    "$(med <<<"${CPUS[cloisterd-$phase]:-}") / $(med <<<"${CPUS[docker-registry-$phase]:-}")"
done
echo
printf 'p99 latency per small blob, ms: push: cloisterd %s, docker-registry %s\n' \
  "$(fmt1 "$(med <<<"${P99[cloisterd-push_small]:-}")")" \
  "$(fmt1 "$(med <<<"${P99[docker-registry-push_small]:-}")")"
printf '                                pull: cloisterd %s, docker-registry %s\n' \
  "$(fmt1 "$(med <<<"${P99[cloisterd-pull_small]:-}")")" \
  "$(fmt1 "$(med <<<"${P99[docker-registry-pull_small]:-}")")"
printf 'peak RSS (VmHWM, whole run): cloisterd %s, docker-registry %s\n' \
  "${RSS[cloisterd]:-n/a}" "${RSS[docker-registry]:-n/a}"
if [[ $DD == 1 ]]; then
  printf 'disk reference (dd, 1 GiB random, direct I/O, %s on %s): write %s MB/s, read %s MB/s\n' \
    "$WORK_FS" "$WORK_DEV" "$DD_WRITE" "$DD_READ"
fi
if [[ ${#SKIPPED[@]} -gt 0 ]]; then
  echo "Skipped: cloisterd: $CLOISTERD_SKIP"
fi
if [[ ${#INVALID[@]} -gt 0 ]]; then
  loud "SOME MEASUREMENTS ARE INVALID:" "${INVALID[@]}"
  exit 1
fi
