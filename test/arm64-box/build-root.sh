#!/bin/bash
# Builds the arm64 Debian 12 box that `make arm64-box` installs the firmware tarball on:
#   OUT/root.img   ext4 root (label ARM64ROOT), no partition table
#   OUT/vmlinuz, OUT/initrd.img   the root's own kernel and initramfs, for qemu's direct kernel boot
#
#   build-root.sh OUT
#
# From Debian's packages only: mmdebstrap --architectures=arm64 runs the arm64 maintainer scripts
# through qemu-user-static (binfmt_misc, registered here if it is not yet). The box gets what
# os-overlay/packages.txt asks for except nodejs (the firmware carries its own Node), plus
# systemd-networkd (DHCP on eth0) and one unit, arm64-box-payload.service: at boot it mounts the
# disk labelled PAYLOAD and runs its run.sh as root with its output on the serial console. That
# is how a test drives the box without a login. Root is locked. Takes ~6-10 min on 2 cores.
set -euo pipefail
die() { echo "build-root.sh: $*" >&2; exit 1; }
out=${1:?usage: build-root.sh OUT}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ "$(id -u)" = 0 ] || die "needs root"
for t in mmdebstrap mkfs.ext4 qemu-aarch64-static; do command -v "$t" >/dev/null || die "$t is missing (apt-get install mmdebstrap e2fsprogs qemu-user-static binfmt-support)"; done

# binfmt_misc: the kernel must run aarch64 ELF files through qemu-aarch64-static (flag F: the
# interpreter is opened now, so it also works inside the chroot).
[ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 || die "cannot register qemu-aarch64 with binfmt_misc"

packages=$(grep -v '^#' "$here/../../os-overlay/packages.txt" | grep -v '^$' | grep -vx nodejs | paste -sd, -)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/arm64-box-root.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/root"
mmdebstrap --architectures=arm64 --variant=minbase --mode=root \
  --include="systemd-sysv,udev,kmod,linux-image-arm64,iproute2,netbase,procps,curl,ca-certificates,$packages" \
  --customize-hook='echo arm64-box >"$1/etc/hostname"' \
  --customize-hook='printf "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n" >"$1/etc/systemd/network/eth0.network"' \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd.service' \
  --customize-hook='mkdir -p "$1/mnt/payload"' \
  --customize-hook="cp '$here/payload.service' \"\$1/etc/systemd/system/arm64-box-payload.service\"" \
  --customize-hook='chroot "$1" systemctl enable arm64-box-payload.service' \
  --customize-hook='printf "/dev/vda / ext4 defaults,noatime 0 1\n" >"$1/etc/fstab"' \
  --customize-hook='cp "$1"/boot/vmlinuz-* "$1/../vmlinuz"; cp "$1"/boot/initrd.img-* "$1/../initrd.img"' \
  bookworm "$tmp/root" http://deb.debian.org/debian >"$tmp/mmdebstrap.log" 2>&1 \
  || { tail -30 "$tmp/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
size_mib=$(( $(du -sm "$tmp/root" | cut -f1) + 768 ))
mkfs.ext4 -q -L ARM64ROOT -d "$tmp/root" "$tmp/root.img" "${size_mib}M"
mkdir -p "$out"
mv "$tmp/vmlinuz" "$tmp/initrd.img" "$tmp/root.img" "$out/"
dpkg-query --admindir="$tmp/root/var/lib/dpkg" -W -f='${Package} ${Version}\n' >"$out/packages.txt"
echo "build-root.sh: $out (root $(du -h --apparent-size "$out/root.img" | cut -f1), $(wc -l <"$out/packages.txt") packages)" >&2
