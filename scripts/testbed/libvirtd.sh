#!/usr/bin/env bash
# libvirtd (with virtlogd) for tests, on machines where PID 1 is not systemd.
#
#   libvirtd.sh start DIR   start virtlogd + libvirtd unless they already run,
#                           wait until `virsh -c qemu:///system list` answers
#   libvirtd.sh stop DIR    kill the daemons this DIR started (by recorded PID)
#
# Idempotent: when a daemon already runs (started by an earlier `start`, by
# another test run, or by the admin), it is reused and nothing is recorded for
# it, so `stop` never kills a daemon it did not start. `stop` also leaves the
# daemons running while any domain is still defined: another test run on the
# same machine may be using them (virsh would lose its connection mid-test).
#
# DIR keeps the PIDs (virtlogd.pid, libvirtd.pid: only for daemons started
# here); the daemons' logs go to $LOG_DIR. Installs nothing: the
# packages come from .ci/packages.txt (libvirt-daemon-system, libvirt-clients,
# qemu-system-x86, qemu-utils).
set -euo pipefail

URI=qemu:///system
# libvirt's own pid files (as root): the daemons write them whoever starts them.
SYSTEM_LIBVIRTD_PID=/run/libvirtd.pid
SYSTEM_VIRTLOGD_PID=/run/virtlogd.pid
READY_TIMEOUT=${FERRY_LIBVIRTD_TIMEOUT:-90}
# The daemons' logs live outside any test's scratch directory: a daemon is
# reused by later runs, and libvirtd fails every domain start (QEMU child
# "exit status 125") once the file it logs to has been deleted with a scratch dir.
LOG_DIR=${FERRY_LIBVIRTD_LOG_DIR:-/var/tmp/ferry-libvirtd}

die() { echo "libvirtd.sh: $*" >&2; exit 1; }
usage() { die "usage: libvirtd.sh start DIR | stop DIR"; }

alive() { # PIDFILE
  [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

answers() {
  timeout 20 virsh -c "$URI" list --name >/dev/null 2>&1
}

# Debian's udev rule makes /dev/kvm root:kvm 0660, and the qemu user
# (libvirt-qemu) is in group kvm. Without udev (the test machines), the node
# stays root:root 0600: libvirtd's capability probe then finds KVM enabled
# while the qemu user cannot open /dev/kvm, so libvirtd declares its QEMU
# capability cache outdated at every lookup and probes QEMU again (~4 s each,
# 30+ s for one `virsh define`, more for a `virsh start`). Give /dev/kvm the
# ownership udev would. The test domains are type='qemu' (TCG) and never use KVM.
kvm_like_udev() {
  [[ -c /dev/kvm ]] && getent group kvm >/dev/null || return 0
  [[ $(stat -c %G /dev/kvm) == kvm ]] && return 0
  chgrp kvm /dev/kvm && chmod g+rw /dev/kvm \
    || echo "libvirtd.sh: could not give /dev/kvm to group kvm; every virsh call will re-probe QEMU (slow)" >&2
}

start() {
  local dir=$1
  for bin in virsh libvirtd virtlogd timeout; do
    command -v "$bin" >/dev/null || die "$bin not found: run bash scripts/install-test-deps.sh (libvirt-daemon-system, libvirt-clients)"
  done
  kvm_like_udev
  mkdir -p "$dir" "$LOG_DIR"
  dir=$(cd "$dir" && pwd)

  if ! alive "$SYSTEM_VIRTLOGD_PID"; then
    LIBVIRT_LOG_OUTPUTS="3:file:$LOG_DIR/virtlogd.log" virtlogd -d \
      || die "virtlogd -d failed; see $LOG_DIR/virtlogd.log"
    cp "$SYSTEM_VIRTLOGD_PID" "$dir/virtlogd.pid"
  fi
  if ! alive "$SYSTEM_LIBVIRTD_PID"; then
    # libvirtd -d returns once the daemon has initialised (it reports back
    # through a pipe), but the socket may take a moment more on a busy machine.
    LIBVIRT_LOG_OUTPUTS="3:file:$LOG_DIR/libvirtd.log" libvirtd -d \
      || die "libvirtd -d failed; see $LOG_DIR/libvirtd.log"
    cp "$SYSTEM_LIBVIRTD_PID" "$dir/libvirtd.pid"
  fi

  local deadline=$(( $(date +%s) + READY_TIMEOUT ))
  until answers; do
    alive "$SYSTEM_LIBVIRTD_PID" || die "libvirtd exited; last log lines: $(tail -n 5 "$LOG_DIR/libvirtd.log" 2>/dev/null | tr '\n' '|')"
    [[ $(date +%s) -lt $deadline ]] || die "virsh -c $URI list did not answer within ${READY_TIMEOUT}s; see $LOG_DIR/libvirtd.log"
    sleep 0.2
  done
}

stop_one() { # DIR NAME
  local pidfile=$1/$2.pid
  [[ -f $pidfile ]] || return 0
  local pid
  pid=$(cat "$pidfile")
  # Only signal the process if it still is that daemon (PIDs get reused).
  if kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

stop() {
  local dir=$1
  [[ -d $dir ]] || return 0
  if [[ -f $dir/libvirtd.pid ]] && alive "$dir/libvirtd.pid"; then
    local domains
    domains=$(timeout 20 virsh -c "$URI" list --all --name 2>/dev/null | sed '/^$/d' || true)
    if [[ -n $domains ]]; then
      echo "libvirtd.sh: leaving libvirtd running: domains still defined: $(echo "$domains" | tr '\n' ' ')" >&2
      return 0
    fi
  fi
  stop_one "$dir" libvirtd
  # virtlogd serves running QEMU processes' consoles; stop it after libvirtd.
  stop_one "$dir" virtlogd
}

(( $# == 2 )) || usage
case $1 in
  start) start "$2" ;;
  stop) stop "$2" ;;
  *) usage ;;
esac
