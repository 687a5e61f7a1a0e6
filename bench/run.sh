#!/usr/bin/env bash
# `npm run bench`: ferry vs restic vs borg on both corpora, in one run, each
# beside the limits of this machine measured in the same run; then one table.
#
#   npm run bench                       (= npm run build && bash bench/run.sh)
#   BENCH_CORPORA=dense bash bench/run.sh
#
# Per corpus: bench/compare.sh (results/latest.md for the default corpus,
# results/latest-dense.md for the dense one); both together: results/summary.md.
# Then, as its own step, bench/nights.sh (30 nights, retention, weekly prune;
# BENCH_SKIP_NIGHTS=1 leaves it out).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

CORPORA=${BENCH_CORPORA:-corpus dense}
t0=$(date +%s)
for c in $CORPORA; do
  blog "corpus $c"
  BENCH_CORPUS=$c bash "$bench_here/compare.sh" >/dev/null
done
args=()
for c in $CORPORA; do args+=(--corpus "$c=$BENCH_DIR/raw/$c.jsonl"); done
node "$bench_here/lib/summary.mjs" "${args[@]}" --elapsed "$(($(date +%s) - t0))" --out "$bench_here/results/summary.md"

# ---- site restore of the bench fleet beside restic restore, borg extract and cp --sparse=always ----
bash "$bench_here/site-restore.sh" # bench/results/site-restore.md

# ---- 30 nights with retention and a weekly prune (bench/nights.sh) ----
# Its own repositories and results (bench/results/nights.md, nights.png).
if [[ -z ${BENCH_SKIP_NIGHTS:-} ]]; then
  bash "$bench_here/nights.sh"
fi
