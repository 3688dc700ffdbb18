#!/usr/bin/env bash
# Builds the test guest (cached) and qemu_bench, then runs it. Arguments go to qemu_bench
# (--cycles N --max-concurrent K --rounds R --accel tcg|kvm). See bench/qemu/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
template=$(scripts/guest/build-image)
bazel build -c opt //bench/qemu:qemu_bench >/dev/null
exec bazel-bin/bench/qemu/qemu_bench --template "$template" "$@"
