#!/usr/bin/env bash
# Bootable "identity" guests for site-restore tests: a raw disk that QEMU boots
# from its own MBR (no -kernel/-initrd: a restored guest's disk is all a
# restore has), and that prints on the serial console who it is and a checksum
# of its data, so a test can tell that the right disk came back intact.
#
#   scripts/testbed/bootdisk.sh build OUT NAME DATAFILE
#       Writes the raw disk image OUT:
#         MBR     SYSLINUX's mbr.bin + a DOS partition table
#         part 1  FAT16 (active): SYSLINUX, the Debian kernel (vmlinuz) and a
#                 busybox initramfs whose /init is bootdisk/init
#         part 2  ext4: /identity (NAME) and /data.bin (a copy of DATAFILE,
#                 in one contiguous run of blocks)
#       At boot the guest prints (see bootdisk/init)
#         FERRY-GUEST name=NAME sum=<sha256 of DATAFILE>
#         FERRY-GUEST-READY name=NAME
#       and never writes to its disk; with a virtio NIC it also serves that
#       line over HTTP on port 80 (FERRY-GUEST-NET line). Prints, one per line:
#         sum=<sha256 of DATAFILE>
#         data_offset=<byte offset of data.bin's first byte in OUT>
#         data_length=<bytes>
#         size=<bytes of OUT>
#
# The kernel (Debian's linux-image-amd64, downloaded with apt-get, never
# installed), the initramfs and the boot partition are cached under
# ${FERRY_TESTBED_CACHE:-<repo>/.cache/testbed}; after the first build a disk
# costs one mkfs.ext4 of its data partition and a few dd. Concurrent builds are
# safe (flock, cache entries appear by rename).
#
# Environment:
#   FERRY_TESTBED_CACHE     cache directory
#   FERRY_BOOTDISK_DATA_MIB size of the data partition (default: the data + 25% + 8 MiB)
#   FERRY_BOOTDISK_ADDRESS  the guest's eth0 address, a.b.c.d/n (default 10.0.2.15/24)
#
# Needs: apt-get + dpkg (kernel), syslinux + syslinux-common + mtools (boot
# loader, written into the FAT image without mounting it), dosfstools,
# fdisk (sfdisk), e2fsprogs (mkfs.ext4 -d, debugfs), busybox-static, cpio,
# gzip, flock. Booting: qemu-system-x86_64 -accel tcg -drive
# file=OUT,format=raw,if=virtio -serial file:LOG (6-9 s to the marker line).
set -euo pipefail

die() { echo "bootdisk.sh: $*" >&2; exit 1; }
usage() { echo "usage: $0 build OUT NAME DATAFILE" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${FERRY_TESTBED_CACHE:-$repo/.cache/testbed}
# Bump when the recipe below changes; the init script's hash is part of the key too.
recipe=v2
boot_mib=24

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "missing tool '$tool' (run: bash scripts/install-test-deps.sh)"
  done
}

tmp_paths=()
cleanup() { local p; for p in "${tmp_paths[@]}"; do rm -rf -- "$p"; done; }
trap cleanup EXIT

modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
         virtio_blk failover net_failover virtio_net crc16 mbcache jbd2 crc32c_generic ext4)

# Sets KDIR to the cached directory holding vmlinuz and the modules above.
# (Results go through globals, not $(...): a subshell would not run the EXIT
# trap that removes temporary directories.)
kernel_dir() {
  local existing
  # Any kernel cached earlier will do: tests need a kernel, not the newest one.
  existing=$(ls -d "$cache"/bootdisk-kernel-*/ 2>/dev/null | sort | tail -n 1 || true)
  if [[ -n $existing && -f $existing/ok ]]; then
    local m complete=1
    for m in "${modules[@]}"; do [[ -f $existing/modules/$m.ko ]] || complete=0; done
    if (( complete )); then KDIR=${existing%/}; return; fi
  fi

  need apt-get apt-cache dpkg
  local pkg
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  if [[ -z $pkg ]]; then
    apt-get update -qq >&2 || die "apt-get update failed: cannot find the Debian kernel package"
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
  fi
  [[ -n $pkg ]] || die "apt-cache knows no linux-image-amd64 dependency: check the apt sources"

  local work
  work=$(mktemp -d "$cache/.bootdisk-kernel.XXXXXX"); tmp_paths+=("$work")
  # As root apt-get warns that _apt cannot write here, which is harmless.
  if ! (cd "$work" && apt-get download "$pkg" >/dev/null 2>&1); then
    apt-get update -qq >&2 || true
    (cd "$work" && apt-get download "$pkg" >&2) || die "apt-get download $pkg failed"
  fi
  dpkg -x "$work"/*.deb "$work/x"
  local vmlinuz
  vmlinuz=$(ls "$work"/x/boot/vmlinuz-* | head -n 1)
  [[ -f $vmlinuz ]] || die "$pkg holds no /boot/vmlinuz-*"
  local kver=${vmlinuz##*/vmlinuz-}
  mkdir -p "$work/out/modules"
  # SYSLINUX loads a bzImage; the compressed vmlinuz is one.
  cp "$vmlinuz" "$work/out/vmlinuz"
  local m f
  for m in "${modules[@]}"; do
    f=$(find "$work/x/lib/modules/$kver" -name "$m.ko" | head -n 1)
    [[ -n $f ]] || die "$pkg has no module $m.ko"
    cp "$f" "$work/out/modules/"
  done
  echo "$pkg $kver" > "$work/out/ok"
  rm -rf "$cache/bootdisk-kernel-$pkg"
  mv "$work/out" "$cache/bootdisk-kernel-$pkg"
  KDIR=$cache/bootdisk-kernel-$pkg
}

build_initrd() { # KERNEL_DIR OUT
  local kdir=$1 out=$2
  need busybox cpio gzip
  local busybox_bin
  busybox_bin=$(command -v busybox)
  # Only a static busybox runs in an initramfs without libraries.
  if file_out=$(LC_ALL=C file -L "$busybox_bin" 2>/dev/null); then
    [[ $file_out == *statically* || $file_out == *static-pie* ]] \
      || die "$busybox_bin is not static: install busybox-static"
  fi
  local root
  root=$(mktemp -d "$cache/.bootdisk-initrd.XXXXXX"); tmp_paths+=("$root")
  mkdir -p "$root"/{bin,dev,proc,sys,mnt,lib/modules}
  cp "$busybox_bin" "$root/bin/busybox"
  local applet
  for applet in $("$busybox_bin" --list); do
    [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
  done
  cp "$kdir"/modules/*.ko "$root/lib/modules/"
  cp "$here/bootdisk/init" "$root/init"
  chmod 755 "$root/init"
  (cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) | gzip -1 > "$out"
}

mbr_bin() {
  local f
  for f in /usr/lib/syslinux/mbr/mbr.bin /usr/lib/SYSLINUX/mbr.bin; do
    [[ -f $f ]] && { MBR=$f; return; }
  done
  die "no SYSLINUX mbr.bin (install syslinux-common)"
}

# The FAT boot partition: SYSLINUX installed with mtools (no mount, no loop
# device), the kernel, the initramfs and a config that boots them at once.
build_boot_partition() { # KERNEL_DIR INITRD OUT
  local kdir=$1 initrd=$2 out=$3
  need mkfs.fat syslinux mcopy
  truncate -s "${boot_mib}M" "$out"
  mkfs.fat -F 16 -n FERRYBOOT "$out" >/dev/null
  syslinux --install "$out"
  local cfg
  cfg=$(mktemp "$cache/.bootdisk-cfg.XXXXXX"); tmp_paths+=("$cfg")
  cat > "$cfg" <<'CFG'
DEFAULT ferry
PROMPT 0
TIMEOUT 0
LABEL ferry
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0 panic=-1 quiet loglevel=3
CFG
  mcopy -o -i "$out" "$cfg" ::/syslinux.cfg
  mcopy -o -i "$out" "$kdir/vmlinuz" ::/vmlinuz
  mcopy -o -i "$out" "$initrd" ::/initrd.img
}

# Sets BASE_DIR to the cache directory holding boot.img (the FAT partition) and mbr.bin.
cached_base() {
  mkdir -p "$cache"
  need flock sha256sum
  local init_hash
  init_hash=$( { echo "$recipe"; cat "$here/bootdisk/init"; } | sha256sum | cut -c1-12)
  exec 9>"$cache/.bootdisk.lock"
  flock 9
  kernel_dir
  local kdir=$KDIR
  local dir=$cache/bootdisk-$recipe-$init_hash-$(basename "$kdir")
  if [[ ! -f $dir/ok ]]; then
    local work
    work=$(mktemp -d "$cache/.bootdisk.XXXXXX"); tmp_paths+=("$work")
    build_initrd "$kdir" "$work/initrd.img"
    build_boot_partition "$kdir" "$work/initrd.img" "$work/boot.img"
    mbr_bin
    cp "$MBR" "$work/mbr.bin"
    touch "$work/ok"
    chmod 755 "$work"; chmod 644 "$work"/*
    rm -rf "$dir"
    mv "$work" "$dir"
  fi
  flock -u 9
  exec 9>&-
  BASE_DIR=$dir
}

cmd_build() {
  local out=$1 name=$2 data=$3
  [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$ ]] || die "guest name '$name' must be 1-63 letters, digits, _ . -"
  [[ -f $data ]] || die "data file $data does not exist"
  need mkfs.ext4 debugfs sfdisk truncate dd
  cached_base
  local base=$BASE_DIR

  local data_bytes
  data_bytes=$(stat -c %s "$data")
  (( data_bytes > 0 )) || die "data file $data is empty"
  local data_mib=${FERRY_BOOTDISK_DATA_MIB:-$(( (data_bytes * 5 / 4 + 1048575) / 1048576 + 8 ))}
  [[ $data_mib =~ ^[0-9]+$ ]] || die "FERRY_BOOTDISK_DATA_MIB must be a whole number of MiB, got '$data_mib'"

  local work
  work=$(mktemp -d "$(dirname "$out")/.bootdisk-$name.XXXXXX"); tmp_paths+=("$work")
  mkdir "$work/root"
  printf '%s\n' "$name" > "$work/root/identity"
  cp "$data" "$work/root/data.bin"
  if [[ -n ${FERRY_BOOTDISK_ADDRESS:-} ]]; then
    [[ $FERRY_BOOTDISK_ADDRESS =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$ ]] \
      || die "FERRY_BOOTDISK_ADDRESS must look like 10.0.2.15/24, got '$FERRY_BOOTDISK_ADDRESS'"
    printf '%s\n' "$FERRY_BOOTDISK_ADDRESS" > "$work/root/address"
  fi
  truncate -s "${data_mib}M" "$work/data.part"
  # 4 KiB blocks, everything initialised now: the guest mounts it read-only.
  mkfs.ext4 -q -F -b 4096 -L ferry-data -d "$work/root" \
    -E lazy_itable_init=0,lazy_journal_init=0 "$work/data.part" >/dev/null \
    || die "mkfs.ext4 of the data partition failed (data ${data_bytes} bytes in ${data_mib} MiB; set FERRY_BOOTDISK_DATA_MIB)"

  # Where data.bin lies, so tests can damage or change it in place.
  local blocks=$(( (data_bytes + 4095) / 4096 ))
  local first last
  first=$(debugfs -R "bmap /data.bin 0" "$work/data.part" 2>/dev/null)
  last=$(debugfs -R "bmap /data.bin $((blocks - 1))" "$work/data.part" 2>/dev/null)
  [[ $first =~ ^[0-9]+$ && $last =~ ^[0-9]+$ && $first -gt 0 ]] || die "debugfs found no blocks of data.bin"
  (( last == first + blocks - 1 )) || die "data.bin is not contiguous in the data partition (blocks $first..$last for $blocks)"

  local boot_start=2048 boot_sectors=$((boot_mib * 2048))
  local data_start=$((boot_start + boot_sectors)) data_sectors=$((data_mib * 2048))
  local total=$(( (data_start + data_sectors) * 512 ))
  local img=$work/disk.img
  truncate -s "$total" "$img"
  sfdisk --quiet --no-reread --no-tell-kernel "$img" >/dev/null <<TABLE || die "sfdisk failed on $img"
label: dos
start=$boot_start, size=$boot_sectors, type=e, bootable
start=$data_start, size=$data_sectors, type=83
TABLE
  # The boot code is the first 440 bytes; the disk id and partition table follow it.
  dd if="$base/mbr.bin" of="$img" bs=440 count=1 conv=notrunc status=none
  dd if="$base/boot.img" of="$img" bs=1M seek=1 conv=notrunc,sparse status=none
  dd if="$work/data.part" of="$img" bs=1M seek=$((1 + boot_mib)) conv=notrunc,sparse status=none
  mv -f "$img" "$out"

  echo "sum=$(sha256sum "$data" | cut -d ' ' -f 1)"
  echo "data_offset=$(( data_start * 512 + first * 4096 ))"
  echo "data_length=$data_bytes"
  echo "size=$total"
}

(( $# >= 1 )) || usage
case $1 in
  build) (( $# == 4 )) || usage; cmd_build "$2" "$3" "$4" ;;
  *) usage ;;
esac
