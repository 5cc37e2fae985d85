#!/bin/sh
# Runs inside the arm64 box at boot (arm64-box-payload.service, as root; output on the serial
# console). Installs the firmware tarball the way README.md says, shows the unit running under
# systemd, hands the host the admin token, then waits for the host's snapshot (taken through the
# API over the port forward), stops the service and powers off. Every line the host reads starts
# with "ARM64-BOX ".
set -u
p=/mnt/payload
say() { echo "ARM64-BOX $*"; }
t0=$(cut -d' ' -f1 /proc/uptime)
say "payload-start uptime=$t0 arch=$(uname -m) kernel=$(uname -r) os=$(. /etc/os-release; echo "$PRETTY_NAME" | tr ' ' _)"
say "os-node $(command -v node || echo none)"

cd /root
tar xzf "$p"/netboot-appliance-*-arm64.tar.gz
cd netboot-appliance-*-arm64
# README: sudo ./os-overlay/install.sh --with-packages. The packages of os-overlay/packages.txt
# were installed when the box's root was built (build-root.sh; the box has no route out), so
# install.sh runs without --with-packages.
if ./os-overlay/install.sh; then say "install-ok"; else say "install-failed rc=$?"; fi

# The LAN the PCs boot from: the box's second NIC (the host's lab bridge), 198.18.0.2/24, and
# the appliance in full DHCP mode on it (an isolated network, as in docs/raspberry-pi.md's
# "full" example). The first NIC is qemu's user network, only for network-online.target.
if [ -f "$p/lan-mac" ]; then
  lan=$(ip -o link | awk -v m="$(cat "$p/lan-mac")" 'index($0, m) { sub(":$", "", $2); print $2 }')
  ip addr add 198.18.0.2/24 dev "$lan" && ip link set "$lan" up
  /opt/netboot/node/bin/node -e '
    const fs = require("fs"); const f = "/etc/netboot/config.json"; const c = JSON.parse(fs.readFileSync(f, "utf8"));
    c.dhcp = { ...c.dhcp, mode: "full", interface: process.argv[1], range: ["198.18.0.100", "198.18.0.150"], netmask: "255.255.255.0", conflictProbeSeconds: 1 };
    fs.writeFileSync(f, JSON.stringify(c, null, 2) + "\n");' "$lan"
  say "lan $lan $(ip -o -4 addr show dev "$lan" | awk '{print $4}') dhcp=full"
fi

# README: sudo netboot prepare-disk (lists disks), then sudo netboot prepare-disk /dev/sdX sdX.
# The empty data disk is the virtio disk with serial netboot-data; its filesystem appearing
# starts the service (99-netboot-disk.rules).
netboot prepare-disk | sed 's/^/ARM64-BOX disks /'
dev=$(readlink -f /dev/disk/by-id/virtio-netboot-data)
if netboot prepare-disk "$dev" "$(basename "$dev")"; then say "prepare-disk-ok $dev"; else say "prepare-disk-failed rc=$?"; fi

# The udev rule should have started the service; prepare-disk's own message names the manual
# way (sudo systemctl start netboot-appliance) for when it did not.
auto=no
for i in $(seq 1 90); do
  case "$(systemctl is-active netboot-appliance.service)" in active|activating) auto=yes; break ;; esac
  sleep 1
done
say "autostart $auto"
[ "$auto" = yes ] || systemctl start netboot-appliance.service

# Wait for the service to serve.
for i in $(seq 1 180); do
  [ -s /srv/netboot/admin.token ] && curl -fsS -o /dev/null -H "Authorization: Bearer $(cat /srv/netboot/admin.token)" http://127.0.0.1/api/status && break
  sleep 1
done
pid=$(systemctl show -p MainPID --value netboot-appliance.service)
say "unit active=$(systemctl is-active netboot-appliance.service) enabled=$(systemctl is-enabled netboot-appliance.service) sub=$(systemctl show -p SubState --value netboot-appliance.service) pid=$pid user=$(ps -o user= -p "$pid") exe=$(readlink /proc/"$pid"/exe)"
say "exe-version $(/opt/netboot/node/bin/node -p 'process.version + " " + process.arch')"
say "caps $(grep -E '^Cap(Eff|Amb)' /proc/"$pid"/status | tr '\t\n' '  ')"
# The unit preloads jemalloc (issue #16): its library is mapped into the service, and the RSS it idles at.
say "allocator jemalloc-mappings=$(grep -c libjemalloc /proc/"$pid"/maps) $(grep -E '^(VmRSS|RssAnon|RssFile)' /proc/"$pid"/status | tr -s '\t\n ' ' ')"
say "mount $(findmnt -n -o SOURCE,FSTYPE,OPTIONS /srv/netboot)"
say "listening $(ss -Hlntu | awk '{print $1":"$5}' | grep -E ':(80|69|67|3260|4011)$' | sort | tr '\n' ' ')"
say "ready uptime=$(cut -d' ' -f1 /proc/uptime)"
# A golden image for the host to import (the import folder belongs to the service user).
install -o netboot -g netboot -m 0640 "$p/golden.raw" /srv/netboot/import/golden.raw
say "token $(cat /srv/netboot/admin.token)"

# The host now imports the image, adds a client and takes a snapshot through the API. Wait for it
# (at most 20 minutes), then show what the box itself sees.
tok=$(cat /srv/netboot/admin.token)
mac=$(cat "$p/mac")
for i in $(seq 1 1200); do
  if curl -fsS -H "Authorization: Bearer $tok" "http://127.0.0.1/api/clients/$mac/snapshots" 2>/dev/null | grep -q '"name":"arm64-proof"'; then
    say "snapshot-seen uptime=$(cut -d' ' -f1 /proc/uptime)"
    break
  fi
  sleep 1
done
say "rss-kib $(ps -o rss= -p "$pid")"
systemctl stop netboot-appliance.service
say "stopped result=$(systemctl show -p Result --value netboot-appliance.service) status=$(systemctl show -p ExecMainStatus --value netboot-appliance.service)"
journalctl -u netboot-appliance.service -o cat --no-pager | tail -n 40 | sed 's/^/ARM64-BOX journal /'
say "done"
systemctl poweroff
