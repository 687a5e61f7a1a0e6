#!/usr/bin/env bash
# A throw-away single-node Ceph cluster serving S3 on 127.0.0.1, for tests.
#
#   ceph-rgw.sh start DIR [PORT]   start mon + memstore OSD + radosgw, print env lines
#   ceph-rgw.sh env DIR            print the env lines of a running cluster again
#   ceph-rgw.sh stop DIR           kill the daemons by their recorded PIDs, remove DIR
#
# With FERRY_RGW_WATCH_PID=<pid> set at start, the cluster stops itself once
# that process is gone (a test runner killed before its afterAll).
#
# Everything lives in DIR (config, keyring, mon store, logs, PIDs); data is in
# RAM (memstore), so nothing survives `stop`. No systemd, no ceph-mgr. Needs
# the Debian packages ceph-mon ceph-osd radosgw ceph-common (see .ci/packages.txt).
# The settings that make it start in seconds are explained in TESTBED.md.
set -euo pipefail

ACCESS_KEY=FERRYTESTACCESSKEY01
SECRET_KEY=ferry-test-secret-key-0123456789abcdefghij
REGION=us-east-1

die() { echo "ceph-rgw.sh: $*" >&2; exit 1; }

usage() { die "usage: ceph-rgw.sh start DIR [PORT] | env DIR | stop DIR"; }

# A free TCP port on 127.0.0.1 (the kernel picks one; the tiny race is acceptable for tests).
free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

print_env() {
  local dir=$1
  [ -f "$dir/rgw.port" ] || die "$dir: no cluster here (missing rgw.port)"
  echo "FERRY_TEST_S3_ENDPOINT=http://127.0.0.1:$(cat "$dir/rgw.port")"
  echo "AWS_ACCESS_KEY_ID=$ACCESS_KEY"
  echo "AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
  echo "AWS_REGION=$REGION"
}

# True once the S3 port answers an HTTP request (any status).
s3_answers() {
  local port=$1
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
    head -c 12 <&3 | grep -q '^HTTP/1.1'
  ) 2>/dev/null
}

wait_for() { # seconds description command...
  local limit=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + limit ))
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$what did not come up within ${limit}s; logs in $DIR/log"
    check_alive
    sleep 0.1
  done
}

# Fail fast, with the log tail, if a daemon died instead of waiting for the timeout.
check_alive() {
  local f
  for f in "$DIR"/*.pid; do
    [ -e "$f" ] || continue
    if ! kill -0 "$(cat "$f")" 2>/dev/null; then
      local name; name=$(basename "$f" .pid)
      echo "ceph-rgw.sh: $name exited; last log lines:" >&2
      tail -n 20 "$DIR/log/$name.out" "$DIR/log/"*"$name"*.log 2>/dev/null >&2 || true
      exit 1
    fi
  done
}

start() {
  for bin in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph-authtool ceph; do
    command -v "$bin" >/dev/null || die "$bin not found: apt-get install --no-install-recommends ceph-mon ceph-osd radosgw ceph-common"
  done
  [ ! -e "$DIR/rgw.port" ] || die "$DIR already holds a cluster; stop it first"
  mkdir -p "$DIR"/{mon,osd,rgw,run,log}
  DIR=$(cd "$DIR" && pwd)
  local mon_port rgw_port fsid osd_uuid
  mon_port=$(free_port)
  rgw_port=${PORT:-$(free_port)}
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)

  cat >"$DIR/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
mon initial members = a
ms bind msgr2 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
crash dir = $DIR/log
# One OSD: pools of size 1, no failure domain above the OSD itself.
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
# The default 1 s makes every map change (pool creation) slow: radosgw ~13 s instead of ~3 s.
paxos propose interval = 0.05
mon data avail warn = 1
mon data avail crit = 0
[mon.a]
mon data = $DIR/mon
[osd.0]
osd data = $DIR/osd
osd objectstore = memstore
memstore device bytes = ${MEMSTORE_BYTES:-4294967296}
osd max object name len = 256
osd max object namespace len = 64
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $DIR/rgw
rgw enable usage log = false
EOF
  echo "$rgw_port" >"$DIR/rgw.port"
  local conf=(-c "$DIR/ceph.conf")

  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v1:127.0.0.1:$mon_port]" "$DIR/monmap" >/dev/null
  ceph-mon "${conf[@]}" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring" >"$DIR/log/mkfs-mon.out" 2>&1

  ceph-mon "${conf[@]}" -f -i a >"$DIR/log/mon.out" 2>&1 &
  echo $! >"$DIR/mon.pid"

  # Register osd.0 with the monitor (also waits for the monitor to form quorum).
  timeout 30 ceph "${conf[@]}" -n client.admin osd new "$osd_uuid" 0 >/dev/null 2>"$DIR/log/osd-new.out" \
    || { check_alive; die "monitor did not accept osd.0; see $DIR/log"; }
  ceph-osd "${conf[@]}" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$DIR/log/mkfs-osd.out" 2>&1 \
    || die "ceph-osd --mkfs failed: $(tail -n 3 "$DIR/log/mkfs-osd.out")"
  ceph-osd "${conf[@]}" -f -i 0 >"$DIR/log/osd.out" 2>&1 &
  echo $! >"$DIR/osd.pid"

  # radosgw creates its pools itself and waits for the OSD to come up.
  radosgw "${conf[@]}" -f -n client.rgw.a >"$DIR/log/rgw.out" 2>&1 &
  echo $! >"$DIR/rgw.pid"

  wait_for 60 "radosgw on 127.0.0.1:$rgw_port" s3_answers "$rgw_port"
  radosgw-admin "${conf[@]}" -n client.admin user create --uid=ferry --display-name=ferry \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >"$DIR/log/user-create.out" 2>&1 \
    || die "radosgw-admin user create failed: $(tail -n 3 "$DIR/log/user-create.out")"
  # If the test runner dies without calling stop, do not leave three daemons behind.
  if [ -n "${FERRY_RGW_WATCH_PID:-}" ]; then
    (
      while kill -0 "$FERRY_RGW_WATCH_PID" 2>/dev/null && [ -d "$DIR" ]; do sleep 1; done
      FERRY_RGW_WATCHER=1 "$0" stop "$DIR"
    ) </dev/null >/dev/null 2>&1 &
    echo $! >"$DIR/watch.pid"
  fi
  print_env "$DIR"
}

# Alive and not a zombie (a daemon whose parent shell has gone is reaped by PID 1 later).
running() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

stop() {
  [ -d "$DIR" ] || return 0
  local f pid pids=()
  # The cluster is throw-away (memstore, data in RAM): SIGKILL, no graceful shutdown.
  if [ -z "${FERRY_RGW_WATCHER:-}" ] && [ -f "$DIR/watch.pid" ]; then kill "$(cat "$DIR/watch.pid")" 2>/dev/null || true; fi
  for f in "$DIR/rgw.pid" "$DIR/osd.pid" "$DIR/mon.pid"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill -9 "$pid" 2>/dev/null && pids+=("$pid")
  done
  local i
  for i in $(seq 1 50); do
    local alive=0
    for pid in "${pids[@]}"; do running "$pid" && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  rm -rf "$DIR"
}

cmd=${1:-}; DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || usage
PORT=${3:-${PORT:-}}
case "$cmd" in
  start) start ;;
  env) print_env "$DIR" ;;
  stop) stop ;;
  *) usage ;;
esac
