# Sourced by build-disk.sh and build-disk-arm64.sh: copies kernel modules into an initramfs tree.
#   copy_modules KERNEL_TREE KVER INITRAMFS_ROOT "module names"
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
