#!/bin/bash
# Builds image-store/rbd/addon/build/Release/rbd_io.node (the RBD backend's librbd binding) with
# npm's bundled node-gyp against the local Node headers (no download). Needs librbd-dev and a C
# compiler. About 1 s. Cross-build for aarch64: see docs/rbd.md ("The addon on arm64").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
npm_root=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
node_gyp=$npm_root/node_modules/node-gyp/bin/node-gyp.js
[ -f "$node_gyp" ] || node_gyp=$npm_root/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js
headers=${NODE_HEADERS_DIR:-$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")}
[ -f /usr/include/rbd/librbd.h ] || { echo "rbd addon: librbd-dev is not installed" >&2; exit 1; }
node "$node_gyp" rebuild --release --nodedir="$headers" "$@" >build.log 2>&1 || { tail -30 build.log >&2; exit 1; }
rm -f build.log
