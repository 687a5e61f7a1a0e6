#!/usr/bin/env bash
# Build a raw ext4 disk image holding a real Debian bookworm (minbase) system.
#
#   scripts/testbed/debian-image.sh OUT.img [SIZE_MIB]     (default 1024 MiB)
#   scripts/testbed/debian-image.sh --rootfs-tar
#
# --rootfs-tar prints the path of the cached root file system tarball
# (tar.zst, numeric owners), building it if needed: a chroot without a
# compiler for tests of the install.
#
# The image is sparse and has no partition table: the ext4 file system starts
# at byte 0, so `mount -o loop OUT.img DIR` works directly.
#
# The debootstrapped root file system is cached as a tarball, and each built
# image size is cached too, under ${FERRY_TESTBED_CACHE:-<repo>/.cache/testbed};
# after the first run (~1 minute, needs the Debian mirror) a call takes
# seconds. Concurrent calls are safe: cache writes happen under flock and
# every file appears by rename. OUT is replaced atomically.
#
# Environment:
#   FERRY_TESTBED_CACHE   cache directory
#   FERRY_DEBIAN_MIRROR   mirror (default: the one apt uses here, see debian-mirror.sh)
#
# Needs root (debootstrap), debootstrap, e2fsprogs (mkfs.ext4 -d), zstd, flock.
set -euo pipefail

usage() { echo "usage: $0 OUT.img [SIZE_MIB] | --rootfs-tar" >&2; exit 2; }
die() { echo "debian-image.sh: $*" >&2; exit 1; }

[[ $# -ge 1 && $# -le 2 ]] || usage
rootfs_only=false
if [[ $1 == --rootfs-tar ]]; then
  [[ $# -eq 1 ]] || usage
  rootfs_only=true
  set -- unused
fi
out=$1
size_mib=${2:-1024}
[[ $size_mib =~ ^[0-9]+$ ]] || die "SIZE_MIB must be a whole number of MiB, got '$size_mib'"
# A minbase rootfs is ~200 MB; below this mkfs -d runs out of room.
(( size_mib >= 384 )) || die "SIZE_MIB must be at least 384 (a minbase system needs ~250 MiB), got $size_mib"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${FERRY_TESTBED_CACHE:-$repo/.cache/testbed}
suite=bookworm
# Bump when the recipe changes so stale caches are not reused.
recipe=v1

for tool in debootstrap mkfs.ext4 zstd flock tar; do
  command -v "$tool" >/dev/null 2>&1 \
    || die "missing tool '$tool' (run: bash scripts/install-test-deps.sh)"
done
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, device nodes, file ownership)"

mkdir -p "$cache"
rootfs_tar=$cache/debian-$suite-minbase-$recipe.tar.zst
image_cache=$cache/debian-$suite-minbase-$recipe-${size_mib}M.img

# Everything temporary lives in the cache directory (same file system, so
# renames are atomic) and is removed on any exit.
tmp_paths=()
cleanup() {
  local p
  for p in "${tmp_paths[@]}"; do
    # debootstrap mounts /proc and /sys inside the target; an interrupted run
    # can leave them mounted, and rm must never descend into them.
    if [[ -d $p ]]; then
      { grep -F " $p/" /proc/mounts || true; } | awk '{print $2}' | sort -r \
        | while read -r m; do umount -l "$m" 2>/dev/null || true; done
      rm -rf --one-file-system "$p"
    else
      rm -f "$p"
    fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_rootfs_tar() {
  local target
  target=$(mktemp -d "$cache/rootfs.XXXXXX")
  tmp_paths+=("$target")
  chmod 0755 "$target" # becomes / of the guest; mktemp made it 0700
  local mirror
  mirror=$(bash "$repo/scripts/testbed/debian-mirror.sh" "$suite")
  echo "debian-image.sh: debootstrap $suite minbase from $mirror (first run only)" >&2
  if ! debootstrap --variant=minbase "$suite" "$target" "$mirror" >"$target.log" 2>&1; then
    tail -n 20 "$target.log" >&2
    rm -f "$target.log"
    die "debootstrap failed (log above)"
  fi
  rm -f "$target.log"
  # Trim what no test needs; keeps the image and the tarball small.
  rm -rf "$target"/var/cache/apt/archives/*.deb "$target"/var/lib/apt/lists/* \
    "$target"/var/log/*.log "$target"/tmp/* 2>/dev/null || true
  echo "ferry-testbed" >"$target/etc/hostname"
  local part
  part=$(mktemp "$cache/rootfs.tar.XXXXXX")
  tmp_paths+=("$part")
  tar --numeric-owner --xattrs --acls -C "$target" -cf - . | zstd -q -T0 -3 -o "$part" -f
  mv -f "$part" "$rootfs_tar"
}

build_cached_image() {
  local root part
  root=$(mktemp -d "$cache/root.XXXXXX")
  tmp_paths+=("$root")
  chmod 0755 "$root"
  zstd -q -dc "$rootfs_tar" | tar --numeric-owner --xattrs --acls -C "$root" -xf -
  part=$(mktemp "$cache/image.XXXXXX")
  tmp_paths+=("$part")
  truncate -s "${size_mib}M" "$part"
  # Fixed UUID and hash seed: the same recipe gives the same file system
  # identity each time, which keeps benchmark inputs comparable.
  mkfs.ext4 -q -F -L ferry-debian \
    -U 6f8b7a52-3c1e-4d2a-9f0b-5e4c3d2a1b0f -E hash_seed=1c0ffee0-0000-4000-8000-000000000001 \
    -d "$root" "$part" \
    || die "mkfs.ext4 -d failed for a ${size_mib} MiB image"
  rm -rf --one-file-system "$root"
  chmod 0644 "$part"
  mv -f "$part" "$image_cache"
}

# One lock for the whole cache: builds are rare, and serialising them keeps
# two concurrent callers from debootstrapping twice.
exec 9>"$cache/.lock"
flock 9
[[ -s $rootfs_tar ]] || build_rootfs_tar
if $rootfs_only; then
  echo "$rootfs_tar"
  exit 0
fi
[[ -s $image_cache ]] || build_cached_image
flock -u 9

out_dir=$(dirname -- "$out")
[[ -d $out_dir ]] || die "output directory does not exist: $out_dir"
out_part=$(mktemp "$out_dir/.$(basename -- "$out").XXXXXX")
tmp_paths+=("$out_part")
cp --sparse=always --reflink=auto "$image_cache" "$out_part"
chmod 0644 "$out_part"
mv -f "$out_part" "$out"
