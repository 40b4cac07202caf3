#!/bin/sh
# per-user-milter is a Node.js program kept under /usr/lib/per-user-milter
# with its own node_modules (debian/README.source).
exec /usr/bin/node /usr/lib/per-user-milter/dist/src/main.js "$@"
