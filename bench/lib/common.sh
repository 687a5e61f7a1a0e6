# Shared helpers for bench/run.sh and bench/chunk-sizes.sh (sourced, not run).
# shellcheck shell=bash

bench_here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench_repo=$(cd "$bench_here/.." && pwd)
BENCH_DIR=${FERRY_BENCH_DIR:-/var/tmp/ferry-bench}
# Two corpora: `corpus` (the default: 2 GiB images, ~25 % allocated) and
# `dense` (1 GiB images, over half allocated with real files); bench/corpus.sh.
CORPUS_NAME=${BENCH_CORPUS:-corpus}
CORPUS=$BENCH_DIR/$CORPUS_NAME
PASSWORD=${BENCH_PASSWORD:-ferry-bench-passphrase}
export FERRY_PASSWORD=$PASSWORD RESTIC_PASSWORD=$PASSWORD BORG_PASSPHRASE=$PASSWORD

blog() { echo "[$(date +%T)] $*" >&2; }

# Install what the benchmark needs from Debian packages, if missing.
bench_ensure_tools() {
  local missing=()
  [[ -x /usr/bin/time ]] || missing+=(time)
  command -v restic >/dev/null || missing+=(restic)
  command -v borg >/dev/null || missing+=(borgbackup)
  command -v zstd >/dev/null || missing+=(zstd)
  if ((${#missing[@]})); then
    blog "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
  fi
}

# Drop the page cache so every tool reads from disk; if not permitted, warm
# the current night's images instead (the same for every tool).
DROP_CACHES=unknown
drop_caches() {
  local warm=${1:-}
  sync
  if echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
    DROP_CACHES=yes
  else
    DROP_CACHES="no (not permitted; images warmed with cat before each phase instead)"
    if [[ -n $warm ]]; then cat "$warm"/*.img >/dev/null 2>&1 || true; fi
  fi
}

# Ferry runs from a private copy of the build (bin/, dist/, build/Release,
# prebuilds/, package.json; node_modules linked) taken at the start of a run, so a
# concurrent rebuild of the working tree cannot change ferry mid-benchmark.
# One copy per run (pid in the name), so two benchmark scripts running at once
# never replace each other's ferry halfway; removed when the script exits.
FERRY_APP=$BENCH_DIR/ferry-app.$$
trap 'rm -rf "$FERRY_APP" "$FERRY_APP.tmp"' EXIT
FERRY_BIN=$FERRY_APP/bin/ferry
FERRY_REV=unknown
ferry_snapshot() {
  [[ -f $bench_repo/bin/ferry && -f $bench_repo/dist/cli/main.js ]] || return 1
  rm -rf "$FERRY_APP.tmp"
  mkdir -p "$FERRY_APP.tmp/build"
  cp -a "$bench_repo/bin" "$bench_repo/dist" "$bench_repo/package.json" "$FERRY_APP.tmp/"
  [[ -d $bench_repo/build/Release ]] && cp -a "$bench_repo/build/Release" "$FERRY_APP.tmp/build/"
  [[ -d $bench_repo/prebuilds ]] && cp -a "$bench_repo/prebuilds" "$FERRY_APP.tmp/"
  ln -s "$bench_repo/node_modules" "$FERRY_APP.tmp/node_modules"
  rm -rf "$FERRY_APP"
  mv "$FERRY_APP.tmp" "$FERRY_APP"
  FERRY_REV="$(git -C "$bench_repo" rev-parse --short HEAD)$(git -C "$bench_repo" diff --quiet HEAD -- src bin 2>/dev/null || echo '+uncommitted')"
  echo "$FERRY_REV" >"$FERRY_APP/REVISION"
}
# Does ferry work end to end? (snapshot taken, --help answers)
ferry_ok() {
  ferry_snapshot && node "$FERRY_BIN" --help >/dev/null 2>&1
}
ferry() { node "$FERRY_BIN" "$@"; }

# timed RAW TOOL PHASE NIGHT GUEST OUTFILE -- CMD...
# Runs CMD under /usr/bin/time (wall, user, sys, max RSS), stdout+stderr to
# OUTFILE, appends one JSON line to RAW. Returns CMD's exit status.
timed() {
  local raw=$1 tool=$2 phase=$3 night=$4 guest=$5 out=$6
  shift 7
  local tf load0 load1 line wall user sys rss rc
  tf=$(mktemp)
  load0=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -f '%e %U %S %M %x' -o "$tf" "$@" >"$out" 2>&1 || true
  load1=$(cut -d' ' -f1 /proc/loadavg)
  line=$(tail -n 1 "$tf")
  rm -f "$tf"
  read -r wall user sys rss rc <<<"$line"
  [[ $rc =~ ^[0-9]+$ ]] || rc=255
  printf '{"tool":"%s","phase":"%s","night":%s,"guest":"%s","wall":%s,"user":%s,"sys":%s,"maxrssKb":%s,"rc":%s,"load":[%s,%s],"log":"%s"}\n' \
    "$tool" "$phase" "$night" "$guest" "${wall:-0}" "${user:-0}" "${sys:-0}" "${rss:-0}" "$rc" "$load0" "$load1" "$out" >>"$raw"
  if [[ $rc != 0 ]]; then
    blog "FAILED ($rc): $tool $phase night $night $guest: $*"
    tail -n 5 "$out" | sed 's/^/    /' >&2
  fi
  return "$rc"
}

record() { # RAW JSON
  echo "$2" >>"$1"
}

# True change per night and guest (differing 4 KiB blocks between night n-1
# and n), cached in the corpus. Prints one JSON line per (night, guest).
truechange_all() {
  local f=$CORPUS/truechange.jsonl n g nights guests
  if [[ ! -s $f || $f -ot $CORPUS/.complete ]]; then
    nights=$(($(ls -d "$CORPUS"/nights/* | wc -l) - 1))
    guests=$(ls "$CORPUS"/nights/0/*.img | wc -l)
    : >"$f.tmp"
    for n in $(seq 1 "$nights"); do
      for g in $(seq 1 "$guests"); do
        echo "{\"phase\":\"truechange\",\"night\":$n,\"guest\":\"guest$g\",\"data\":$(node "$bench_here/lib/truechange.mjs" "$CORPUS/nights/$((n - 1))/guest$g.img" "$CORPUS/nights/$n/guest$g.img")}" >>"$f.tmp"
      done
    done
    mv "$f.tmp" "$f"
  fi
  cat "$f"
}
