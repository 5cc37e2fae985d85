#!/bin/bash
# Builds a golden image: a Debian disk that boots from this appliance over iSCSI, with BIOS or
# UEFI firmware, and shuts down cleanly with its root disk still behind the network.
#
#   build-debian-image.sh [options] OUTPUT
#
#   --size SIZE         disk size (truncate syntax: 2G, 1536M); default 2G (a sparse file)
#   --format raw|qcow2  output format; default raw (both import with POST /api/images)
#   --suite SUITE       Debian suite; default bookworm (Debian 12, the only one tested)
#   --mirror URL        Debian mirror; default http://deb.debian.org/debian
#   --packages a,b,c    extra packages to install (comma separated)
#   --network MODE      how the installed system treats the boot NIC (see below); default networkd
#   --hostname NAME     default debian-netboot
#   --root-password-file FILE   set root's password from the first line of FILE (default: root
#                       locked; log in by adding a user or keys in a --customize script)
#   --customize SCRIPT  run SCRIPT ROOTDIR after installing (as mmdebstrap customize hooks are):
#                       add files, users, units. Run `update-initramfs -u` in the chroot yourself
#                       if you change what goes into the initramfs.
#
# Needs root (loop devices, mount) and the Debian packages mmdebstrap, grub-pc-bin,
# grub-efi-amd64-bin, grub2-common, dosfstools, mtools, fdisk, e2fsprogs, qemu-utils (qcow2 only).
# Takes 1.5-2 minutes on 2 cores (downloading ~150 MiB of packages); the root holds ~650 MiB, most
# of it the kernel's modules, and the sparse image file allocates about that much.
#
# What is in the image and why:
# - GPT: 1 MiB BIOS boot partition (GRUB's core.img for BIOS), 64 MiB EFI system partition
#   (GRUB as \EFI\BOOT\BOOTX64.EFI, the removable-media path, so no NVRAM entry is needed: iPXE's
#   UEFI sanboot starts exactly that file), ext4 root. GRUB for both comes from the build host's
#   grub-pc-bin / grub-efi-amd64-bin; its modules and grub.cfg live in the root's /boot/grub.
#   grub.cfg is written here (not by update-grub) and boots /vmlinuz and /initrd.img, the symlinks
#   Debian's kernel packages keep pointing at the newest kernel, so `apt upgrade` on the golden
#   image keeps it bootable without GRUB packages in the image.
# - initramfs-tools + open-iscsi with ISCSI_AUTO=true (/etc/iscsi/iscsi.initramfs): the initramfs
#   reads the iBFT iPXE left behind (initiator name, target, LUN, CHAP) and runs `iscsistart -b`.
#   `ip=dhcp` on the kernel command line makes it configure the NIC first (ipconfig).
# - The boot NIC is never taken down while root lives behind it:
#     networkd (default): systemd-networkd with a .network file for every wired NIC, DHCP for
#       lease renewals and KeepConfiguration=yes (keep the initramfs's address on start, never
#       drop addresses on stop or when a lease lapses) and no DHCP RELEASE. No ifupdown.
#     none: nothing manages the NIC after the initramfs; the address it got stays (no renewals).
#     ifupdown-noauto: ifupdown installed, `iface NIC inet manual` with NO auto/allow-hotplug line
#       (open-iscsi's udev hook marks the iBFT NIC as configured so `ifup -a` leaves it alone).
#     ifupdown-hotplug: what Debian's installer writes (`allow-hotplug` + `inet dhcp`): known to
#       hang at shutdown (ifup@NIC.service runs ifdown). Only for reproducing that bug.
# - Serial console on ttyS0 (115200) as well as the screen, for GRUB, the kernel and a getty.
# - open-iscsi's own shutdown logic keeps the root session: open-iscsi.service's stop runs
#   umountiscsi.sh, which records the sessions backing / in /run/open-iscsi/shutdown-keep-sessions,
#   and logout-all.sh logs out of every session but those. The kernel keeps the session to the end;
#   systemd-shutdown remounts / read-only, syncs and powers off.
set -euo pipefail

die() { echo "build-debian-image: $*" >&2; exit 1; }
say() { echo "build-debian-image: $*" >&2; }

size=2G format=raw suite=bookworm mirror=http://deb.debian.org/debian extra="" network=networkd
hostname=debian-netboot password_file="" customize="" output=""
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --format) format=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    --packages) extra=$2; shift 2 ;;
    --network) network=$2; shift 2 ;;
    --hostname) hostname=$2; shift 2 ;;
    --root-password-file) password_file=$2; shift 2 ;;
    --customize) customize=$(realpath "$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$output" ] || die "one OUTPUT only"; output=$1; shift ;;
  esac
done
[ -n "$output" ] || die "usage: build-debian-image.sh [options] OUTPUT (see --help)"
[ "$(id -u)" = 0 ] || die "needs root (loop devices and mount)"
case "$format" in raw|qcow2) ;; *) die "--format raw or qcow2" ;; esac
case "$network" in networkd|none|ifupdown-noauto|ifupdown-hotplug) ;; *) die "--network networkd, none, ifupdown-noauto or ifupdown-hotplug" ;; esac
[ -z "$customize" ] || [ -x "$customize" ] || die "$customize is not executable"
for t in mmdebstrap grub-install grub-mkimage sfdisk losetup partx mkfs.ext4 mkfs.vfat mcopy blkid; do
  command -v "$t" >/dev/null || die "$t is missing (apt install mmdebstrap grub-pc-bin grub-efi-amd64-bin grub2-common dosfstools mtools fdisk e2fsprogs)"
done
[ -d /usr/lib/grub/i386-pc ] || die "grub-pc-bin is missing"
[ -d /usr/lib/grub/x86_64-efi ] || die "grub-efi-amd64-bin is missing"

# Packages: the kernel, systemd as init, udev, open-iscsi and initramfs-tools for the iSCSI root,
# e2fsprogs for fsck, iproute2 to look at the network. minbase + these is about 700 MiB on disk,
# most of it the kernel's modules.
packages=linux-image-amd64,systemd,systemd-sysv,udev,open-iscsi,initramfs-tools,kmod,e2fsprogs,iproute2,zstd
case "$network" in ifupdown-*) packages=$packages,ifupdown,isc-dhcp-client ;; esac
[ -z "$extra" ] || packages=$packages,$extra

work=$(mktemp -d /tmp/build-debian-image.XXXXXX)
loop="" mnt=$work/mnt
cleanup() {
  set +e
  mountpoint -q "$mnt" && umount "$mnt"
  [ -z "$loop" ] || losetup -d "$loop"
  rm -rf "$work"
}
trap cleanup EXIT

raw=$work/disk.raw
truncate -s "$size" "$raw"
# GPT with a BIOS boot partition (GRUB's i386-pc core.img), an ESP and the root.
sfdisk --quiet "$raw" <<EOF
label: gpt
start=2048, size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name="bios-boot"
size=64MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp"
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"
EOF
loop=$(losetup --find --show --partscan "$raw")
# Some kernels (containers, loop.max_part=0) do not scan on attach: ask for the partitions.
[ -b "${loop}p3" ] || partx --add "$loop" 2>/dev/null || true
for i in $(seq 50); do [ -b "${loop}p3" ] && break; sleep 0.1; done
[ -b "${loop}p3" ] || die "no partitions on $loop"
mkfs.vfat -F 32 -s 1 -n ESP "${loop}p2" >/dev/null
mkfs.ext4 -q -L root "${loop}p3"
uuid=$(blkid -s UUID -o value "${loop}p3")
mkdir -p "$mnt"
mount "${loop}p3" "$mnt"
rmdir "$mnt/lost+found"

# The image's own configuration, written before the packages' maintainer scripts run where it
# matters (the initramfs is built once, with ISCSI_AUTO).
setup=$work/setup.sh
cat >"$setup" <<EOF
#!/bin/sh
set -e
root=\$1
mkdir -p "\$root/etc/iscsi" "\$root/etc/initramfs-tools/conf.d"
echo ISCSI_AUTO=true >"\$root/etc/iscsi/iscsi.initramfs"
EOF
chmod +x "$setup"

configure=$work/configure.sh
cat >"$configure" <<'EOF'
#!/bin/sh
# Runs with the new root as $1 (an mmdebstrap customize hook).
set -e
root=$1 network=$2 hostname=$3 uuid=$4
echo "$hostname" >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$hostname" >"$root/etc/hosts"
printf 'UUID=%s / ext4 errors=remount-ro 0 1\n' "$uuid" >"$root/etc/fstab"
case "$network" in
  networkd)
    mkdir -p "$root/etc/systemd/network"
    cat >"$root/etc/systemd/network/50-netboot-wired.network" <<'NET'
# Written by build-debian-image.sh: the root disk lives behind the boot NIC (iSCSI).
# KeepConfiguration=yes: keep the address the initramfs configured when networkd starts, and
# never drop addresses when networkd stops or a lease runs out; no DHCP RELEASE at stop.
[Match]
Type=ether
Name=en* eth*

[Network]
DHCP=ipv4
KeepConfiguration=yes
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
SendRelease=no
NET
    chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
    # No systemd-networkd-wait-online: nothing here needs network-online, and it would wait 2 min
    # for links networkd cannot configure.
    chroot "$root" systemctl disable systemd-networkd-wait-online.service >/dev/null 2>&1 || true
    ;;
  none) ;;
  ifupdown-noauto|ifupdown-hotplug)
    # Interface name: qemu's e1000 at slot 3 is ens3; a real PC's NIC is named after its slot
    # (enp3s0, eno1). Only these tests need a fixed name.
    {
      printf 'auto lo\niface lo inet loopback\n\n'
      if [ "$network" = ifupdown-hotplug ]; then
        printf '# What the Debian installer writes: takes the boot NIC down at shutdown.\nallow-hotplug ens3\niface ens3 inet dhcp\n'
      else
        printf '# The iSCSI boot NIC: no auto/allow-hotplug line, so neither networking.service\n# nor ifup@ens3.service ever runs ifdown on it. The initramfs configured it.\niface ens3 inet manual\n'
      fi
    } >"$root/etc/network/interfaces"
    ;;
esac
# The serial console gets a login prompt (the getty generator starts serial-getty@ttyS0 for
# console=ttyS0; enabling it keeps it there when the command line changes).
chroot "$root" systemctl enable serial-getty@ttyS0.service >/dev/null 2>&1
# Every clone makes its own initiator name when iscsid first starts (open-iscsi's startup
# checks); the boot session itself uses the iBFT's name, which the appliance gives per client.
echo GenerateName=yes >"$root/etc/iscsi/initiatorname.iscsi"
# Every clone must make its own machine id (systemd creates it on first boot).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
EOF
chmod +x "$configure"

hooks=(--setup-hook "$setup \"\$1\"" --customize-hook "$configure \"\$1\" $network $hostname $uuid")
if [ -n "$password_file" ]; then
  pw=$(head -n1 "$password_file")
  hooks+=(--customize-hook "echo 'root:$pw' | chroot \"\$1\" chpasswd")
fi
[ -z "$customize" ] || hooks+=(--customize-hook "$customize \"\$1\"")
hooks+=(--customize-hook 'rm -rf "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/archives/*.deb')

say "installing Debian $suite into the root partition (mmdebstrap)"
# stdin from /dev/null: mmdebstrap reads a sources.list from stdin when it is not a terminal.
mmdebstrap --variant=minbase --include="$packages" --components=main \
  --aptopt='Apt::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  "${hooks[@]}" \
  "$suite" "$mnt" "deb $mirror $suite main" "deb $mirror $suite-updates main" \
  "deb http://security.debian.org/debian-security $suite-security main" </dev/null
[ -e "$mnt/vmlinuz" ] && [ -e "$mnt/initrd.img" ] || die "no /vmlinuz or /initrd.img symlink in the image"

say "installing GRUB for BIOS and UEFI"
# BIOS: boot.img in the protective MBR, core.img in the BIOS boot partition, modules in /boot/grub.
grub-install --target=i386-pc --boot-directory="$mnt/boot" --modules="part_gpt ext2" "$loop"
# UEFI: GRUB as the removable-media loader \EFI\BOOT\BOOTX64.EFI, built with grub-mkimage (what
# grub-install --removable --no-nvram produces) and copied with mtools, so the build host needs no
# vfat driver. Its embedded config finds the root by UUID and loads /boot/grub from there.
mkdir -p "$mnt/boot/grub/x86_64-efi"
cp /usr/lib/grub/x86_64-efi/*.mod /usr/lib/grub/x86_64-efi/*.lst "$mnt/boot/grub/x86_64-efi/"
printf 'search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\n' "$uuid" >"$work/early.cfg"
grub-mkimage -O x86_64-efi -o "$work/BOOTX64.EFI" -c "$work/early.cfg" -p /boot/grub \
  part_gpt ext2 search search_fs_uuid normal
mmd -i "${loop}p2" ::/EFI ::/EFI/BOOT
mcopy -i "${loop}p2" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
cat >"$mnt/boot/grub/grub.cfg" <<EOF
# Written by build-debian-image.sh. /vmlinuz and /initrd.img follow kernel upgrades.
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=2
search --no-floppy --fs-uuid --set=root $uuid
# ip=dhcp: the initramfs configures the NIC (ipconfig) before iscsistart -b logs in from the iBFT.
set cmdline="root=UUID=$uuid ro ip=dhcp console=tty0 console=ttyS0,115200n8"
menuentry 'Debian (iSCSI root)' {
  linux /vmlinuz \$cmdline
  initrd /initrd.img
}
menuentry 'Debian (iSCSI root), previous kernel' {
  linux /vmlinuz.old \$cmdline
  initrd /initrd.img.old
}
EOF
used=$(df -m --output=used "$mnt" | tail -1 | tr -d ' ')
# The downloaded .debs and apt lists were deleted but their blocks are still allocated in the
# image file: discard them (the loop device punches holes), so the image stays sparse.
fstrim "$mnt" || say "fstrim failed: the image keeps the deleted package files' blocks"
umount "$mnt"
losetup -d "$loop"; loop=""

mkdir -p "$(dirname "$output")"
if [ "$format" = qcow2 ]; then
  qemu-img convert -f raw -O qcow2 "$raw" "$output.tmp"
else
  cp --sparse=always "$raw" "$output.tmp"
fi
mv "$output.tmp" "$output"
say "done: $output ($format, $size, ${used} MiB used on root, root UUID $uuid)"
