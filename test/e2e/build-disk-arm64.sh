#!/usr/bin/env bash
# Builds the ARM64 e2e client's disk (issue #15, the GRUB road) from Debian's arm64 packages,
# with no mounts, no loop devices and no emulation:
#   GPT | p1 EFI system partition (FAT): vmlinuz, initrd.gz, extlinux/extlinux.conf (the command
#       |    line the appliance reads), nothing bootable by itself: the appliance's GRUB road
#       |    reads kernel and initramfs from here
#       | p2 ext4 "root": /boot-log.txt is appended to by every boot
# The arm64 packages are unpacked (mmdebstrap --variant=extract: no maintainer scripts, so no
# qemu-user) into PKG_DIR, which also gives the signed shimaa64.efi and grubnetaa64.efi.
# Usage: build-disk-arm64.sh OUT_DIR PKG_DIR FIXTURES_DIR
# Writes OUT_DIR/disk.img, OUT_DIR/layout.env and OUT_DIR/signed/{shimaa64,grubaa64}.efi.
set -euo pipefail

OUT=$1
PKG=$2
FIX=$3
BOOT_MIB=64
ROOT_MIB=16
PACKAGES=linux-image-arm64,busybox-static,open-iscsi,libkmod2,libopeniscsiusr,libssl3,libzstd1,liblzma5,libc6,shim-signed,grub-efi-arm64-signed
WORK=$(mktemp -d "${OUT}.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- the arm64 packages -------------------------------------------------------------------
if [ ! -f "$PKG/.complete" ]; then
  rm -rf "$PKG"
  mmdebstrap --variant=extract --architectures=arm64 --mode=root --include="$PACKAGES" \
    bookworm "$PKG" http://deb.debian.org/debian >"$WORK/mmdebstrap.log" 2>&1 \
    || { tail -20 "$WORK/mmdebstrap.log" >&2; echo "mmdebstrap (arm64 extract) failed" >&2; exit 1; }
  touch "$PKG/.complete"
fi
KVER=$(ls "$PKG/lib/modules" | head -n1)
cp "$PKG/boot/vmlinuz-$KVER" "$WORK/vmlinuz"

# --- initramfs (the x64 disk's /init: it is architecture-neutral shell) -------------------
R=$WORK/initramfs
# shellcheck source=initramfs-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/initramfs-lib.sh"
initramfs_skeleton "$R" "$KVER" "$PKG/bin/busybox" "$FIX"
cp "$PKG/sbin/iscsistart" "$R/sbin/iscsistart"
# Its shared libraries: the NEEDED closure, looked up in the arm64 tree (ldd cannot run aarch64).
libdirs="$PKG/lib/aarch64-linux-gnu $PKG/usr/lib/aarch64-linux-gnu"
mkdir -p "$R/lib/aarch64-linux-gnu"
cp -L "$PKG/lib/ld-linux-aarch64.so.1" "$R/lib/ld-linux-aarch64.so.1"
queue=("$PKG/sbin/iscsistart")
declare -A have=()
while [ ${#queue[@]} -gt 0 ]; do
  f=${queue[0]}; queue=("${queue[@]:1}")
  for n in $(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [ -n "${have[$n]:-}" ] && continue
    have[$n]=1
    src=""
    for d in $libdirs; do [ -e "$d/$n" ] && { src="$d/$n"; break; }; done
    [ -n "$src" ] || { echo "arm64 library $n not found" >&2; exit 1; }
    cp -L "$src" "$R/lib/aarch64-linux-gnu/$n"
    queue+=("$src")
  done
done

copy_modules "$PKG" "$KVER" "$R" "virtio_pci virtio_net efivarfs crc32c_generic scsi_transport_iscsi libiscsi libiscsi_tcp iscsi_tcp sd_mod ext4"
pack_initramfs "$R" "$WORK/initrd.gz"

# --- EFI system partition -----------------------------------------------------------------
cat > "$WORK/extlinux.conf" <<CFG
DEFAULT e2e
LABEL e2e
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND console=ttyAMA0 quiet panic=-1 rdinit=/init
CFG
BOOT=$WORK/boot.part
mkfs.vfat -F 32 -n E2EESP -C "$BOOT" $((BOOT_MIB * 1024)) >/dev/null
mcopy -i "$BOOT" "$WORK/vmlinuz" "$WORK/initrd.gz" ::/
mmd -i "$BOOT" ::/extlinux
mcopy -i "$BOOT" "$WORK/extlinux.conf" ::/extlinux/extlinux.conf

# --- ext4 root ----------------------------------------------------------------------------
mkdir -p "$WORK/rootdir"
echo "netboot e2e arm64 root disk ($KVER)" > "$WORK/rootdir/README"
ROOT=$WORK/root.part
mkfs.ext4 -q -F -L e2eroot -d "$WORK/rootdir" "$ROOT" ${ROOT_MIB}M >/dev/null

# --- assemble (GPT) -----------------------------------------------------------------------
P1_START=2048
P1_SECTORS=$((BOOT_MIB * 2048))
P2_START=$((P1_START + P1_SECTORS))
P2_SECTORS=$((ROOT_MIB * 2048))
TOTAL=$((P2_START + P2_SECTORS + 2048))
IMG=$WORK/disk.img
truncate -s $((TOTAL * 512)) "$IMG"
sfdisk -q "$IMG" <<SF
label: gpt
start=$P1_START, size=$P1_SECTORS, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
start=$P2_START, size=$P2_SECTORS, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
SF
dd if="$BOOT" of="$IMG" bs=512 seek=$P1_START conv=notrunc status=none
dd if="$ROOT" of="$IMG" bs=512 seek=$P2_START conv=notrunc status=none

mkdir -p "$OUT/signed"
cp "$PKG/usr/lib/shim/shimaa64.efi.signed" "$OUT/signed/shimaa64.efi"
cp "$PKG/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed" "$OUT/signed/grubaa64.efi"
mv "$IMG" "$OUT/disk.img"
cat > "$OUT/layout.env" <<ENV
KERNEL_VERSION=$KVER
BOOT_START=$P1_START
BOOT_SECTORS=$P1_SECTORS
ROOT_START=$P2_START
ROOT_SECTORS=$P2_SECTORS
ENV
echo "built $OUT/disk.img ($((TOTAL / 2048)) MiB, arm64 kernel $KVER, initrd $(stat -c %s "$WORK/initrd.gz") bytes)"
