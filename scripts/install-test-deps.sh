#!/usr/bin/env bash
# Install the Debian packages the test suite needs, as listed in
# .ci/packages.txt (one package per line; '#' starts a comment).
# apt is not touched when every listed package is already installed, so this
# is cheap to run before every test run.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
list=$repo/.ci/packages.txt
[[ -r $list ]] || { echo "install-test-deps.sh: cannot read $list" >&2; exit 1; }

mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]\+/\n/g' "$list" | grep -v '^$' | sort -u)
(( ${#packages[@]} > 0 )) || exit 0

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$pkg")
done

if (( ${#missing[@]} == 0 )); then
  echo "install-test-deps.sh: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-test-deps.sh: installing ${missing[*]}"
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y --no-install-recommends "${packages[@]}"
