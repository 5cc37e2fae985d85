#!/bin/bash
# Lays the pinned Node.js (tools/node.lock) for one platform into a folder:
#
#   tools/node.sh linux-x64|linux-arm64 DIR     # DIR/bin/node, DIR/include/node/...
#   tools/node.sh --version                     # prints the pinned version
#
# The package comes from the npm registry through the machine's own npm (`npm pack`, which also
# keeps it in npm's cache), is checked against the sha512 in tools/node.lock before anything is
# unpacked, and is unpacked into DIR.tmp then renamed, so DIR is either complete or absent.
# DIR/.node-lock records what was laid: a DIR whose record matches is left alone (no network).
# Any Node can run this script, the machine's old one included: it only calls npm.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lock=$here/node.lock
die() { echo "tools/node.sh: $*" >&2; exit 1; }
version=$(awk '$1 == "version" { print $2 }' "$lock")
[ -n "$version" ] || die "no version in $lock"
if [ "${1:-}" = --version ]; then echo "$version"; exit 0; fi
platform=${1:?usage: tools/node.sh linux-x64|linux-arm64 DIR}
dir=${2:?usage: tools/node.sh linux-x64|linux-arm64 DIR}
want=$(awk -v p="$platform" '$1 == p { print $2 }' "$lock")
[ -n "$want" ] || die "no integrity for $platform in $lock"
record="node-$platform@$version $want"
if [ -f "$dir/.node-lock" ] && [ "$(cat "$dir/.node-lock")" = "$record" ] && [ -x "$dir/bin/node" ]; then exit 0; fi

command -v npm >/dev/null || die "npm is missing (Debian: apt-get install npm)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/node-pack.XXXXXX")
trap 'rm -rf "$tmp" "$dir.tmp"' EXIT
echo "tools/node.sh: fetching node-$platform@$version" >&2
# --ignore-scripts: the package has none, and nothing from it runs before the check below.
(cd "$tmp" && npm pack --silent --ignore-scripts "node-$platform@$version" >/dev/null) || die "npm pack node-$platform@$version failed"
tgz=$tmp/node-$platform-$version.tgz
[ -f "$tgz" ] || die "npm pack did not write $tgz"
have=sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)
[ "$have" = "$want" ] || die "node-$platform-$version.tgz has $have, tools/node.lock wants $want: refusing it"
rm -rf "$dir.tmp"
mkdir -p "$dir.tmp"
tar -xzf "$tgz" -C "$dir.tmp" --strip-components=1 --no-same-owner
[ -x "$dir.tmp/bin/node" ] && [ -f "$dir.tmp/include/node/node.h" ] || die "the package has no bin/node or include/node/node.h"
echo "$record" >"$dir.tmp/.node-lock"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
echo "tools/node.sh: $dir (Node $version, $platform)" >&2
