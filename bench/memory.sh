#!/usr/bin/env bash
# Peak RSS and CPU seconds of backup, restore, check --read-data and sync on
# one 4 GiB sparse image with ~400 MiB of data (half random, half log text),
# each command run REPEAT times under /usr/bin/time -v. Reports, never asserts
# (tests/backup/memory-budget.test.ts asserts the budget).
#
#   bash bench/memory.sh [extra ferry args, e.g. --memory 96M]
#
# Knobs: MEMBENCH_DIR (default /var/tmp/ferry-membench), REPEAT (3),
# MEMBENCH_IMAGE_GIB (4), MEMBENCH_PIECE_MIB (48: 4 random + 4 text pieces),
# FERRY_APP (a built ferry to measure; default: a private copy of this tree's
# build, so a rebuild during the run cannot change it). The restored image is
# compared with the source on the first run only (cmp reads 2x4 GiB).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${MEMBENCH_DIR:-/var/tmp/ferry-membench}"
repeat="${REPEAT:-3}"
gib="${MEMBENCH_IMAGE_GIB:-4}"
piece="${MEMBENCH_PIECE_MIB:-48}"
extra=("$@")
mkdir -p "$dir"
image="$dir/image-${gib}g-${piece}m.img"
export FERRY_PASSWORD=membench FERRY_STATE_DIR="$dir/state"

if [ ! -f "$image" ]; then
  # Pieces spread over the image: random data (incompressible) and log lines (~5x compressible).
  truncate -s "${gib}G" "$image.tmp"
  for i in 0 1 2 3 4 5 6 7; do
    at=$(( (gib * 1024 - piece) * i / 8 ))
    if [ $((i % 2)) -eq 0 ]; then
      dd if=/dev/urandom of="$image.tmp" bs=1M count="$piece" seek="$at" conv=notrunc status=none
    else
      # (awk is cut off by head: its SIGPIPE is expected.)
      (set +o pipefail; awk -v seed="$i" -v bytes=$((piece * 1024 * 1024)) 'BEGIN {
        srand(seed); n = 0
        split("GET POST PUT DELETE", verb, " ")
        while (n < bytes) {
          line = sprintf("2026-11-%02d %02d:%02d:%02d host%03d app[%d]: %s /api/v1/items/%d status=%d took=%dms\n",
            1 + int(rand() * 28), int(rand() * 24), int(rand() * 60), int(rand() * 60), int(rand() * 40),
            1000 + int(rand() * 9000), verb[1 + int(rand() * 4)], int(rand() * 100000), 200 + 100 * int(rand() * 4), int(rand() * 900))
          printf "%s", line; n += length(line)
        }
      }' | head -c $((piece * 1024 * 1024)) | dd of="$image.tmp" bs=1M seek="$at" conv=notrunc status=none iflag=fullblock)
    fi
  done
  mv "$image.tmp" "$image"
fi

# One line per run: command, max RSS MiB, user+sys CPU seconds, wall seconds.
measure() {
  local what="$1"; shift
  local log="$dir/time.log"
  /usr/bin/time -v "$@" >"$dir/out.log" 2>"$log" || { cat "$log" "$dir/out.log" >&2; exit 1; }
  awk -v what="$what" -F': ' '
    /Maximum resident set size/ { rss = $2 / 1024 }
    /User time/ { user = $2 } /System time/ { sys = $2 }
    /Elapsed \(wall clock\)/ { n = split($2, p, ":"); wall = (n == 3 ? p[1] * 3600 + p[2] * 60 + p[3] : p[1] * 60 + p[2]) }
    END { printf "%-12s rss %6.1f MiB  cpu %6.2f s  wall %6.2f s\n", what, rss, user + sys, wall }' "$log"
}

app="${FERRY_APP:-}"
if [ -z "$app" ]; then
  app="$dir/app"
  rm -rf "$app" && mkdir -p "$app/build"
  cp -a "$here/bin" "$here/dist" "$here/package.json" "$app/"
  [ -d "$here/build/Release" ] && cp -a "$here/build/Release" "$app/build/"
  [ -d "$here/prebuilds" ] && cp -a "$here/prebuilds" "$app/"
  ln -s "$here/node_modules" "$app/node_modules"
fi
ferry=(node "$app/bin/ferry")
echo "image $image: $(du -h "$image" | cut -f1) allocated of ${gib} GiB; ferry ${extra[*]:-(defaults)}; load $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq 1 "$repeat"); do
  rm -rf "$dir/repo" "$dir/copy" "$dir/out" "$dir/state"
  "${ferry[@]}" init --repo "$dir/repo" --kdf-memory 8M --kdf-ops 1 >/dev/null 2>&1
  measure backup "${ferry[@]}" backup --repo "$dir/repo" --guest mem "$image" "${extra[@]}"
  mkdir -p "$dir/out"
  measure restore "${ferry[@]}" restore --repo "$dir/repo" latest --guest mem --to "$dir/out" "${extra[@]}"
  if [ "$run" = 1 ]; then cmp "$image" "$dir/out/$(basename "$image")" || { echo "restored image differs" >&2; exit 1; }; fi
  measure check "${ferry[@]}" check --repo "$dir/repo" --read-data "${extra[@]}"
  "${ferry[@]}" init --repo "$dir/copy" --from "$dir/repo" >/dev/null
  measure sync "${ferry[@]}" sync "$dir/repo" "$dir/copy" "${extra[@]}"
done
