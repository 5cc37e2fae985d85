#!/usr/bin/env bash
# Builds the e2e test client's disk from Debian packages, with no mounts and no loop devices:
#   MBR (syslinux mbr.bin) | p1 FAT16 "boot" (active): vmlinuz, initrd.gz, syslinux.cfg, ldlinux.*,
#                          |    \EFI\BOOT\BOOTX64.EFI (syslinux.efi) + ldlinux.e64 + syslinux.cfg
#                          | p2 ext4 "root": /boot-log.txt is appended to by every boot
# Usage: build-disk.sh OUT_DIR DEB_CACHE_DIR KERNEL_PACKAGE FIXTURES_DIR
# Writes OUT_DIR/disk.img and OUT_DIR/layout.env (partition offsets in 512-byte sectors).
# Called by build-disk.ts, which caches OUT_DIR by a hash of this recipe.
set -euo pipefail

OUT=$1
DEBS=$2
KPKG=$3
FIX=$4

BOOT_MIB=24
ROOT_MIB=16
WORK=$(mktemp -d "${OUT}.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- kernel -------------------------------------------------------------------------------
mkdir -p "$DEBS"
deb=$(ls "$DEBS/${KPKG}_"*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
  # apt-get download writes into the current directory; the _apt sandbox warning is harmless.
  (cd "$DEBS" && apt-get download -q "$KPKG" >/dev/null 2>&1) || { echo "apt-get download $KPKG failed" >&2; exit 1; }
  deb=$(ls "$DEBS/${KPKG}_"*.deb | head -n1)
fi
dpkg -x "$deb" "$WORK/kernel"
KVER=$(ls "$WORK/kernel/lib/modules" | head -n1)
cp "$WORK/kernel/boot/vmlinuz-$KVER" "$WORK/vmlinuz"

# --- initramfs ----------------------------------------------------------------------------
R=$WORK/initramfs
# shellcheck source=initramfs-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/initramfs-lib.sh"
initramfs_skeleton "$R" "$KVER" /bin/busybox "$FIX"

# iscsistart (open-iscsi) and every shared library it links against.
cp /usr/sbin/iscsistart "$R/sbin/iscsistart"
for lib in $(ldd /usr/sbin/iscsistart | grep -o '/[^ ]*'); do
  mkdir -p "$R$(dirname "$lib")"
  cp -L "$lib" "$R$lib"
done

# Modules: the wanted set plus the closure of `modinfo -F depends`, then depmod for busybox
# modprobe, and a load order (dependencies first) from the host's kmod.
copy_modules "$WORK/kernel" "$KVER" "$R" "e1000 virtio_pci virtio_net efivarfs crc32c_generic scsi_transport_iscsi libiscsi libiscsi_tcp iscsi_tcp iscsi_ibft sd_mod ext4"
pack_initramfs "$R" "$WORK/initrd.gz"

# --- FAT boot partition (BIOS syslinux + UEFI syslinux.efi) ---------------------------------
cat > "$WORK/syslinux.cfg" <<CFG
DEFAULT e2e
PROMPT 0
TIMEOUT 0
LABEL e2e
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND console=ttyS0,115200 quiet panic=-1 rdinit=/init
CFG
BOOT=$WORK/boot.part
mkfs.vfat -n E2EBOOT -C "$BOOT" $((BOOT_MIB * 1024)) >/dev/null
mcopy -i "$BOOT" "$WORK/vmlinuz" "$WORK/initrd.gz" "$WORK/syslinux.cfg" ::/
mmd -i "$BOOT" ::/EFI ::/EFI/BOOT
# syslinux.efi reads syslinux.cfg and ldlinux.e64 from its own directory; paths in the config
# are absolute so they resolve to the partition root (test/e2e/README.md, "Lab facts").
mcopy -i "$BOOT" /usr/lib/SYSLINUX.EFI/efi64/syslinux.efi ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$BOOT" /usr/lib/syslinux/modules/efi64/ldlinux.e64 ::/EFI/BOOT/ldlinux.e64
mcopy -i "$BOOT" "$WORK/syslinux.cfg" ::/EFI/BOOT/syslinux.cfg
syslinux --install "$BOOT"

# --- ext4 root partition ------------------------------------------------------------------
mkdir -p "$WORK/rootdir"
echo "netboot e2e root disk (built $(date -u +%Y-%m-%dT%H:%M:%SZ) from $KPKG)" > "$WORK/rootdir/README"
ROOT=$WORK/root.part
mkfs.ext4 -q -F -L e2eroot -d "$WORK/rootdir" "$ROOT" ${ROOT_MIB}M >/dev/null

# --- assemble -----------------------------------------------------------------------------
P1_START=2048
P1_SECTORS=$((BOOT_MIB * 2048))
P2_START=$((P1_START + P1_SECTORS))
P2_SECTORS=$((ROOT_MIB * 2048))
TOTAL=$((P2_START + P2_SECTORS))
IMG=$WORK/disk.img
truncate -s $((TOTAL * 512)) "$IMG"
sfdisk -q "$IMG" <<SF
label: dos
start=$P1_START, size=$P1_SECTORS, type=e, bootable
start=$P2_START, size=$P2_SECTORS, type=83
SF
dd if=/usr/lib/SYSLINUX/mbr.bin of="$IMG" bs=440 count=1 conv=notrunc status=none
dd if="$BOOT" of="$IMG" bs=512 seek=$P1_START conv=notrunc status=none
dd if="$ROOT" of="$IMG" bs=512 seek=$P2_START conv=notrunc status=none

mkdir -p "$OUT"
mv "$IMG" "$OUT/disk.img"
cat > "$OUT/layout.env" <<ENV
KERNEL_VERSION=$KVER
BOOT_START=$P1_START
BOOT_SECTORS=$P1_SECTORS
ROOT_START=$P2_START
ROOT_SECTORS=$P2_SECTORS
ENV
echo "built $OUT/disk.img ($((TOTAL / 2048)) MiB, kernel $KVER, initrd $(stat -c %s "$WORK/initrd.gz") bytes)"
