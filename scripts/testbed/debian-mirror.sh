#!/usr/bin/env bash
# Print the Debian mirror that test images are debootstrapped from: the one
# this machine's apt already uses, so a machine behind a proxy, a local mirror
# or a snapshot gets the same packages it installs everything else from.
#
#   scripts/testbed/debian-mirror.sh [SUITE]      (default bookworm)
#
# Order: $FERRY_DEBIAN_MIRROR if set; else the first enabled `deb` source in
# sources.list, sources.list.d/*.list and sources.list.d/*.sources (deb822)
# that serves SUITE; else the first one that serves another Debian suite
# (any mirror carries every release); else the public redirector, with a
# note on stderr. Security archives (*-security) are never chosen.
#
# Environment:
#   FERRY_DEBIAN_MIRROR   use this mirror, ignore apt's sources
#   FERRY_APT_ETC         apt's configuration directory (default /etc/apt)
set -euo pipefail

suite=${1:-bookworm}
fallback=http://deb.debian.org/debian

if [[ -n ${FERRY_DEBIAN_MIRROR:-} ]]; then
  echo "$FERRY_DEBIAN_MIRROR"
  exit 0
fi

etc=${FERRY_APT_ETC:-/etc/apt}
files=()
[[ -f $etc/sources.list ]] && files+=("$etc/sources.list")
for f in "$etc"/sources.list.d/*.list "$etc"/sources.list.d/*.sources; do
  [[ -f $f ]] && files+=("$f")
done

# One "URI SUITE" line per (deb source, suite), in file order.
list_sources() {
  local f
  for f in "${files[@]}"; do
    case $f in
      *.sources)
        # deb822: stanzas separated by blank lines; fields may continue on
        # indented lines; "Enabled: no" switches a stanza off.
        awk '
          function flush(   n, u, s, i, j) {
            if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no") {
              n = split(uris, u, /[ \t]+/); split(suites, s, /[ \t]+/)
              for (i = 1; i <= n; i++) for (j in s) if (u[i] != "" && s[j] != "") print u[i], s[j]
            }
            types = uris = suites = enabled = ""; field = ""
          }
          /^[ \t]*#/ { next }
          /^[ \t]*$/ { flush(); next }
          /^[ \t]/ { if (field == "uris") uris = uris " " $0; else if (field == "suites") suites = suites " " $0; next }
          {
            key = tolower($0); sub(/:.*/, "", key)
            val = $0; sub(/^[^:]*:[ \t]*/, "", val)
            field = key
            if (key == "types") types = val
            else if (key == "uris") uris = val
            else if (key == "suites") suites = val
            else if (key == "enabled") enabled = val
          }
          END { flush() }
        ' "$f"
        ;;
      *)
        # One-line form: deb [options] URI SUITE COMPONENT...
        awk '
          { sub(/#.*/, "") }
          $1 != "deb" { next }
          {
            i = 2
            if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            if (i + 1 <= NF) print $i, $(i + 1)
          }
        ' "$f"
        ;;
    esac
  done
}

debian_suite='^(buster|bullseye|bookworm|trixie|forky|duke|sid|oldoldstable|oldstable|stable|testing|unstable)(-updates|-backports)?$'
pick() {
  local uri s exact="" other=""
  while read -r uri s; do
    # debootstrap fetches over http(s) or from a local tree.
    [[ $uri =~ ^(https?|file): ]] || continue
    [[ $s == *-security || $uri == *security* ]] && continue
    uri=${uri%/}
    if [[ $s == "$suite" ]]; then exact=$uri; break; fi
    [[ -z $other && $s =~ $debian_suite ]] && other=$uri
  done
  echo "${exact:-$other}"
}

mirror=$( ((${#files[@]})) && list_sources | pick || true)
if [[ -z $mirror ]]; then
  echo "debian-mirror.sh: no Debian source for $suite in $etc; using $fallback (set FERRY_DEBIAN_MIRROR to choose)" >&2
  mirror=$fallback
fi
echo "$mirror"
