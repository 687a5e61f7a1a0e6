#!/usr/bin/env bash
# Ferry vs restic vs borg on the same real disk images of one corpus, in one
# run, beside the machine's limits measured in the same run. bench/run.sh
# calls it once per corpus and sums both up.
#
#   BENCH_CORPUS=dense bash bench/compare.sh
#   BENCH_TOOLS="restic borg" bash bench/compare.sh
#
# Phases, each tool in turn, page cache dropped before every tool's phase:
#   init; night 0 full backup of all guests; nights 1..N incremental;
#   restore of the last night of all guests (sha256 + sparseness checked);
#   night 0 again with all guests in one command per tool, into fresh repositories;
#   repository bytes (du -sb) after every night; check reading every stored
#   byte (ferry check --read-data, restic check --read-data, borg check
#   --verify-data) beside a cold read of that repository; then the limits: a cold read
#   of night 0's and the last night's allocated bytes (GNU tar --sparse reads
#   only data), zstd -3 -T0 over night 0's allocated bytes, and writing the
#   last night's images with cp --sparse=always + sync.
# Results: Markdown table on stdout and in bench/results/latest.md; raw
# per-invocation numbers in $FERRY_BENCH_DIR/run-<corpus>/raw.jsonl. Never asserts speed.
#
# Environment: FERRY_BENCH_DIR [/var/tmp/ferry-bench], BENCH_TOOLS [ferry restic borg],
# BENCH_BORG_COMPRESSION [zstd,3], BENCH_KEEP_RESTORE (keep restored images),
# BENCH_OUT [bench/results/latest.md, latest-dense.md for BENCH_CORPUS=dense],
# BENCH_CORPUS [corpus], plus the corpus variables of bench/corpus.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

[[ $(id -u) -eq 0 ]] || { echo "compare.sh: must run as root (corpus loop mounts, drop_caches)" >&2; exit 1; }
bench_ensure_tools
bash "$bench_here/corpus.sh"
command -v zstd >/dev/null || { echo "compare.sh: zstd is missing (apt-get install zstd)" >&2; exit 1; }
NIGHTS=$(ls -d "$CORPUS"/nights/* | wc -l)
NIGHTS=$((NIGHTS - 1))
GUESTS=$(ls "$CORPUS"/nights/0/*.img | wc -l)

TOOLS=${BENCH_TOOLS:-ferry restic borg}
BORG_COMPRESSION=${BENCH_BORG_COMPRESSION:-zstd,3}
if [[ $CORPUS_NAME == corpus ]]; then OUT=${BENCH_OUT:-$bench_here/results/latest.md}; else OUT=${BENCH_OUT:-$bench_here/results/latest-$CORPUS_NAME.md}; fi
notes=()
if [[ " $TOOLS " == *" ferry "* ]] && ! ferry_ok; then
  notes+=("ferry skipped: \`node bin/ferry --help\` does not work in this tree (not built or CLI not there yet)")
  TOOLS=$(echo " $TOOLS " | sed 's/ ferry / /')
  blog "ferry does not work yet; running: $TOOLS"
fi

work=$BENCH_DIR/run-$CORPUS_NAME
rm -rf "$work"
mkdir -p "$work/repos" "$work/logs" "$work/stage" "$work/restore" "$work/cache"
raw=$work/raw.jsonl
: >"$raw"
stage=$work/stage
export RESTIC_CACHE_DIR=$work/cache/restic BORG_BASE_DIR=$work/cache/borg
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no BORG_DISPLAY_PASSPHRASE=no

# The images are presented at one stable path per guest (hard links to the
# night's snapshot), so restic and borg see "the same file, changed", as they
# would on a real host, and use their parent snapshot / files cache.
stage_night() {
  local n=$1 g
  rm -f "$stage"/*.img
  for g in $(seq 1 "$GUESTS"); do ln "$CORPUS/nights/$n/guest$g.img" "$stage/guest$g.img"; done
}

repo_of() { echo "$work/repos/$1"; }

init_argv() { # tool repo: the command that creates the tool's repository, in INIT
  case $1 in
    ferry) INIT=(node "$FERRY_BIN" init --repo "$2") ;;
    restic) INIT=(restic init --repo "$2" --repository-version 2) ;;
    borg) INIT=(borg init --encryption=repokey-blake2 "$2") ;;
  esac
}

tool_init() {
  local t=$1
  init_argv "$t" "$(repo_of "$t")"
  timed "$raw" "$t" init -1 - "$work/logs/$t-init.log" -- "${INIT[@]}"
}

tool_backup() { # tool night guest
  local t=$1 n=$2 g=$3 r log
  r=$(repo_of "$t")
  log=$work/logs/$t-backup-n$n-$g.log
  case $t in
    ferry) timed "$raw" ferry backup "$n" "$g" "$log" -- node "$FERRY_BIN" backup --repo "$r" --guest "$g" "$stage/$g.img" --json ;;
    restic) timed "$raw" restic backup "$n" "$g" "$log" -- restic --repo "$r" backup --host ferry-bench --tag "$g" "$stage/$g.img" ;;
    borg) (cd "$stage" && timed "$raw" borg backup "$n" "$g" "$log" -- borg create --compression "$BORG_COMPRESSION" "$r::$g-n$n" "$g.img") ;;
  esac
}

tool_restore() { # tool guest dir
  local t=$1 g=$2 d=$3 r log
  r=$(repo_of "$t")
  log=$work/logs/$t-restore-$g.log
  mkdir -p "$d"
  case $t in
    ferry) timed "$raw" ferry restore "$NIGHTS" "$g" "$log" -- node "$FERRY_BIN" restore --repo "$r" latest --guest "$g" --to "$d" ;;
    # ferry fsyncs what it restores (write, fsync, rename); restic and borg
    # leave dirty pages behind. To compare durable restores, their timed
    # command ends with an fsync of the restored files (coreutils `sync FILE`).
    restic) timed "$raw" restic restore "$NIGHTS" "$g" "$log" -- sh -c 'restic --repo "$1" restore latest --host ferry-bench --tag "$2" --target "$3" && find "$3" -type f -exec sync {} +' sh "$r" "$g" "$d" ;;
    borg) (cd "$d" && timed "$raw" borg restore "$NIGHTS" "$g" "$log" -- sh -c 'borg extract --sparse "$1" && find . -type f -exec sync {} +' sh "$r::$g-n$NIGHTS") ;;
  esac
}

blog "corpus: $GUESTS guests, nights 0..$NIGHTS; tools: $TOOLS"
t_run=$(date +%s)
load_start=$(cat /proc/loadavg)

# True change per night (differing 4 KiB blocks), the floor any tool could store.
truechange_all >>"$raw"
for n in 0 "$NIGHTS"; do
  for g in $(seq 1 "$GUESTS"); do
    f=$CORPUS/nights/$n/guest$g.img
    record "$raw" "{\"phase\":\"source\",\"night\":$n,\"guest\":\"guest$g\",\"logical\":$(stat -c %s "$f"),\"allocated\":$(($(stat -c %b "$f") * 512))}"
  done
done

for t in $TOOLS; do tool_init "$t" || true; done

for n in $(seq 0 "$NIGHTS"); do
  stage_night "$n"
  for t in $TOOLS; do
    drop_caches "$stage"
    blog "$t: backup night $n"
    for g in $(seq 1 "$GUESTS"); do tool_backup "$t" "$n" "guest$g" || true; done
    sync
    record "$raw" "{\"tool\":\"$t\",\"phase\":\"repo\",\"night\":$n,\"bytes\":$(du -sb "$(repo_of "$t")" | cut -f1),\"cacheBytes\":$(du -sbc "$work/cache/$t" 2>/dev/null | tail -1 | cut -f1)}"
  done
  # Night 0's unique share (what the full backup's compressor must see at least).
  if [[ $n == 0 && " $TOOLS " == *" ferry "* ]]; then
    ferry stats --repo "$(repo_of ferry)" --json >"$work/ferry-stats-n0.json" 2>>"$work/logs/ferry-stats.log" || true
  fi
done

if [[ " $TOOLS " == *" ferry "* ]]; then
  ferry stats --repo "$(repo_of ferry)" --json >"$work/ferry-stats.json" 2>"$work/logs/ferry-stats.log" || true
fi

declare -A want
while read -r sum name; do want[${name#\*}]=$sum; done <"$CORPUS/nights/$NIGHTS/SHA256SUMS"
for t in $TOOLS; do
  drop_caches "$CORPUS/nights/$NIGHTS"
  blog "$t: restore night $NIGHTS"
  for g in $(seq 1 "$GUESTS"); do
    d=$work/restore/$t/guest$g
    tool_restore "$t" "guest$g" "$d" || true
  done
  sync
  for g in $(seq 1 "$GUESTS"); do
    d=$work/restore/$t/guest$g
    # the restored image: the largest regular file under the target
    f=$(find "$d" -type f -printf '%s %p\n' 2>/dev/null | sort -n | tail -n 1 | cut -d' ' -f2-)
    if [[ -n $f ]]; then
      sum=$(sha256sum "$f" | cut -d' ' -f1)
      ok=false
      [[ $sum == "${want[guest$g.img]}" ]] && ok=true
      record "$raw" "{\"tool\":\"$t\",\"phase\":\"restored\",\"night\":$NIGHTS,\"guest\":\"guest$g\",\"file\":\"$f\",\"logical\":$(stat -c %s "$f"),\"allocated\":$(($(stat -c %b "$f") * 512)),\"sha256ok\":$ok}"
    else
      record "$raw" "{\"tool\":\"$t\",\"phase\":\"restored\",\"night\":$NIGHTS,\"guest\":\"guest$g\",\"file\":null,\"logical\":0,\"allocated\":0,\"sha256ok\":false}"
    fi
  done
  [[ -n ${BENCH_KEEP_RESTORE:-} ]] || rm -rf "$work/restore/$t"
done

# ferry restores a whole fleet in one command too (`restore latest --all`: one key
# derivation, one index load, one worker pool for every guest); restic and borg
# have no such command, so their figure stays the sum of one command per guest.
if [[ " $TOOLS " == *" ferry "* ]]; then
  drop_caches "$CORPUS/nights/$NIGHTS"
  blog "ferry: restore night $NIGHTS, all guests in one command"
  d=$work/restore/ferry-all
  rm -rf "$d"
  timed "$raw" ferry restoreall "$NIGHTS" all "$work/logs/ferry-restore-all.log" -- node "$FERRY_BIN" restore --repo "$(repo_of ferry)" latest --all --to "$d" || true
  for g in $(seq 1 "$GUESTS"); do
    f=$d/guest$g/guest$g.img
    ok=false
    [[ -f $f && $(sha256sum "$f" | cut -d' ' -f1) == "${want[guest$g.img]}" ]] && ok=true
    record "$raw" "{\"tool\":\"ferry\",\"phase\":\"restored\",\"night\":$NIGHTS,\"guest\":\"guest$g\",\"file\":\"$f\",\"via\":\"restore --all\",\"sha256ok\":$ok}"
  done
  [[ -n ${BENCH_KEEP_RESTORE:-} ]] || rm -rf "$d"
fi

# Every night once more, all guests in one command per tool, each tool into a
# fresh repository: ferry's nightly job backs a fleet up in one process
# (`backup --all`, here over [[static.guest]] entries of shut-off guests, read
# in place), and restic and borg take every image in one snapshot / archive
# likewise. Night 0 is the full backup, nights 1.. the nightly runs.
conf=$work/ferry-all.conf
echo "repository = \"$work/repos/ferry-all\"" >"$conf"
for g in $(seq 1 "$GUESTS"); do printf '[[static.guest]]\nname = "guest%s"\ndisks = [{ path = "%s", device = "guest%s.img" }]\n' "$g" "$stage/guest$g.img" "$g" >>"$conf"; done
mkdir -p "$work/run" "$work/state-all"
for n in $(seq 0 "$NIGHTS"); do
  stage_night "$n"
  for t in $TOOLS; do
    r=$work/repos/$t-all
    if [[ $n == 0 ]]; then
      init_argv "$t" "$r"
      "${INIT[@]}" >"$work/logs/$t-init-all.log" 2>&1 || true
    fi
    drop_caches "$stage"
    blog "$t: backup night $n, all guests in one command"
    log=$work/logs/$t-backupall-n$n.log
    case $t in
      ferry)
        timed "$raw" ferry backupall "$n" all "$log" -- env FERRY_RUN_DIR="$work/run" FERRY_STATE_DIR="$work/state-all" node "$FERRY_BIN" backup --all --config "$conf" --work-dir "$work/ferry-work" --json || true ;;
      restic) timed "$raw" restic backupall "$n" all "$log" -- restic --repo "$r" backup --host ferry-bench --tag all "$stage"/*.img || true ;;
      borg) (cd "$stage" && timed "$raw" borg backupall "$n" all "$log" -- sh -c 'borg create --compression "$1" "$2::all-n$3" *.img' sh "$BORG_COMPRESSION" "$r" "$n") || true ;;
    esac
  done
done
for t in $TOOLS; do rm -rf "$work/repos/$t-all"; done
rm -f "$stage"/*.img

# Every stored byte read back and verified, page cache dropped; its limit is a
# cold read of each tool's repository (limit coldrepo, guest = the tool).
for t in $TOOLS; do
  r=$(repo_of "$t")
  drop_caches "$r"
  blog "$t: check, reading all data"
  case $t in
    ferry) timed "$raw" ferry check "$NIGHTS" all "$work/logs/ferry-check.log" -- node "$FERRY_BIN" check --repo "$r" --read-data || true ;;
    restic) timed "$raw" restic check "$NIGHTS" all "$work/logs/restic-check.log" -- restic --repo "$r" check --read-data || true ;;
    borg) timed "$raw" borg check "$NIGHTS" all "$work/logs/borg-check.log" -- borg check --verify-data "$r" || true ;;
  esac
  drop_caches "$r"
  blog "limit: cold read of $t's repository"
  timed "$raw" limit coldrepo "$NIGHTS" "$t" "$work/logs/limit-coldrepo-$t.log" -- sh -c 'find "$1" -type f -exec cat {} + >/dev/null' sh "$r" || true
done

# ---- the machine's limits, in the same run ------------------------------------
last=$CORPUS/nights/$NIGHTS
drop_caches "$CORPUS/nights/0"
blog "limit: cold read of night 0"
timed "$raw" limit coldread 0 all "$work/logs/limit-coldread-0.log" -- sh -c 'tar --sparse -cf - -C "$1" . | cat >/dev/null' sh "$CORPUS/nights/0" || true
blog "limit: zstd -3 -T0 over night 0"
timed "$raw" limit zstd 0 all "$work/logs/limit-zstd-0.log" -- sh -c 'tar --sparse -cf - -C "$1" . | zstd -3 -T0 -q -c >/dev/null' sh "$CORPUS/nights/0" || true
drop_caches "$last"
blog "limit: cold read of night $NIGHTS"
timed "$raw" limit coldread "$NIGHTS" all "$work/logs/limit-coldread-$NIGHTS.log" -- sh -c 'tar --sparse -cf - -C "$1" . | cat >/dev/null' sh "$last" || true
tar --sparse -cf - -C "$last" . | cat >/dev/null # the write limit: sources in the page cache, as a restore's come from the repository
rm -rf "$work/restore/limit"
mkdir -p "$work/restore/limit"
blog "limit: cp --sparse=always of night $NIGHTS + sync"
timed "$raw" limit write "$NIGHTS" all "$work/logs/limit-write.log" -- sh -c 'cp --sparse=always "$1"/*.img "$2"/ && sync "$2"/*.img' sh "$last" "$work/restore/limit" || true
rm -rf "$work/restore/limit"
mkdir -p "$BENCH_DIR/raw"
cp "$raw" "$BENCH_DIR/raw/$CORPUS_NAME.jsonl"
[[ -f $work/ferry-stats-n0.json ]] && cp "$work/ferry-stats-n0.json" "$BENCH_DIR/raw/$CORPUS_NAME-ferry-stats-n0.json"

# ---- report ------------------------------------------------------------------
versions="node $(node -v)"
for t in $TOOLS; do
  case $t in
    ferry) versions+="; ferry $(node -p "require('$FERRY_APP/package.json').version") @ $FERRY_REV (dist built at $(date -r "$FERRY_APP/dist/cli/main.js" +%FT%T))" ;;
    restic) versions+="; $(restic version | cut -d' ' -f1-2)" ;;
    borg) versions+="; $(borg --version)" ;;
  esac
done
settings="restic: repository v2, default compression (auto), default chunker (avg 1 MiB); borg: --encryption=repokey-blake2, --compression $BORG_COMPRESSION, default buzhash chunker (avg 2 MiB), extract --sparse; ferry: defaults of \`ferry init\`"
node "$bench_here/lib/report.mjs" \
  --raw "$raw" --out "$OUT" --tools "$TOOLS" \
  --versions "$versions" --settings "$settings" \
  --drop-caches "$DROP_CACHES" --load-start "$load_start" --load-end "$(cat /proc/loadavg)" \
  --elapsed "$(($(date +%s) - t_run))" --corpus "$CORPUS/manifest.txt" \
  --ferry-stats "$work/ferry-stats.json" \
  --notes "$(printf '%s\n' "${notes[@]+"${notes[@]}"}")"
