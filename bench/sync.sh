#!/usr/bin/env bash
# Offsite copy: the benchmark repository to a real S3 server (a throw-away
# Ceph RGW on 127.0.0.1) and back, ferry sync beside restic copy.
#
#   bash bench/sync.sh            (after bench/run.sh has built the repositories)
#
# For each tool: a copy target on S3, the copy local -> S3, a second copy
# target on local disk, the copy S3 -> local. Measured per direction: wall
# time, bytes/s (of the source repository's size), HTTP requests seen by a
# counting proxy between the tool and the server, and requests per GiB.
# `ferry sync` moves sealed objects by name (no decryption); `restic copy`
# decrypts and re-encrypts every blob (its two repositories have different
# keys), so CPU is part of what is measured.
#
# Environment: FERRY_BENCH_DIR [/var/tmp/ferry-bench] (repositories from
# bench/run.sh under run-corpus/repos/{ferry,restic}); BENCH_SYNC_TOOLS [ferry restic];
# BENCH_SYNC_OUT [$FERRY_BENCH_DIR/sync-results.md]. Never asserts speed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

TOOLS=${BENCH_SYNC_TOOLS:-ferry restic}
OUT=${BENCH_SYNC_OUT:-$BENCH_DIR/sync-results.md}
work=$BENCH_DIR/sync
repos=$BENCH_DIR/run-corpus/repos
rm -rf "$work"
mkdir -p "$work" "$(dirname "$OUT")"
rows=()

for t in $TOOLS; do
  [[ -d $repos/$t ]] || { echo "sync.sh: $repos/$t missing; run bench/run.sh first (it builds the benchmark repositories)" >&2; exit 1; }
done
command -v restic >/dev/null || bench_ensure_tools

# A counting TCP proxy: parses request heads (Content-Length bodies; the
# clients here do not use chunked uploads) and counts requests per method.
cat >"$work/countproxy.js" <<'EOF'
const net = require('node:net');
const fs = require('node:fs');
const [target, countsFile] = process.argv.slice(2);
const url = new URL(target);
const counts = {};
const server = net.createServer((client) => {
  const upstream = net.connect(Number(url.port), url.hostname);
  let buf = Buffer.alloc(0);
  let bodyLeft = 0;
  client.on('data', (d) => {
    upstream.write(d);
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (bodyLeft > 0) {
        const n = Math.min(bodyLeft, buf.length);
        bodyLeft -= n;
        buf = buf.subarray(n);
        if (bodyLeft > 0) return;
      }
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const method = head.slice(0, head.indexOf(' '));
      counts[method] = (counts[method] || 0) + 1;
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      bodyLeft = m ? Number(m[1]) : 0;
      buf = buf.subarray(end + 4);
    }
  });
  upstream.on('data', (d) => client.write(d));
  const close = () => { client.destroy(); upstream.destroy(); };
  client.on('error', close); upstream.on('error', close); client.on('close', close); upstream.on('close', close);
});
server.listen(0, '127.0.0.1', () => fs.writeFileSync(`${countsFile}.port`, String(server.address().port)));
const dump = () => { fs.writeFileSync(countsFile, JSON.stringify(counts)); process.exit(0); };
process.on('SIGTERM', dump);
process.on('SIGINT', dump);
EOF

rgw=""
proxy_pid=""
cleanup() {
  [[ -n $proxy_pid ]] && kill "$proxy_pid" 2>/dev/null || true
  [[ -n $rgw ]] && bash "$bench_repo/scripts/testbed/ceph-rgw.sh" stop "$rgw" >/dev/null 2>&1 || true
  rm -rf "$FERRY_APP" "$FERRY_APP.tmp"
}
trap cleanup EXIT

start_rgw() { # SIZE_BYTES
  rgw=$work/rgw-$RANDOM
  mkdir -p "$rgw"
  local envs
  envs=$(MEMSTORE_BYTES=$1 bash "$bench_repo/scripts/testbed/ceph-rgw.sh" start "$rgw")
  eval "export $(echo "$envs" | tr '\n' ' ')"
  export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
  node -e "
    const { S3Client, CreateBucketCommand } = require('$bench_repo/node_modules/@aws-sdk/client-s3');
    new S3Client({ endpoint: process.env.FERRY_TEST_S3_ENDPOINT, forcePathStyle: true, region: process.env.AWS_REGION })
      .send(new CreateBucketCommand({ Bucket: 'bench' })).catch((e) => { console.error(e); process.exit(1); });"
}
stop_rgw() { bash "$bench_repo/scripts/testbed/ceph-rgw.sh" stop "$rgw" >/dev/null 2>&1 || true; rgw=""; }

start_proxy() { # COUNTS_FILE -> sets PROXY (http://127.0.0.1:port)
  rm -f "$1" "$1.port"
  node "$work/countproxy.js" "$FERRY_TEST_S3_ENDPOINT" "$1" &
  proxy_pid=$!
  for _ in $(seq 100); do [[ -s $1.port ]] && break; sleep 0.05; done
  PROXY=http://127.0.0.1:$(cat "$1.port")
}
stop_proxy() { kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true; proxy_pid=""; }

# measure TOOL DIRECTION BYTES COUNTS -- CMD...: one table row.
measure() {
  local tool=$1 dir=$2 bytes=$3 counts=$4 t0 t1 secs reqs
  shift 5
  t0=$(date +%s.%N)
  if ! "$@" >"$work/$tool-$dir.log" 2>&1; then
    blog "FAILED: $tool $dir: $*"; tail -n 5 "$work/$tool-$dir.log" >&2; stop_proxy; return 1
  fi
  t1=$(date +%s.%N)
  stop_proxy
  secs=$(echo "$t1 - $t0" | bc -l)
  reqs=$(node -e "const c=require('$counts'); console.log(Object.values(c).reduce((a,b)=>a+b,0) + ' ' + JSON.stringify(c).replace(/[{}\"]/g,''))")
  rows+=("$(node -e "
    const [bytes, secs, total, detail] = [$bytes, $secs, ${reqs%% *}, '${reqs#* }'];
    const gib = bytes / 2 ** 30;
    console.log(['$tool', '$dir', (bytes / 2 ** 20).toFixed(0) + ' MiB', secs.toFixed(1) + ' s',
      (bytes / secs / 2 ** 20).toFixed(1) + ' MiB/s', total, (total / gib).toFixed(0), detail].join(' | '));")")
  blog "$tool $dir: ${rows[-1]}"
}

for t in $TOOLS; do
  src=$repos/$t
  bytes=$(du -sb "$src" | cut -f1)
  start_rgw $((bytes + bytes / 2 + 1024 * 1024 * 1024))
  back=$work/$t-back
  case $t in
    ferry)
      start_proxy "$work/ferry-up.json"
      s3=s3:$PROXY/bench/ferry
      ferry init --from "$src" --repo "$s3" >/dev/null
      measure ferry 'local -> S3' "$bytes" "$work/ferry-up.json" -- node "$bench_repo/bin/ferry" sync "$src" "$s3" --no-cache
      start_proxy "$work/ferry-down.json"
      s3=s3:$PROXY/bench/ferry
      ferry init --from "$s3" --repo "$back" --no-cache >/dev/null
      measure ferry 'S3 -> local' "$bytes" "$work/ferry-down.json" -- node "$bench_repo/bin/ferry" sync "$s3" "$back" --no-cache
      ;;
    restic)
      export RESTIC_FROM_PASSWORD=$PASSWORD
      start_proxy "$work/restic-up.json"
      s3=s3:$PROXY/bench/restic
      restic -o s3.bucket-lookup=path -r "$s3" init --from-repo "$src" --copy-chunker-params >/dev/null
      measure restic 'local -> S3' "$bytes" "$work/restic-up.json" -- restic -o s3.bucket-lookup=path --no-cache -r "$s3" copy --from-repo "$src"
      start_proxy "$work/restic-down.json"
      s3=s3:$PROXY/bench/restic
      restic -o s3.bucket-lookup=path -r "$back" init --from-repo "$s3" --copy-chunker-params >/dev/null
      measure restic 'S3 -> local' "$bytes" "$work/restic-down.json" -- restic -o s3.bucket-lookup=path --no-cache -r "$back" copy --from-repo "$s3"
      ;;
  esac
  stop_rgw
done

{
  echo "## Repository sync to S3 and back ($(date -u +%F), Ceph RGW on 127.0.0.1, through a counting proxy)"
  echo
  echo "| tool | direction | repository | time | rate | requests | requests/GiB | by method |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  for r in "${rows[@]}"; do echo "| $r |"; done
  echo
  echo "ferry sync copies sealed objects by name; restic copy decrypts and re-encrypts every blob. Rate = source repository bytes / wall time (the init of each copy target is not timed)."
} | tee "$OUT"
