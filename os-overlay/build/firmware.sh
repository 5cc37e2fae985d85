#!/bin/bash
# `make firmware`: the release for a Raspberry Pi (or any arm64 Debian box):
#   dist/netboot-appliance-<version>-arm64.tar.gz
#     netboot-appliance-<version>-arm64/
#       appliance.cjs            the bundle (make build)
#       better_sqlite3.node      better-sqlite3's addon cross-compiled for aarch64
#       os-overlay/              install.sh, packages.txt, rootfs/ (systemd units, config, udev rule)
#       docs/raspberry-pi.md
#       VERSION                  version, git commit, Node ABI the addon needs
#       SHA256SUMS               of every other file (install.sh checks it)
#
# The addon is compiled with Debian's aarch64 cross compilers and npm's bundled node-gyp against
# the local Node headers (/usr/include/node: C headers are the same on every architecture), so
# no download from nodejs.org is needed. A temp copy of node_modules/better-sqlite3 is built, so
# the x86 addon the tests use is untouched. The result is cached in .cache/firmware/, keyed by
# better-sqlite3's version and the Node ABI: rebuilding takes ~3 minutes on 2 cores.
#
# Environment: DIST_DIR (default dist), NETBOOT_FIRMWARE_CACHE (default .cache/firmware),
# NODE_HEADERS_DIR (default: the prefix of the running node, e.g. /usr), SOURCE_DATE_EPOCH.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dist=${DIST_DIR:-$root/dist}
cache=${NETBOOT_FIRMWARE_CACHE:-$root/.cache/firmware}
die() { echo "firmware.sh: $*" >&2; exit 1; }
say() { echo "firmware.sh: $*" >&2; }

[ -f "$dist/appliance.cjs" ] || die "$dist/appliance.cjs is missing: run make build first"
version=$(node -p "require('$root/package.json').version")
bsq_dir=$root/node_modules/better-sqlite3
[ -f "$bsq_dir/package.json" ] || die "node_modules/better-sqlite3 is missing: run npm ci"
bsq_version=$(node -p "require('$bsq_dir/package.json').version")
node_version=$(node -p process.versions.node)
node_abi=$(node -p process.versions.modules)
headers=${NODE_HEADERS_DIR:-$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")}
[ -f "$headers/include/node/node.h" ] || die "no Node headers under $headers/include/node (set NODE_HEADERS_DIR)"
for t in aarch64-linux-gnu-gcc aarch64-linux-gnu-g++ aarch64-linux-gnu-strip; do
  command -v "$t" >/dev/null || die "$t is missing: apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu"
done

# npm's own node-gyp: always present where npm is, and the same one `npm install` uses.
npm_root=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
node_gyp=$npm_root/node_modules/node-gyp/bin/node-gyp.js
[ -f "$node_gyp" ] || node_gyp=$npm_root/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js
[ -f "$node_gyp" ] || die "cannot find npm's bundled node-gyp under $npm_root"

# ELF e_machine (offset 18, little-endian u16) must be 183 = EM_AARCH64.
elf_machine() { od -An -j18 -N2 -tu2 "$1" | tr -d ' '; }

key=better-sqlite3-$bsq_version-abi$node_abi-linux-arm64
addon=$cache/$key/better_sqlite3.node
if [ -f "$addon" ] && [ "$(elf_machine "$addon")" = 183 ]; then
  say "using cached $key"
else
  say "cross-compiling better-sqlite3 $bsq_version for arm64 (Node $node_version headers, ABI $node_abi)"
  work=$(mktemp -d "${TMPDIR:-/tmp}/nb-firmware-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir "$work/better-sqlite3"
  (cd "$bsq_dir" && tar --exclude=./build -cf - .) | tar -xf - -C "$work/better-sqlite3"
  start=$(date +%s)
  (
    cd "$work/better-sqlite3"
    # CC/CXX/LINK/AR for the target; *_host for anything gyp builds to run during the build.
    export CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ AR=aarch64-linux-gnu-ar
    export CC_host=gcc CXX_host=g++ LINK_host=g++ AR_host=ar
    node "$node_gyp" rebuild --release --arch=arm64 --nodedir="$headers" --jobs="$(nproc)" >"$work/build.log" 2>&1 \
      || { tail -40 "$work/build.log" >&2; exit 1; }
  )
  built=$work/better-sqlite3/build/Release/better_sqlite3.node
  [ "$(elf_machine "$built")" = 183 ] || die "the built addon is not an aarch64 ELF"
  aarch64-linux-gnu-strip --strip-unneeded "$built"
  mkdir -p "$cache/$key"
  cp "$built" "$addon.tmp.$$" && mv -f "$addon.tmp.$$" "$addon"
  say "built in $(( $(date +%s) - start )) s, cached as $addon"
fi

# Reproducible archive: fixed owner, sorted names, timestamps from the commit (or now).
commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}
name=netboot-appliance-$version-arm64
stage=$(mktemp -d "${TMPDIR:-/tmp}/nb-firmware-stage.XXXXXX")
trap 'rm -rf "$stage" ${work:+"$work"}' EXIT
dir=$stage/$name
mkdir -p "$dir/docs"
cp "$dist/appliance.cjs" "$dir/appliance.cjs"
cp "$addon" "$dir/better_sqlite3.node"
(cd "$root" && tar --exclude=build -cf - os-overlay) | tar -xf - -C "$dir"
[ -f "$root/docs/raspberry-pi.md" ] && cp "$root/docs/raspberry-pi.md" "$dir/docs/"
cat >"$dir/VERSION" <<EOF
version=$version
arch=arm64
commit=$commit
built=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
node=$node_version
node_module_version=$node_abi
better_sqlite3=$bsq_version
EOF
(cd "$dir" && find . -type f ! -name SHA256SUMS | LC_ALL=C sort | sed 's|^\./||' | xargs sha256sum >SHA256SUMS)

mkdir -p "$dist"
out=$dist/$name.tar.gz
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$stage" -cf - "$name" | gzip -n -9 >"$out.tmp"
mv -f "$out.tmp" "$out"
say "wrote $out ($(du -h "$out" | cut -f1))"
echo "$out"
