#!/usr/bin/env bash
# The one test command (README, CI): typecheck + build, lint, then every jest suite (which also
# runs the imports drift check, test/constructs/imports.test.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
export CDK8S_CHECK_UPGRADE=false
npx tsc -p .
npx eslint .
npx jest "$@"
