#!/usr/bin/env bash
# Installs the servers and tools the tests need, from Debian's packages, when
# they are missing: redis-server (standalone, cluster, and sentinel mode), memcached,
# and chromium for the browser test. The MongoDB-compatible test server
# (FerretDB) is built from Go modules by the tests themselves.
set -euo pipefail
need=()
command -v redis-server   >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli      >/dev/null 2>&1 || need+=(redis-tools)
command -v memcached      >/dev/null 2>&1 || need+=(memcached)
command -v chromium       >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-test-deps: need ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "install-test-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian starts the packaged services; the tests start their own on free
# ports, so the packaged ones are not needed.
for s in redis-server memcached; do
  (command -v systemctl >/dev/null 2>&1 && systemctl stop "$s" >/dev/null 2>&1) || true
done
exit 0
