#!/usr/bin/env bash
# Site restore of the bench fleet to a local dir pool, beside restic restore
# and borg extract of the same restore points, and beside the limit: the time
# `cp --sparse=always` needs to write the same allocated bytes.
#
#   bash bench/site-restore.sh    (also the last step of bench/run.sh)
#
# Its own repositories (ferry, restic, borg; each holding the corpus's last
# night of every guest, backed up once, untimed) under
# $FERRY_BENCH_DIR/site-restore, so it does not depend on run.sh's. Then,
# page cache dropped before each: `ferry site restore --no-start` of the whole
# fleet in one command (hosts.toml: this machine, hypervisor qemu, one dir
# pool); restic restore and borg extract --sparse of each guest in turn, each
# ended with `sync FILE` (ferry fsyncs what it writes); cp --sparse=always of
# each image, then sync. Every restored image's sha256 is checked. GB/s of
# logical bytes (the disks' sizes) and of allocated bytes (what the sources
# hold, i.e. what must be written). Never asserts speed.
#
# Environment: FERRY_BENCH_DIR [/var/tmp/ferry-bench]; BENCH_SITE_OUT
# [bench/results/site-restore.md]; the corpus variables of bench/corpus.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# A private copy of the build, so run.sh's (or another run's) copy is never replaced under it.
FERRY_APP=$BENCH_DIR/ferry-app-site-restore
FERRY_BIN=$FERRY_APP/bin/ferry

[[ $(id -u) -eq 0 ]] || { echo "site-restore.sh: must run as root (drop_caches)" >&2; exit 1; }
bench_ensure_tools
bash "$bench_here/corpus.sh"
ferry_ok || { echo "site-restore.sh: ferry does not work in this tree (npm run build)" >&2; exit 1; }
NIGHT=$(($(ls -d "$CORPUS"/nights/* | wc -l) - 1))
src=$CORPUS/nights/$NIGHT
GUESTS=$(ls "$src"/*.img | wc -l)
OUT=${BENCH_SITE_OUT:-$bench_here/results/site-restore.md}
work=$BENCH_DIR/site-restore
rm -rf "$work"
mkdir -p "$work/repos" "$work/logs" "$work/out" "$work/cache"
raw=$work/raw.jsonl
: >"$raw"
export RESTIC_CACHE_DIR=$work/cache/restic BORG_BASE_DIR=$work/cache/borg
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no BORG_DISPLAY_PASSPHRASE=no
export FERRY_STATE_DIR=$work/ferry-state
guests=$(seq 1 "$GUESTS")

logical=0
allocated=0
for g in $guests; do
  logical=$((logical + $(stat -c %s "$src/guest$g.img")))
  allocated=$((allocated + $(stat -c %b "$src/guest$g.img") * 512))
done

# ---- the restore points (untimed) ----
blog "backing up night $NIGHT of $GUESTS guests with ferry, restic, borg"
r=$work/repos
ferry init --repo "$r/ferry" >"$work/logs/ferry-init.log" 2>&1
restic init --repo "$r/restic" --repository-version 2 >"$work/logs/restic-init.log" 2>&1
borg init --encryption=repokey-blake2 "$r/borg" >"$work/logs/borg-init.log" 2>&1
for g in $guests; do
  ferry backup --repo "$r/ferry" --guest "guest$g" "$src/guest$g.img" >>"$work/logs/ferry-backup.log" 2>&1
  restic --repo "$r/restic" backup --host ferry-bench --tag "guest$g" "$src/guest$g.img" >>"$work/logs/restic-backup.log" 2>&1
  (cd "$src" && borg create --compression zstd,3 "$r/borg::guest$g" "guest$g.img" >>"$work/logs/borg-backup.log" 2>&1)
done

cat >"$work/hosts.toml" <<TOML
[[host]]
name = "bench"
address = "local"
hypervisor = "qemu"
accel = "tcg"
memory = "1T"
cpus = 1024
config_dir = "$work/out/ferry/etc"
[[host.pool]]
name = "pool"
type = "dir"
path = "$work/out/ferry/pool"
TOML
mkdir -p "$work/out/ferry/pool"
ferry site plan --repo "$r/ferry" --hosts "$work/hosts.toml" --out "$work/plan.json" >"$work/logs/ferry-plan.log" 2>&1

# ---- the timed restores ----
blog "ferry site restore"
drop_caches "$src"
timed "$raw" ferry site-restore "$NIGHT" all "$work/logs/ferry-site-restore.log" -- node "$FERRY_BIN" site restore --repo "$r/ferry" --plan "$work/plan.json" --no-start --json || true

blog "restic restore"
drop_caches "$src"
timed "$raw" restic restore "$NIGHT" all "$work/logs/restic-restore.log" -- sh -c '
  for g in $(seq 1 "$2"); do restic --repo "$1" restore latest --host ferry-bench --tag "guest$g" --target "$3/guest$g" || exit 1; done
  find "$3" -type f -exec sync {} +' sh "$r/restic" "$GUESTS" "$work/out/restic" || true

blog "borg extract"
drop_caches "$src"
mkdir -p "$work/out/borg"
timed "$raw" borg restore "$NIGHT" all "$work/logs/borg-restore.log" -- sh -c '
  cd "$3" && for g in $(seq 1 "$2"); do mkdir -p "guest$g" && (cd "guest$g" && borg extract --sparse "$1::guest$g") || exit 1; done
  find . -type f -exec sync {} +' sh "$r/borg" "$GUESTS" "$work/out/borg" || true

blog "cp --sparse=always (the limit)"
drop_caches "$src"
mkdir -p "$work/out/cp"
timed "$raw" cp copy "$NIGHT" all "$work/logs/cp.log" -- sh -c '
  for f in "$1"/*.img; do cp --sparse=always "$f" "$2/" || exit 1; done
  find "$2" -type f -exec sync {} +' sh "$src" "$work/out/cp" || true

# ---- check and report ----
declare -A want
while read -r sum name; do want[${name#\*}]=$sum; done <"$src/SHA256SUMS"
rows=()
for t in ferry restic borg cp; do
  line=$(grep "\"tool\":\"$t\"" "$raw" | tail -n 1)
  wall=$(node -p "JSON.parse(process.argv[1]).wall" "$line")
  rc=$(node -p "JSON.parse(process.argv[1]).rc" "$line")
  rss=$(node -p "JSON.parse(process.argv[1]).maxrssKb" "$line")
  ok=0
  alloc_out=0
  for g in $guests; do
    f=$(find "$work/out/$t" -type f -name "guest$g.img" 2>/dev/null | head -n 1)
    [[ -n $f ]] || continue
    alloc_out=$((alloc_out + $(stat -c %b "$f") * 512))
    [[ $(sha256sum "$f" | cut -d' ' -f1) == "${want[guest$g.img]}" ]] && ok=$((ok + 1))
  done
  rate() { node -p "($1 / $wall / 1e9).toFixed(2)"; }
  case $t in
    ferry) what="\`ferry site restore --no-start\` (one command, all guests)" ;;
    restic) what="\`restic restore\` per guest + \`sync\`" ;;
    borg) what="\`borg extract --sparse\` per guest + \`sync\`" ;;
    cp) what="\`cp --sparse=always\` per image + \`sync\` (the limit)" ;;
  esac
  rows+=("| $what | $wall | $(rate "$logical") | $(rate "$allocated") | $((alloc_out / 1048576)) | $ok/$GUESTS | $((rss / 1024)) | $rc |")
done

{
  echo "# Site restore of the bench fleet to a local dir pool"
  echo
  echo "Generated by \`bench/site-restore.sh\` on $(date -u +%FT%TZ); ferry @ $FERRY_REV; $(restic version | cut -d' ' -f1-2); $(borg --version)."
  echo "Corpus night $NIGHT, $GUESTS guests: $logical logical bytes ($((logical / 1048576)) MiB), $allocated allocated ($((allocated / 1048576)) MiB)."
  echo "Page cache dropped before each row: ${DROP_CACHES}. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores."
  echo
  echo "| restore | wall s | GB/s logical | GB/s allocated | written MiB (allocated) | sha256 ok | max RSS MiB | exit |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Every row writes durable files (ferry fsyncs; the others end with \`sync FILE\`). The plan is made beforehand, untimed; the ferry row includes its checks that no guest of the name runs on the host and the writing of each guest's config files. Repositories: ferry defaults of \`ferry init\`; restic repository v2, default compression; borg repokey-blake2, zstd,3."
} >"$OUT"
cat "$OUT"
