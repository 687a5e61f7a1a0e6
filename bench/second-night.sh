#!/usr/bin/env bash
# CPU seconds (user+sys) and wall time of a second-night backup, for one or
# more builds of ferry side by side: the first night is backed up once (by the
# last build given), then each run backs the second night up into a fresh copy
# of that repository, builds interleaved so load drifts hit them alike.
# Reports, never asserts (figures in docs/ARCHITECTURE.md, "Nightly CPU").
#
#   bash bench/second-night.sh NIGHT0_IMAGE NIGHT1_IMAGE [FERRY_APP...]
#
# Both images must have the same file name (the disk name a backup finds its
# previous disk by), e.g. the bench corpus's nights/0/guest1.img and
# nights/1/guest1.img. FERRY_APP: a directory holding a built ferry (bin/,
# dist/, node_modules/); default: a private copy of this tree's build.
# Knobs: NIGHTBENCH_DIR (default /var/tmp/ferry-nightbench), REPEAT (3).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
[ $# -ge 2 ] || { echo "usage: bash bench/second-night.sh NIGHT0_IMAGE NIGHT1_IMAGE [FERRY_APP...]" >&2; exit 2; }
night0="$1"; night1="$2"; shift 2
[ "$(basename "$night0")" = "$(basename "$night1")" ] || { echo "second-night.sh: $night0 and $night1 must have the same file name" >&2; exit 2; }
dir="${NIGHTBENCH_DIR:-/var/tmp/ferry-nightbench}"
repeat="${REPEAT:-3}"
mkdir -p "$dir"
export FERRY_PASSWORD=nightbench FERRY_STATE_DIR="$dir/state"
apps=("$@")
if [ ${#apps[@]} -eq 0 ]; then
  rm -rf "$dir/app" && mkdir -p "$dir/app"
  cp -r "$here/dist" "$here/bin" "$here/package.json" "$dir/app/"
  for l in node_modules build prebuilds; do [ -e "$here/$l" ] && ln -sfn "$here/$l" "$dir/app/$l"; done
  apps=("$dir/app")
fi
base="$dir/base"
rm -rf "$base"
"${apps[-1]}/bin/ferry" init --repo "$base" >/dev/null 2>&1
"${apps[-1]}/bin/ferry" backup --repo "$base" --guest nightbench "$night0" >/dev/null 2>&1
cat "$night1" >/dev/null # warm page cache: CPU, not the disk, is measured
printf '%-40s %4s %8s %8s %8s %8s %s\n' app run user sys cpu wall reusedRegions
for run in $(seq 1 "$repeat"); do
  for app in "${apps[@]}"; do
    rm -rf "$dir/run" && cp -a "$base" "$dir/run"
    json=$(/usr/bin/time -o "$dir/time.txt" -f '%U %S %e' "$app/bin/ferry" backup --repo "$dir/run" --guest nightbench "$night1" --json 2>/dev/null)
    read -r user sys wall < "$dir/time.txt"
    reused=$(printf '%s' "$json" | node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>console.log(JSON.parse(s).reusedRegions ?? "-"))')
    printf '%-40s %4s %8s %8s %8.2f %8s %s\n' "$app" "$run" "$user" "$sys" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$wall" "$reused"
  done
done
rm -rf "$dir/run"
