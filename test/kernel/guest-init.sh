#!/bin/sh
# /init of the kernel attach test guest (see build-initramfs.sh and run-guest.ts). Runs cairnd
# inside the guest, attaches a volume through the real nbd driver by netlink and by ioctls with
# 1 and 4 connections, checks O_DIRECT writes, discard, ext4 + fsck, resize, and a kill -9 of
# cairnd under a running dd; then powers off. Everything is local to the guest: no network.
#
# Protocol on the console, read by the host:
#   CAIRN-STEP <name> ok|fail <seconds> <detail>
#   CAIRN-VERDICT PASS|FAIL
export PATH=/bin:/usr/bin:/usr/sbin:/sbin
export HOME=/tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs -o size=1200m tmp /tmp
mount -t tmpfs run /run
dmesg -n 1
exec </dev/console >/dev/console 2>&1

export CAIRN_API=unix:/run/cairn/api.sock
FAILED=0
STARTS=0
CAIRND=
DEV=

now() { cut -d' ' -f1 /proc/uptime; }
report() { # name result start detail
  echo "CAIRN-STEP $1 $2 $(awk -v a="$3" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') $4"
}
# step NAME FUNCTION ARGS...: runs in this shell (functions set DEV, CAIRND), output to a file.
step() {
  name=$1
  shift
  begin=$(now)
  if "$@" > /tmp/step.out 2>&1; then
    report "$name" ok "$begin" "$(tail -n 1 /tmp/step.out | tr -s '\t ' '  ')"
  else
    FAILED=1
    report "$name" fail "$begin" "$(tail -n 4 /tmp/step.out | tr '\n' '|' | tr -s '\t ' '  ')"
  fi
}
fail() { echo "$*"; return 1; }
cairn() { node /cairn/bin/cairn "$@"; }

load_modules() {
  for module in $(cat /modules/load-order); do
    case "$module" in
      nbd.ko) insmod "/modules/$module" nbds_max=8 max_part=0 || return 1 ;;
      *) insmod "/modules/$module" 2>/dev/null || true ;;
    esac
  done
  [ -e /sys/block/nbd0 ] || { fail "no /sys/block/nbd0 after insmod nbd.ko"; return 1; }
  echo "nbd.ko loaded, $(ls -d /sys/block/nbd* | wc -l) devices, kernel $(uname -r), $(nproc) CPUs"
}

start_cairnd() {
  STARTS=$((STARTS + 1))
  log=/tmp/cairnd.$STARTS.log
  mkdir -p /run/cairn
  node /cairn/bin/cairnd --data-dir /tmp/cairn --node-name guest --nbd-socket /run/cairn/nbd.sock \
    --api unix:/run/cairn/api.sock --nbd-listen none --log-format text > "$log" 2>&1 &
  CAIRND=$!
  i=0
  while [ $i -lt 1200 ]; do
    if grep -q 'cairnd started' "$log" && [ -S /run/cairn/api.sock ]; then
      echo "cairnd pid $CAIRND ready (start $STARTS): $(grep -o 'attached=[0-9]*' "$log")"
      return 0
    fi
    kill -0 "$CAIRND" 2>/dev/null || { cat "$log"; fail "cairnd exited during start"; return 1; }
    usleep 100000
    i=$((i + 1))
  done
  cat "$log"
  fail "cairnd did not start within 120 s"
}

create_volume() {
  cairn volume create v --size 256MiB
}

# Writes MIB MiB of /tmp/pattern at offset AT MiB with O_DIRECT (+ fsync = FLUSH), reads them back with O_DIRECT, compares.
write_verify() { # device at_mib mib
  dd if=/tmp/pattern of="$1" bs=1M count="$3" seek="$2" oflag=direct conv=fsync 2>/tmp/dd.err || { cat /tmp/dd.err; return 1; }
  dd if="$1" of=/tmp/back bs=1M count="$3" skip="$2" iflag=direct 2>/tmp/dd.err || { cat /tmp/dd.err; return 1; }
  dd if=/tmp/pattern of=/tmp/expected bs=1M count="$3" 2>/dev/null
  cmp /tmp/expected /tmp/back || { fail "read back differs from what was written"; return 1; }
}

attach() { # method connections [extra cairn flags]
  method=$1
  connections=$2
  shift 2
  DEV=$(cairn volume attach v --method "$method" --connections "$connections" "$@") || { fail "attach failed: $DEV"; return 1; }
  [ -b "$DEV" ] || { fail "attach printed '$DEV', not a block device"; return 1; }
  index=${DEV#/dev/nbd}
  [ -e "/sys/block/nbd$index/pid" ] || { fail "$DEV is not running"; return 1; }
  size=$(($(cat "/sys/block/nbd$index/size") * 512))
  queues=$(ls "/sys/block/nbd$index/mq" | wc -l)
  backend=$(cat "/sys/block/nbd$index/backend" 2>/dev/null || echo none)
  if [ "$method" = netlink ]; then
    case "$backend" in cairn:*) ;; *) fail "backend identifier is '$backend'"; return 1 ;; esac
  fi
  cairn volume list | grep -q "$DEV" || { fail "volume list does not show $DEV"; return 1; }
  cairn volume inspect v | grep -q "$DEV via $method, $connections connection(s)" || { cairn volume inspect v; fail "volume inspect does not show the attachment"; return 1; }
  echo "$DEV: $size bytes, $connections socket(s), $queues hardware queue(s), backend $backend"
}

detach() {
  out=$(cairn volume detach v) || { fail "detach failed: $out"; return 1; }
  index=${DEV#/dev/nbd}
  [ ! -e "/sys/block/nbd$index/pid" ] || { fail "$DEV still running after detach"; return 1; }
  echo "$out"
}

pattern_io() { # at_mib
  write_verify "$DEV" "$1" 16 || return 1
  blkdiscard "$DEV" || { fail "blkdiscard failed"; return 1; }
  echo "16 MiB O_DIRECT write + read back equal; blkdiscard ok"
}

filesystem() {
  mkfs.ext4 -q -F "$DEV" || { fail "mkfs.ext4 failed"; return 1; }
  mount -t ext4 "$DEV" /mnt || { fail "mount failed"; return 1; }
  dd if=/dev/urandom of=/mnt/big bs=1M count=8 2>/dev/null
  mkdir -p /mnt/tree
  for i in 1 2 3 4 5 6 7 8; do dd if=/dev/urandom of="/mnt/tree/f$i" bs=4k count=$((i * 8)) 2>/dev/null; done
  (cd /mnt && md5sum big tree/*) > /tmp/sums
  sync
  umount /mnt || { fail "umount failed"; return 1; }
  e2fsck -fn "$DEV" > /tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; fail "e2fsck -fn found problems"; return 1; }
  mount -t ext4 -o ro "$DEV" /mnt || { fail "second mount failed"; return 1; }
  (cd /mnt && md5sum -c -s /tmp/sums) || { umount /mnt; fail "files differ after remount"; return 1; }
  umount /mnt
  echo "mkfs.ext4, 9 files written, sync, umount, e2fsck -fn clean, remount: checksums equal"
}

resize() {
  cairn volume resize v --size 320MiB > /tmp/resize.out || { cat /tmp/resize.out; fail "resize failed"; return 1; }
  index=${DEV#/dev/nbd}
  size=$(($(cat "/sys/block/nbd$index/size") * 512))
  [ "$size" -eq $((320 * 1024 * 1024)) ] || { cat /tmp/resize.out; fail "$DEV shows $size bytes after resize"; return 1; }
  write_verify "$DEV" 300 16 || return 1
  echo "$DEV grew to $size bytes while attached; O_DIRECT I/O at 300 MiB ok"
}

# Stops cairnd with SIGNAL (KILL: a crash; TERM: an upgrade's restart) while a dd writes to the
# device; a new cairnd must hand the kernel fresh sockets (RECONFIGURE) before the
# dead-connection timeout, and the dd must finish without an I/O error.
restart_under_dd() { # signal
  signal=$1
  dd if=/dev/urandom of=/tmp/pattern2 bs=1M count=48 2>/dev/null
  errors_before=$(dmesg | grep -ci 'i/o error')
  dd_begin=$(now)
  # One dd, paced by its input (1 MiB per 0.1 s), so it is surely running when cairnd dies.
  (for i in $(seq 0 47); do dd if=/tmp/pattern2 bs=1M skip="$i" count=1 2>/dev/null; usleep 100000; done) |
    dd of="$DEV" bs=1M iflag=fullblock oflag=direct conv=fsync 2>/tmp/dd-kill.err &
  writer=$!
  sleep 2
  kill -0 "$writer" 2>/dev/null || { fail "dd finished before the kill"; return 1; }
  kill -"$signal" "$CAIRND"
  killed=$(now)
  wait "$CAIRND" 2>/dev/null
  rc=$?
  if [ "$signal" = TERM ] && [ "$rc" -ne 0 ]; then fail "cairnd exited $rc on SIGTERM"; return 1; fi
  start_cairnd > /tmp/restart.out 2>&1 || { cat /tmp/restart.out; return 1; }
  back=$(now)
  wait "$writer"
  rc=$?
  dd_end=$(now)
  [ "$rc" -eq 0 ] || { cat /tmp/dd-kill.err; fail "dd failed with status $rc"; return 1; }
  dd if="$DEV" of=/tmp/back bs=1M count=48 iflag=direct 2>/dev/null || { fail "read back failed"; return 1; }
  cmp /tmp/pattern2 /tmp/back || { fail "data after the restart differs"; return 1; }
  errors_after=$(dmesg | grep -ci 'i/o error')
  [ "$errors_after" -eq "$errors_before" ] || { dmesg | grep -i 'i/o error' | tail -n 3; fail "the kernel logged I/O errors"; return 1; }
  state=$(cairn volume list | grep "$DEV" || true)
  [ -n "$state" ] || { fail "the restarted cairnd does not list $DEV"; return 1; }
  awk -v a="$dd_begin" -v k="$killed" -v r="$back" -v e="$dd_end" -v s="$signal" 'BEGIN {
    printf "dd of 48 MiB: ok (no I/O error), %.1f s in all; cairnd back %.1f s after SIG%s; dd done %.1f s after that; data equal\n", e - a, r - k, s, e - r }'
}

stop_cairnd() {
  kill -TERM "$CAIRND"
  wait "$CAIRND"
  rc=$?
  [ "$rc" -eq 0 ] || { fail "cairnd exited $rc on SIGTERM"; return 1; }
  echo "cairnd stopped cleanly"
}

echo "CAIRN-GUEST init at $(now) s uptime"
step boot true
step modules load_modules
dd if=/dev/urandom of=/tmp/pattern bs=1M count=16 2>/dev/null
step cairnd-start start_cairnd
step volume-create create_volume
step netlink-1-attach attach netlink 1
step netlink-1-io pattern_io 0
step netlink-1-detach detach
step netlink-4-attach attach netlink 4
step netlink-4-io pattern_io 32
step netlink-4-ext4 filesystem
step netlink-4-detach detach
step ioctl-1-attach attach ioctl 1
step ioctl-1-io pattern_io 64
step ioctl-1-detach detach
step ioctl-4-attach attach ioctl 4
step ioctl-4-io pattern_io 96
step ioctl-4-detach detach
step restart-attach attach netlink 2 --io-timeout 10 --dead-timeout 120
step resize resize
step kill9-restart restart_under_dd KILL
step sigterm-restart restart_under_dd TERM
step restart-detach detach
step cairnd-stop stop_cairnd

if [ "$FAILED" -eq 0 ]; then echo "CAIRN-VERDICT PASS"; else
  echo "---- cairnd logs ----"
  tail -n 40 /tmp/cairnd.*.log
  echo "---- dmesg ----"
  dmesg | tail -n 40
  echo "CAIRN-VERDICT FAIL"
fi
sync
poweroff -f
