#!/usr/bin/env bash
# The one test command (README, CI): typecheck + build, lint, then every jest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export CDK8S_CHECK_UPGRADE=false
npx tsc -p .
npx eslint .
bash scripts/imports.sh --check
npx jest "$@"
