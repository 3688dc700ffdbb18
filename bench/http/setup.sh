#!/usr/bin/env bash
# Installs what bench/http/run.sh needs on Debian/Ubuntu (by hand; CI does not run it).
set -euo pipefail
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
if [[ ${#need[@]} -eq 0 ]]; then
  echo "setup.sh: wrk, nginx, etcd, etcdctl, openssl and curl are installed"
  exit 0
fi
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
# The packages start system services; the benchmark runs its own instances on free ports.
for service in nginx etcd; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
    echo "setup.sh: note: the system $service service is running (the benchmark does not use it)"
  fi
done
