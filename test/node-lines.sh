#!/usr/bin/env bash
# Runs the unit and component tests under each supported Node.js LTS line
# (22, 24, 26 by default; or the major versions given as arguments), with
# Node.js from the npm registry's `node` package. The build is made once: tsc
# emits plain ES2022, the same for every line. The whole suite runs on the
# machine's own Node.js (npm test); this adds the lines we promise.
#
#   bash test/node-lines.sh          # 22 24 26
#   bash test/node-lines.sh 24       # one line
set -euo pipefail
cd "$(dirname "$0")/.."

lines=("$@")
[ ${#lines[@]} -gt 0 ] || lines=(22 24 26)

[ -f dist/src/main.js ] || npm run build --silent
for line in "${lines[@]}"; do
  echo "=== Node.js ${line}: $(npx -y -p "node@${line}" node --version)"
  # test/run.mjs starts the test runner with process.execPath: this same Node.js.
  npx -y -p "node@${line}" node test/run.mjs unit component
done
