#!/bin/sh
# The e2e test's additions to the golden Debian image (build-debian-image.sh --customize):
# a oneshot unit that runs once multi-user.target is reached, appends one line per boot to
# /var/lib/netboot-e2e/boots on the iSCSI root, prints what the test checks on the serial
# console as E2E-* markers (lab.ts scans them), and powers the machine off.
set -e
root=$1
mkdir -p "$root/usr/local/sbin" "$root/etc/systemd/system/multi-user.target.wants"

cat >"$root/usr/local/sbin/netboot-e2e-boot" <<'EOF'
#!/bin/sh
# Records this boot and powers off (netboot e2e test).
out=/dev/console
say() { echo "$*" >"$out"; }
mkdir -p /var/lib/netboot-e2e
log=/var/lib/netboot-e2e/boots
n=$(( $( [ -f "$log" ] && wc -l <"$log" || echo 0 ) + 1 ))
echo "boot $n $(date -u +%Y-%m-%dT%H:%M:%SZ) $(cat /proc/sys/kernel/random/boot_id)" >>"$log"
sync "$log"
say "E2E-STAGE: multi-user boot=$n lines=$(wc -l <"$log")"
# Where root lives and how this boot logged in (the iBFT iPXE wrote).
rootdev=$(findmnt -n -o SOURCE /)
say "E2E-INFO: root=$rootdev by-path=$(ls /dev/disk/by-path/ 2>/dev/null | grep -c iscsi) sessions=$(ls /sys/class/iscsi_session 2>/dev/null | wc -l)"
chap=no
[ -s /sys/firmware/ibft/target0/chap-name ] && chap=yes
say "E2E-INFO: ibft-chap=$chap ibft-initiator=$(cat /sys/firmware/ibft/initiator/initiator-name 2>/dev/null)"
say "E2E-INFO: nic=$(cat /run/initramfs/open-iscsi.interface 2>/dev/null) addr=$(ip -4 -o addr show scope global | awk '{print $2" "$4}' | tr '\n' ' ')"
say "E2E-INFO: failed-units=$(systemctl --failed --no-legend --plain | awk '{print $1}' | tr '\n' ' ')"
say "E2E-STAGE: poweroff"
systemctl poweroff --no-block
EOF
chmod 755 "$root/usr/local/sbin/netboot-e2e-boot"

cat >"$root/etc/systemd/system/netboot-e2e-boot.service" <<'EOF'
[Unit]
Description=netboot e2e: record this boot, then power off
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/netboot-e2e-boot

[Install]
WantedBy=multi-user.target
EOF
ln -sf ../netboot-e2e-boot.service "$root/etc/systemd/system/multi-user.target.wants/netboot-e2e-boot.service"
