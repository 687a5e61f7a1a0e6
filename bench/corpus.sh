#!/usr/bin/env bash
# Build the benchmark corpus: real disk images of debootstrap-based Debian guests,
# diverged per guest, then N "nights" of in-place change, every night kept as a
# snapshot copy so every tool backs up exactly the same bytes.
#
#   bash bench/corpus.sh            (cached: does nothing if the corpus is complete)
#   BENCH_REBUILD=1 bash bench/corpus.sh
#
# Layout under ${FERRY_BENCH_DIR:-/var/tmp/ferry-bench}/corpus:
#   nights/<n>/guest<g>.img       sparse raw ext4 images, n = 0..NIGHTS
#   nights/<n>/SHA256SUMS         sha256 of every image of that night
#   manifest.txt                  parameters, deb selection, sizes
#   .complete                     written last; its content is the parameter key
#
# Environment (defaults in brackets):
#   FERRY_BENCH_DIR [/var/tmp/ferry-bench]  BENCH_GUESTS [4]  BENCH_NIGHTS [3]
#   BENCH_GUEST_MIB [2048]  BENCH_DB_MIB [200]  BENCH_PAGES [2000]  BENCH_SEED [ferry-bench-1]
#   BENCH_BASE_DEB_KB [40000] .deb kilobytes unpacked into each guest at divergence
#   BENCH_NIGHT_DEB_KB [1500] .deb kilobytes "installed" per guest per night
#   BENCH_LOG_BYTES [1500000] log text appended per guest per night
#
# Needs root (loop mounts), node, dpkg-deb, and scripts/testbed/debian-image.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
gen="node $here/lib/gen.mjs"

bench_dir=${FERRY_BENCH_DIR:-/var/tmp/ferry-bench}
corpus=$bench_dir/${BENCH_CORPUS:-corpus}
# BENCH_CORPUS=dense: smaller images, mostly full of real files (≥ 50 %
# allocated: ~100 MB of .deb unpacked per guest, a 150 MiB database), so that
# skipping holes wins nothing and the pipeline itself is measured.
if [[ ${BENCH_CORPUS:-corpus} == dense ]]; then
  : "${BENCH_GUEST_MIB:=1024}" "${BENCH_DB_MIB:=150}" "${BENCH_BASE_DEB_KB:=100000}" "${BENCH_SEED:=ferry-bench-dense-1}"
fi
GUESTS=${BENCH_GUESTS:-4}
NIGHTS=${BENCH_NIGHTS:-3}
GUEST_MIB=${BENCH_GUEST_MIB:-2048}
DB_MIB=${BENCH_DB_MIB:-200}
PAGES=${BENCH_PAGES:-2000}
SEED=${BENCH_SEED:-ferry-bench-1}
BASE_DEB_KB=${BENCH_BASE_DEB_KB:-40000}
NIGHT_DEB_KB=${BENCH_NIGHT_DEB_KB:-1500}
LOG_BYTES=${BENCH_LOG_BYTES:-1500000}
ARCHIVE=${BENCH_DEB_ARCHIVE:-/var/cache/apt/archives}

key="guests=$GUESTS nights=$NIGHTS guest_mib=$GUEST_MIB db_mib=$DB_MIB pages=$PAGES seed=$SEED base_deb_kb=$BASE_DEB_KB night_deb_kb=$NIGHT_DEB_KB log_bytes=$LOG_BYTES recipe=3"

log() { echo "corpus: $*" >&2; }
die() { echo "corpus: $*" >&2; exit 1; }

if [[ -z ${BENCH_REBUILD:-} && -f $corpus/.complete && "$(cat "$corpus/.complete")" == "$key" ]]; then
  log "cached: $corpus ($key)"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (loop mounts)"
command -v dpkg-deb >/dev/null || die "missing dpkg-deb"
[[ -x $repo/scripts/testbed/debian-image.sh ]] || die "missing scripts/testbed/debian-image.sh"

mnt=$bench_dir/mnt-${BENCH_CORPUS:-corpus}
mounted=""
cleanup() {
  if [[ -n $mounted ]]; then umount "$mounted" 2>/dev/null || umount -l "$mounted" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$corpus"
mkdir -p "$corpus/work" "$mnt"
t_start=$(date +%s)

log "base image: scripts/testbed/debian-image.sh ($GUEST_MIB MiB)"
bash "$repo/scripts/testbed/debian-image.sh" "$corpus/work/base.img" "$GUEST_MIB"

# Which .deb files go where: disjoint, seeded, recorded in the manifest.
$gen pick-debs "$ARCHIVE" "$GUESTS" "$NIGHTS" "$BASE_DEB_KB" "$NIGHT_DEB_KB" "$SEED" >"$corpus/debs.plan"
ndebs=$(wc -l <"$corpus/debs.plan")
log "$ndebs .deb files selected from $ARCHIVE"

mount_img() {
  mount -o loop,noatime "$1" "$mnt"
  mounted=$mnt
}
umount_img() {
  sync -f "$mnt" 2>/dev/null || sync
  umount "$mnt"
  mounted=""
}

# Unpack the .deb files planned for guest $1, night $2 under /opt/pkgs (a
# "package install": ELF binaries, libraries, docs). Falls back to a synthetic
# package if the archive had nothing for this slot.
# A package that would leave less free space than the rest of the recipe needs
# is skipped: which .deb files the archive holds differs between machines, and
# some unpack to many times their size (a full guest made night 3 fail).
install_pkgs() {
  local g=$1 n=$2 count=0 deb name need free reserve
  # Kept free (KiB): 5 % of the file system, and at night 0 also the database,
  # the home data and every later night's packages and logs.
  reserve=$(($(df -Pk "$mnt" | awk 'NR==2 {print $2}') / 20))
  ((n > 0)) || reserve=$((reserve + (DB_MIB + 8) * 1024 + NIGHTS * (NIGHT_DEB_KB * 4 + LOG_BYTES * 12 / 10240)))
  while read -r pg pn deb; do
    [[ $pg == "$g" && $pn == "$n" ]] || continue
    need=$(dpkg-deb -f "$deb" Installed-Size 2>/dev/null || echo 0)
    free=$(df -Pk "$mnt" | awk 'NR==2 {print $4}')
    if ((free - ${need:-0} < reserve)); then
      log "guest$g night $n: $(basename "$deb") skipped (${need:-?} KiB unpacked, ${free} KiB free)"
      continue
    fi
    name=$(basename "$deb" .deb)
    mkdir -p "$mnt/opt/pkgs/$name"
    dpkg-deb -x "$deb" "$mnt/opt/pkgs/$name"
    count=$((count + 1))
  done <"$corpus/debs.plan"
  if ((count == 0)); then
    local mib=$(((n == 0 ? BASE_DEB_KB * 3 : NIGHT_DEB_KB * 3) / 1024 + 1))
    $gen blob "$mnt/opt/pkgs/synthetic-$g-$n" "$mib" "$SEED-pkg-$g-$n"
  fi
}

# ---- night 0: clone the base, diverge each guest ---------------------------
mkdir -p "$corpus/nights/0"
for g in $(seq 1 "$GUESTS"); do
  img=$corpus/work/guest$g.img
  cp --sparse=always "$corpus/work/base.img" "$img"
  mount_img "$img"
  echo "guest$g" >"$mnt/etc/hostname"
  install_pkgs "$g" 0
  $gen blob "$mnt/home/user$g/data" 8 "$SEED-home-$g"
  mkdir -p "$mnt/var/lib/appdb"
  $gen db "$mnt/var/lib/appdb/data.db" "$DB_MIB" "$SEED-db-$g"
  $gen log "$mnt/var/log/syslog" "$LOG_BYTES" "$SEED-log-$g-0" 0
  umount_img
  cp --sparse=always "$img" "$corpus/nights/0/guest$g.img"
  log "night 0 guest$g: $(du -B1 "$img" | cut -f1) bytes allocated"
done

# ---- nights 1..N: in-place change ------------------------------------------
for n in $(seq 1 "$NIGHTS"); do
  mkdir -p "$corpus/nights/$n"
  for g in $(seq 1 "$GUESTS"); do
    img=$corpus/work/guest$g.img
    mount_img "$img"
    $gen log "$mnt/var/log/syslog" "$LOG_BYTES" "$SEED-log-$g-$n" "$n"
    $gen log "$mnt/var/log/auth.log" $((LOG_BYTES / 5)) "$SEED-auth-$g-$n" "$n"
    install_pkgs "$g" "$n"
    $gen pages "$mnt/var/lib/appdb/data.db" "$PAGES" "$SEED-pages-$g-$n"
    umount_img
    cp --sparse=always "$img" "$corpus/nights/$n/guest$g.img"
  done
  log "night $n done"
done

# ---- checksums, manifest ---------------------------------------------------
for n in $(seq 0 "$NIGHTS"); do
  (cd "$corpus/nights/$n" && sha256sum guest*.img >SHA256SUMS)
done
{
  echo "# Ferry benchmark corpus"
  echo "built: $(date -u +%FT%TZ) in $(($(date +%s) - t_start)) s on $(hostname)"
  echo "params: $key"
  echo "base: scripts/testbed/debian-image.sh $GUEST_MIB (Debian bookworm minbase, raw ext4, no partition table)"
  echo "per guest at night 0: /opt/pkgs (unpacked .debs, ~${BASE_DEB_KB} KB of .deb), /home/userG/data (8 MiB random+text),"
  echo "  /var/lib/appdb/data.db (${DB_MIB} MiB of 4 KiB pages, ~2x compressible), /var/log/syslog"
  echo "per guest per night: +${LOG_BYTES} B syslog, +$((LOG_BYTES / 5)) B auth.log, ~${NIGHT_DEB_KB} KB of .debs unpacked, ${PAGES} random 4 KiB page rewrites in data.db"
  echo
  echo "## sizes (logical / allocated bytes)"
  for n in $(seq 0 "$NIGHTS"); do
    for g in $(seq 1 "$GUESTS"); do
      f=$corpus/nights/$n/guest$g.img
      echo "night $n guest$g: $(stat -c %s "$f") / $(($(stat -c %b "$f") * $(stat -c %B "$f")))"
    done
  done
  echo
  echo "## debs (guest night path)"
  cat "$corpus/debs.plan"
} >"$corpus/manifest.txt"
rm -rf "$corpus/work"
echo "$key" >"$corpus/.complete"
log "complete in $(($(date +%s) - t_start)) s: $corpus"
