#!/usr/bin/env bash
# Simulated nights (30 by default) of ferry vs restic with retention and a weekly prune.
#
#   bash bench/nights.sh          (also a step of bench/run.sh)
#
# Each night (dated 2026-01-05 Monday + n-1 days, 01:30 UTC):
#   1. the guest images change in place through a loop mount (seeded):
#      syslog + auth.log appended, BENCH_NIGHTS_PAGES scattered 4 KiB page
#      rewrites of the database file, and every 5th night per guest a 48 MiB
#      contiguous rewrite of the database ("VACUUM");
#   2. ferry and restic back up the same images (ferry backup --time,
#      restic backup --time);
#   3. both forget with --keep-daily 7 --keep-weekly 4;
#   4. on Sundays (nights 7, 14, 21, 28) both prune (defaults of each).
# Recorded: repository bytes (du -sb) at the end of every night; per prune,
# wall time and the bytes it wrote (new files in the repository, measured the
# same way for both) and deleted, next to what each tool reports.
# Afterwards: check of both repositories, restore of the last night of guest1
# from both, sha256 compared.
# Results: bench/results/nights.md (table) and bench/results/nights.png
# (gnuplot); raw numbers in $FERRY_BENCH_DIR/nights/raw.jsonl.
#
# Environment: FERRY_BENCH_DIR [/var/tmp/ferry-bench], BENCH_NIGHTS_COUNT [30],
# BENCH_NIGHTS_GUESTS [2] (the first N guests of the corpus's night 0),
# BENCH_NIGHTS_PAGES [2000], BENCH_NIGHTS_SEED [ferry-nights-1],
# BENCH_NIGHTS_OUT [bench/results/nights], plus the corpus variables of bench/corpus.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

[[ $(id -u) -eq 0 ]] || { echo "nights.sh: must run as root (loop mounts)" >&2; exit 1; }
bench_ensure_tools
command -v gnuplot >/dev/null || {
  blog "apt-get install gnuplot-nox"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gnuplot-nox >/dev/null \
    || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gnuplot-nox >/dev/null; }
}
bash "$bench_here/corpus.sh"

COUNT=${BENCH_NIGHTS_COUNT:-30}
GUESTS=${BENCH_NIGHTS_GUESTS:-2}
PAGES=${BENCH_NIGHTS_PAGES:-2000}
SEED=${BENCH_NIGHTS_SEED:-ferry-nights-1}
OUT=${BENCH_NIGHTS_OUT:-$bench_here/results/nights}
LOG_BYTES=1500000
VACUUM_MIB=48
gen="node $bench_here/lib/gen.mjs"

work=$BENCH_DIR/nights
# A private copy of the build, apart from run.sh's, so both can run.
FERRY_APP=$work/ferry-app
FERRY_BIN=$FERRY_APP/bin/ferry
mnt=$work/mnt
mounted=""
cleanup() {
  if [[ -n $mounted ]]; then umount "$mounted" 2>/dev/null || umount -l "$mounted" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$work"
mkdir -p "$work/repos" "$work/logs" "$work/images" "$work/cache" "$work/state" "$work/restore" "$mnt"
ferry_ok || { echo "nights.sh: ferry does not work in this tree (build it: npm run build)" >&2; exit 1; }
raw=$work/raw.jsonl
: >"$raw"
export RESTIC_CACHE_DIR=$work/cache/restic FERRY_STATE_DIR=$work/state TZ=UTC
ferry_repo=$work/repos/ferry
restic_repo=$work/repos/restic

# The guests start from the corpus's night 0 and change in place from then on.
for g in $(seq 1 "$GUESTS"); do
  cp --sparse=always "$CORPUS/nights/0/guest$g.img" "$work/images/guest$g.img"
done

# What the report says of the data: image size, allocated bytes (mean), database size (at its first change).
image_bytes=$(stat -c %s "$work/images/guest1.img")
alloc_bytes=$(du -B1 -c "$work"/images/guest*.img | tail -1 | cut -f1)
alloc_bytes=$((alloc_bytes / GUESTS))
db_bytes=""

night_time() { date -u -d "2026-01-05 01:30:00 UTC + $(($1 - 1)) days" "+$2"; }

mutate() { # night guest
  local n=$1 g=$2 db off
  mount -o loop,noatime "$work/images/guest$g.img" "$mnt"
  mounted=$mnt
  $gen log "$mnt/var/log/syslog" "$LOG_BYTES" "$SEED-log-$g-$n" "$((n + 3))"
  $gen log "$mnt/var/log/auth.log" $((LOG_BYTES / 5)) "$SEED-auth-$g-$n" "$((n + 3))"
  db=$mnt/var/lib/appdb/data.db
  [[ -n $db_bytes ]] || db_bytes=$(stat -c %s "$db")
  $gen pages "$db" "$PAGES" "$SEED-pages-$g-$n"
  if ((n % 5 == g % 5)); then
    # A table rebuild: 48 MiB of fresh pages over the same blocks of the file.
    off=$(((n * 37 + g * 11) % ($(stat -c %s "$db") / 1048576 - VACUUM_MIB)))
    $gen db "$work/vacuum.tmp" "$VACUUM_MIB" "$SEED-vacuum-$g-$n"
    dd if="$work/vacuum.tmp" of="$db" bs=1M seek="$off" conv=notrunc,fsync status=none
    rm -f "$work/vacuum.tmp"
    record "$raw" "{\"phase\":\"vacuum\",\"night\":$n,\"guest\":\"guest$g\",\"offsetMiB\":$off,\"mib\":$VACUUM_MIB}"
  fi
  sync -f "$mnt"
  umount "$mnt"
  mounted=""
}

repo_bytes() { du -sb "$1" | cut -f1; }
list_files() { find "$1" -type f -printf '%P %s\n' | sort; }
# Bytes of files in AFTER not in BEFORE (written), and in BEFORE not in AFTER (deleted).
file_delta() {
  awk 'NR==FNR{before[$1]=$2;next} {after[$1]=$2; if(!($1 in before)) w+=$2} END{for(f in before) if(!(f in after)) d+=before[f]; printf "%d %d\n", w, d}' "$1" "$2"
}

blog "nights: $COUNT nights, $GUESTS guests (corpus night 0), $PAGES page rewrites per guest per night"
t_run=$(date +%s)
load_start=$(cat /proc/loadavg)

timed "$raw" ferry init 0 - "$work/logs/ferry-init.log" -- node "$FERRY_BIN" init --repo "$ferry_repo"
timed "$raw" restic init 0 - "$work/logs/restic-init.log" -- restic init --repo "$restic_repo" --repository-version 2

for n in $(seq 1 "$COUNT"); do
  iso=$(night_time "$n" '%Y-%m-%dT%H:%M:%SZ')
  plain=$(night_time "$n" '%Y-%m-%d %H:%M:%S')
  weekday=$(night_time "$n" '%a')
  # Night 1 backs up the corpus's night 0 as it is: the first full backup.
  if ((n > 1)); then
    for g in $(seq 1 "$GUESTS"); do mutate "$n" "$g"; done
  fi
  for g in $(seq 1 "$GUESTS"); do
    img=$work/images/guest$g.img
    timed "$raw" ferry backup "$n" "guest$g" "$work/logs/ferry-backup-n$n-g$g.log" -- \
      node "$FERRY_BIN" backup --repo "$ferry_repo" --guest "guest$g" --time "$iso" --json "$img" || true
    timed "$raw" restic backup "$n" "guest$g" "$work/logs/restic-backup-n$n-g$g.log" -- \
      restic --repo "$restic_repo" backup --host ferry-bench --tag "guest$g" --time "$plain" "$img" || true
  done
  timed "$raw" ferry forget "$n" - "$work/logs/ferry-forget-n$n.log" -- \
    node "$FERRY_BIN" forget --repo "$ferry_repo" --keep-daily 7 --keep-weekly 4 --json || true
  timed "$raw" restic forget "$n" - "$work/logs/restic-forget-n$n.log" -- \
    restic --repo "$restic_repo" forget --host ferry-bench --group-by host,tags --keep-daily 7 --keep-weekly 4 || true
  pruned=false
  if [[ $weekday == Sun ]]; then
    pruned=true
    sync
    for t in ferry restic; do
      r=$work/repos/$t
      list_files "$r" >"$work/files-before"
      size_before=$(repo_bytes "$r")
      blog "$t: prune night $n"
      case $t in
        ferry) timed "$raw" ferry prune "$n" - "$work/logs/ferry-prune-n$n.log" -- node "$FERRY_BIN" prune --repo "$r" --json || true ;;
        restic) timed "$raw" restic prune "$n" - "$work/logs/restic-prune-n$n.log" -- restic --repo "$r" prune || true ;;
      esac
      sync
      list_files "$r" >"$work/files-after"
      read -r written deleted < <(file_delta "$work/files-before" "$work/files-after")
      record "$raw" "{\"tool\":\"$t\",\"phase\":\"prune-bytes\",\"night\":$n,\"sizeBefore\":$size_before,\"sizeAfter\":$(repo_bytes "$r"),\"written\":$written,\"deleted\":$deleted,\"log\":\"$work/logs/$t-prune-n$n.log\"}"
    done
  fi
  sync
  ferry_points=$(node "$FERRY_BIN" list --repo "$ferry_repo" --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).length))' || echo null)
  restic_points=$(restic --repo "$restic_repo" snapshots --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log((JSON.parse(s)||[]).length))' || echo null)
  record "$raw" "{\"phase\":\"night\",\"night\":$n,\"date\":\"$iso\",\"weekday\":\"$weekday\",\"pruned\":$pruned,\"ferryBytes\":$(repo_bytes "$ferry_repo"),\"resticBytes\":$(repo_bytes "$restic_repo"),\"ferryPoints\":$ferry_points,\"resticPoints\":$restic_points}"
  blog "night $n ($weekday $iso) done: ferry $(repo_bytes "$ferry_repo") B, restic $(repo_bytes "$restic_repo") B"
done

# ---- verify: structure, and the last night of guest1 restored by both -------
want=$(sha256sum "$work/images/guest1.img" | cut -d' ' -f1)
timed "$raw" ferry check "$COUNT" - "$work/logs/ferry-check.log" -- node "$FERRY_BIN" check --repo "$ferry_repo" || true
timed "$raw" restic check "$COUNT" - "$work/logs/restic-check.log" -- restic --repo "$restic_repo" check || true
timed "$raw" ferry restore "$COUNT" guest1 "$work/logs/ferry-restore.log" -- \
  node "$FERRY_BIN" restore --repo "$ferry_repo" latest --guest guest1 --to "$work/restore/ferry" || true
timed "$raw" restic restore "$COUNT" guest1 "$work/logs/restic-restore.log" -- \
  restic --repo "$restic_repo" restore latest --host ferry-bench --tag guest1 --target "$work/restore/restic" || true
for t in ferry restic; do
  f=$(find "$work/restore/$t" -type f -printf '%s %p\n' 2>/dev/null | sort -n | tail -n 1 | cut -d' ' -f2-)
  ok=false
  [[ -n $f && $(sha256sum "$f" | cut -d' ' -f1) == "$want" ]] && ok=true
  record "$raw" "{\"tool\":\"$t\",\"phase\":\"restored\",\"night\":$COUNT,\"guest\":\"guest1\",\"sha256ok\":$ok}"
done
rm -rf "$work/restore"

# ---- report --------------------------------------------------------------------
versions="node $(node -v); ferry $(node -p "require('$FERRY_APP/package.json').version") @ $FERRY_REV; $(restic version | cut -d' ' -f1-2)"
mkdir -p "$(dirname "$OUT")"
node "$bench_here/lib/nights-report.mjs" \
  --raw "$raw" --out "$OUT" --plot-data "$work/plot.dat" \
  --versions "$versions" --guests "$GUESTS" --pages "$PAGES" --count "$COUNT" \
  --corpus "$CORPUS_NAME" --image-bytes "$image_bytes" --alloc-bytes "$alloc_bytes" --db-bytes "${db_bytes:-0}" \
  --load-start "$load_start" --load-end "$(cat /proc/loadavg)" --elapsed "$(($(date +%s) - t_run))"
prunes=$(node -e 'for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n")) { const r = l && JSON.parse(l); if (r && r.phase === "night" && r.pruned) console.log(r.night); }' "$raw" | tr '\n' ' ')
gnuplot -e "datafile='$work/plot.dat'; outfile='$OUT.png'; prunes='$prunes'" "$bench_here/lib/nights.gp"
blog "wrote $OUT.md and $OUT.png"
