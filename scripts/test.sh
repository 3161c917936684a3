#!/usr/bin/env bash
# The one test command (README, CI): typecheck + build, lint, then every jest suite (which also
# runs the imports drift check, test/constructs/imports.test.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
export CDK8S_CHECK_UPGRADE=false

# The etcd tests start a real etcd: Debian's etcd-server (3.4), installed here when missing.
ETCD_BIN="${ETCD_BIN:-/usr/bin/etcd}"
if [ ! -x "$ETCD_BIN" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: etcd not found at $ETCD_BIN; install Debian's etcd-server (sudo apt-get install etcd-server) or set ETCD_BIN" >&2
    exit 1
  fi
  echo "test.sh: etcd not found at $ETCD_BIN; installing Debian's etcd-server with apt-get" >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server; } >/tmp/test-sh-etcd-install.log 2>&1; then
    echo "test.sh: installing etcd-server failed (log: /tmp/test-sh-etcd-install.log):" >&2
    tail -n 20 /tmp/test-sh-etcd-install.log >&2
    exit 1
  fi
  if [ ! -x "$ETCD_BIN" ]; then
    echo "test.sh: etcd-server is installed but $ETCD_BIN is still missing; set ETCD_BIN to its path" >&2
    exit 1
  fi
  echo "test.sh: installed $("$ETCD_BIN" --version | head -n 1)" >&2
fi
export ETCD_BIN

npx tsc -p .
npx eslint .
if [ "$#" -gt 0 ]; then
  npx jest "$@"
else
  # The flood test asserts the server's /healthz latency while it is flooded: it runs alone, after
  # the rest, so that another test file on the other jest worker does not take the CPU it measures.
  npx jest --testPathIgnorePatterns '/test/flood\.test\.ts$'
  npx jest test/flood.test.ts
fi
