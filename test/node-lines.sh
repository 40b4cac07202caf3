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
# Each line is installed into a directory every account can read: serve,
# started as root, drops to milter.user and starts its runner process with
# this same Node.js binary (npx's cache under /root is not reachable then).
prefix=$(mktemp -d /var/tmp/pum-node-lines.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
chmod 0755 "$prefix"
for line in "${lines[@]}"; do
  npm install --silent --no-audit --no-fund --prefix "$prefix/$line" "node@${line}" >/dev/null
  node_bin=$(readlink -f "$prefix/$line/node_modules/.bin/node")
  chmod -R a+rX "$prefix/$line"
  echo "=== Node.js ${line}: $("$node_bin" --version)"
  # test/run.mjs starts the test runner with process.execPath: this same Node.js.
  "$node_bin" test/run.mjs unit component
done
