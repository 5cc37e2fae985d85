# Sourced by build-disk.sh and build-disk-arm64.sh: what both test disks' busybox initramfs share.
#   initramfs_skeleton ROOT KVER BUSYBOX FIXTURES   the tree, busybox, /init and the DHCP hook
#   copy_modules KERNEL_TREE KVER ROOT "module names"
#   pack_initramfs ROOT OUT.gz                       a reproducible gzipped newc cpio
# (iscsistart's shared libraries are each script's own: ldd on x64, the NEEDED closure on arm64.)

initramfs_skeleton() {
  local root=$1 kver=$2 busybox=$3 fix=$4
  mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,run,tmp,mnt/root,lib/modules/"$kver",etc/iscsi}
  cp "$busybox" "$root/bin/busybox"
  ln -s busybox "$root/bin/sh"
  # The kernel's request_module() runs /sbin/modprobe.
  ln -s ../bin/busybox "$root/sbin/modprobe"
  cp "$fix/initramfs-init.sh" "$root/init"
  cp "$fix/udhcpc.script" "$root/etc/udhcpc.script"
  chmod 755 "$root/init" "$root/etc/udhcpc.script"
  # iscsistart -b ignores this file (it uses the iBFT's name, or the command line's) but refuses
  # to run without it on some versions; the name here is never used for the login.
  echo "InitiatorName=iqn.2026-11.local.netboot:e2e-unused" > "$root/etc/iscsi/initiatorname.iscsi"
}

pack_initramfs() {
  (cd "$1" && find . -print0 | sort -z | cpio --null -o -H newc --quiet --reproducible) | gzip -9n > "$2"
}

# Copies kernel modules into an initramfs tree.
# The wanted set plus the closure of `modinfo -F depends` (built-in ones skipped), then depmod for
# busybox modprobe and a load order (dependencies first) in /etc/modules-order, from the host's
# kmod (it reads foreign-architecture modules too).
copy_modules() {
  local tree=$1 kver=$2 root=$3 want=$4
  local km=$tree/lib/modules/$kver m f rel d
  [ -f "$km/modules.dep" ] || depmod -b "$tree" "$kver"
  declare -A seen=()
  local queue=($want)
  while [ ${#queue[@]} -gt 0 ]; do
    m=${queue[0]}; queue=("${queue[@]:1}")
    [ -n "${seen[$m]:-}" ] && continue
    seen[$m]=1
    f=$(modinfo -b "$tree" -k "$kver" -n "$m" 2>/dev/null || true)
    case "$f" in
      /*.ko) ;;
      *) continue ;; # built in
    esac
    rel=${f#"$km/"}
    mkdir -p "$root/lib/modules/$kver/$(dirname "$rel")"
    cp "$f" "$root/lib/modules/$kver/$rel"
    for d in $(modinfo -b "$tree" -k "$kver" -F depends "$m" | tr ',' ' '); do queue+=("$d"); done
  done
  cp "$km/modules.order" "$km/modules.builtin" "$km/modules.builtin.modinfo" "$root/lib/modules/$kver/" 2>/dev/null || true
  depmod -b "$root" "$kver"
  : > "$root/etc/modules-order"
  for m in $want; do
    modprobe -d "$root" -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" {print $2}' |
      sed "s#^$root/lib/modules/$kver/##" >> "$root/etc/modules-order"
  done
  awk '!seen[$0]++' "$root/etc/modules-order" > "$root/etc/modules-order.tmp" && mv "$root/etc/modules-order.tmp" "$root/etc/modules-order"
}
