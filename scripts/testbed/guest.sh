#!/usr/bin/env bash
# A tiny real Linux guest for tests: boots under QEMU TCG in seconds and keeps
# writing to an ext4 file system on its virtio disk until it is stopped.
#
#   scripts/testbed/guest.sh build OUTDIR
#       OUTDIR/vmlinux     uncompressed Debian kernel, booted through PVH
#                          (OUTDIR/vmlinuz instead if it cannot be unpacked)
#       OUTDIR/initrd.img  busybox initramfs whose /init (guest/init) mounts
#                          /dev/vda and writes files, printing markers on ttyS0;
#                          it also holds the QEMU guest agent (qemu-ga), which
#                          /init starts only with the kernel parameter ferry.agent=1
#       OUTDIR/disk.img    sparse raw disk holding an empty ext4 file system
#   scripts/testbed/guest.sh start DIR NAME [DISK...]
#       Boots guest NAME from DIR/vmlinux (built into DIR when missing) with
#       DISK... as virtio disks (default DIR/NAME.img, created from a fresh
#       disk.img when missing; a DISK ending in .qcow2 is attached as qcow2).
#       Waits for the guest's FERRY-GUEST-READY line and prints QEMU's pid.
#       Files: DIR/NAME.qmp (QMP socket), DIR/NAME.pid, DIR/NAME.serial (the
#       console), DIR/NAME.log (QEMU's stderr), DIR/NAME.qga (guest agent
#       socket, with FERRY_GUEST_AGENT=1).
#       Disk i is the block node `disk<i>` (its file node `disk<i>-file`) on the
#       virtio-blk device with qdev id `vd<a+i>`.
#   scripts/testbed/guest.sh stop DIR NAME
#       Stops QEMU (SIGTERM, then SIGKILL after 10 s) and removes the pid file.
#
# The kernel (from Debian's linux-image-amd64, downloaded with apt-get, never
# installed), the initramfs and the empty disk are cached under
# ${FERRY_TESTBED_CACHE:-<repo>/.cache/testbed}; after the first build (~10 s)
# a build is a copy. Concurrent builds are safe (flock, files appear by rename).
#
# Environment:
#   FERRY_TESTBED_CACHE     cache directory
#   FERRY_GUEST_DISK_MIB    size of disk.img (default 256)
#   FERRY_GUEST_MEM_MIB     guest memory (default 256)
#   FERRY_GUEST_TICK        seconds between the guest's writes (default 0.1)
#   FERRY_GUEST_BOOT_TIMEOUT  seconds `start` waits for the ready line (default 180)
#   FERRY_GUEST_APPEND      extra kernel command line
#   FERRY_GUEST_AGENT=1     `start` adds a guest-agent channel (virtio-serial port
#                           org.qemu.guest_agent.0 on the socket DIR/NAME.qga) and
#                           runs qemu-ga in the guest
#
# Needs: apt-get + dpkg (kernel), busybox-static, cpio, gzip, xz-utils,
# e2fsprogs, flock; qemu-system-x86 for start. QEMU runs with -accel tcg only:
# /dev/kvm on the test machines cannot boot a normal guest (TESTBED.md).
set -euo pipefail

die() { echo "guest.sh: $*" >&2; exit 1; }
usage() {
  echo "usage: $0 build OUTDIR | start DIR NAME [DISK...] | stop DIR NAME" >&2
  exit 2
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${FERRY_TESTBED_CACHE:-$repo/.cache/testbed}
disk_mib=${FERRY_GUEST_DISK_MIB:-256}
[[ $disk_mib =~ ^[0-9]+$ ]] && (( disk_mib >= 16 )) \
  || die "FERRY_GUEST_DISK_MIB must be a whole number of MiB >= 16, got '$disk_mib'"
# Bump when the recipe below changes; the init script's hash is part of the key too.
recipe=v2

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "missing tool '$tool' (run: bash scripts/install-test-deps.sh)"
  done
}

tmp_paths=()
cleanup() { local p; for p in "${tmp_paths[@]}"; do rm -rf -- "$p"; done; }
trap cleanup EXIT

# --- kernel -----------------------------------------------------------------

# Modules /init loads, in that order (see guest/init).
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
         virtio_blk virtio_console crc16 mbcache jbd2 crc32c_generic ext4)

# Sets KDIR to the cached kernel directory (kernel image + the modules above),
# downloading and unpacking the Debian kernel package on first use.
# (Results go through globals, not $(...): a subshell would not run the EXIT
# trap that removes temporary directories.)
kernel_dir() {
  local existing
  # Any kernel cached earlier will do: tests need a kernel, not the newest one,
  # and this keeps later builds off the network.
  existing=$(ls -d "$cache"/guest-kernel-*/ 2>/dev/null | sort | tail -n 1 || true)
  if [[ -n $existing && -f $existing/ok ]]; then KDIR=${existing%/}; return; fi

  need apt-get apt-cache dpkg xz
  local pkg
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  if [[ -z $pkg ]]; then
    apt-get update -qq >&2 || die "apt-get update failed: cannot find the Debian kernel package"
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
  fi
  [[ -n $pkg ]] || die "apt-cache knows no linux-image-amd64 dependency: check the apt sources"

  local dir=$cache/guest-kernel-$pkg
  local work
  work=$(mktemp -d "$cache/.guest-kernel.XXXXXX"); tmp_paths+=("$work")
  # apt-get download writes into the current directory; as root it warns that
  # _apt cannot write there, which is harmless.
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
  # The Debian kernel is an xz-compressed bzImage: find the xz stream and unpack
  # it (busybox unxz cannot). QEMU boots the resulting ELF through its PVH
  # entry point in ~3 s under TCG instead of ~7 s for the bzImage.
  local off
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -n 1 | cut -d: -f1 || true)
  # (xz stops after the stream and tail then dies of SIGPIPE: not an error.)
  if [[ -n $off ]] && { tail -c +$((off + 1)) "$vmlinuz" || true; } | xz -dc --single-stream > "$work/out/vmlinux" 2>/dev/null \
     && [[ $(head -c 4 "$work/out/vmlinux" | od -An -c | tr -d ' ') == 177ELF ]]; then
    :
  else
    rm -f "$work/out/vmlinux"
    cp "$vmlinuz" "$work/out/vmlinuz"
  fi
  local m f
  for m in "${modules[@]}"; do
    f=$(find "$work/x/lib/modules/$kver" -name "$m.ko" | head -n 1)
    [[ -n $f ]] || die "$pkg has no module $m.ko"
    cp "$f" "$work/out/modules/"
  done
  echo "$pkg $kver" > "$work/out/ok"
  rm -rf "$dir"
  mv "$work/out" "$dir"
  rm -rf "$work"
  KDIR=$dir
}

# Sets AGENT to the cached qemu-ga binary from Debian's qemu-guest-agent
# package (downloaded, never installed). Its libraries are taken from this
# host, which has them because qemu-system-x86 needs the same ones.
agent_binary() {
  local existing
  existing=$(ls -d "$cache"/guest-agent-*/ 2>/dev/null | sort | tail -n 1 || true)
  if [[ -n $existing && -f $existing/qemu-ga ]]; then AGENT=${existing%/}/qemu-ga; return; fi
  need apt-get dpkg
  local work
  work=$(mktemp -d "$cache/.guest-agent.XXXXXX"); tmp_paths+=("$work")
  if ! (cd "$work" && apt-get download qemu-guest-agent >/dev/null 2>&1); then
    apt-get update -qq >&2 || true
    (cd "$work" && apt-get download qemu-guest-agent >&2) || die "apt-get download qemu-guest-agent failed"
  fi
  dpkg -x "$work"/*.deb "$work/x"
  [[ -x $work/x/usr/sbin/qemu-ga ]] || die "qemu-guest-agent holds no /usr/sbin/qemu-ga"
  local ver
  ver=$(basename "$work"/*.deb .deb)
  mkdir -p "$work/out"
  cp "$work/x/usr/sbin/qemu-ga" "$work/out/"
  rm -rf "$cache/guest-agent-$ver"
  mv "$work/out" "$cache/guest-agent-$ver"
  rm -rf "$work"
  AGENT=$cache/guest-agent-$ver/qemu-ga
}

# Copies a dynamically linked program and the libraries it loads into ROOT.
copy_with_libraries() { # BINARY ROOT DEST
  local bin=$1 root=$2 dest=$3
  need ldd
  local ldd_out
  ldd_out=$(ldd "$bin") || die "ldd $bin failed"
  if grep -q 'not found' <<<"$ldd_out"; then
    die "$bin needs libraries this host lacks: $(grep 'not found' <<<"$ldd_out" | awk '{print $1}' | tr '\n' ' ')(install qemu-system-x86)"
  fi
  mkdir -p "$root$(dirname "$dest")"
  cp "$bin" "$root$dest"
  local lib
  for lib in $(grep -o '/[^ ]*' <<<"$ldd_out"); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

# --- initramfs and disk -----------------------------------------------------

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
  root=$(mktemp -d "$cache/.guest-initrd.XXXXXX"); tmp_paths+=("$root")
  mkdir -p "$root"/{bin,dev,proc,sys,mnt,lib/modules}
  cp "$busybox_bin" "$root/bin/busybox"
  local applet
  for applet in $("$busybox_bin" --list); do
    [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
  done
  cp "$kdir"/modules/*.ko "$root/lib/modules/"
  agent_binary
  copy_with_libraries "$AGENT" "$root" /usr/bin/qemu-ga
  cp "$here/guest/init" "$root/init"
  chmod 755 "$root/init"
  (cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) | gzip -1 > "$out"
}

build_disk() { # OUT
  local out=$1
  need mkfs.ext4 truncate
  truncate -s "${disk_mib}M" "$out"
  # No lazy init: the guest kernel must not write inode tables in the
  # background, or every incremental backup would carry that noise.
  mkfs.ext4 -q -F -L ferry-guest -E lazy_itable_init=0,lazy_journal_init=0 "$out" >/dev/null
}

# Sets GUEST_DIR to the cache directory holding vmlinux|vmlinuz, initrd.img, disk.img.
cached_guest() {
  mkdir -p "$cache"
  need flock sha256sum
  local init_hash
  init_hash=$( { echo "$recipe"; cat "$here/guest/init"; } | sha256sum | cut -c1-12)
  exec 9>"$cache/.guest.lock"
  flock 9
  kernel_dir
  local kdir=$KDIR
  local dir=$cache/guest-$recipe-$init_hash-$(basename "$kdir")-${disk_mib}M
  if [[ ! -f $dir/ok ]]; then
    local work
    work=$(mktemp -d "$cache/.guest.XXXXXX"); tmp_paths+=("$work")
    if [[ -f $kdir/vmlinux ]]; then cp "$kdir/vmlinux" "$work/"; else cp "$kdir/vmlinuz" "$work/"; fi
    build_initrd "$kdir" "$work/initrd.img"
    build_disk "$work/disk.img"
    touch "$work/ok"
    # libvirt runs QEMU as another user: everything must be world-readable.
    chmod 755 "$work"; chmod 644 "$work"/*
    rm -rf "$dir"
    mv "$work" "$dir"
  fi
  flock -u 9
  exec 9>&-
  GUEST_DIR=$dir
}

# Places FILE in DIR: a hard link when possible (kernel and initrd are never
# written), else a copy; always by rename, so readers never see half a file.
place() { # SRC DST
  local src=$1 dst=$2
  local tmp=$dst.tmp.$$
  ln -f "$src" "$tmp" 2>/dev/null || cp "$src" "$tmp"
  mv -f "$tmp" "$dst"
}

cmd_build() {
  local out=$1
  mkdir -p "$out"
  cached_guest
  local dir=$GUEST_DIR
  if [[ -f $dir/vmlinux ]]; then place "$dir/vmlinux" "$out/vmlinux"; rm -f "$out/vmlinuz"
  else place "$dir/vmlinuz" "$out/vmlinuz"; rm -f "$out/vmlinux"; fi
  place "$dir/initrd.img" "$out/initrd.img"
  # The disk is written by the guest: always a private sparse copy.
  cp --sparse=always "$dir/disk.img" "$out/disk.img.tmp.$$"
  mv -f "$out/disk.img.tmp.$$" "$out/disk.img"
}

# --- running a guest --------------------------------------------------------

cmd_start() {
  local dir=$1 name=$2; shift 2
  [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "guest name '$name' must be letters, digits, _ . -"
  need qemu-system-x86_64
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [[ ! -f $dir/initrd.img || ( ! -f $dir/vmlinux && ! -f $dir/vmlinuz ) ]]; then cmd_build "$dir"; fi
  local kernel=$dir/vmlinux
  [[ -f $kernel ]] || kernel=$dir/vmlinuz
  local disks=("$@")
  if (( ${#disks[@]} == 0 )); then
    disks=("$dir/$name.img")
    if [[ ! -f $dir/$name.img ]]; then
      [[ -f $dir/disk.img ]] || cmd_build "$dir"
      cp --sparse=always "$dir/disk.img" "$dir/$name.img"
    fi
  fi
  (( ${#disks[@]} <= 20 )) || die "at most 20 disks"

  local pidfile=$dir/$name.pid qmp=$dir/$name.qmp serial=$dir/$name.serial log=$dir/$name.log
  if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    die "guest $name is already running (pid $(cat "$pidfile"))"
  fi
  rm -f "$qmp" "$serial" "$pidfile"

  local append="console=ttyS0 panic=-1 quiet loglevel=3 ferry.tick=${FERRY_GUEST_TICK:-0.1} ${FERRY_GUEST_APPEND:-}"
  local agent=()
  if [[ ${FERRY_GUEST_AGENT:-0} == 1 ]]; then
    rm -f "$dir/$name.qga"
    agent=(-device virtio-serial-pci,id=vser0
      -chardev "socket,id=qga0,path=$dir/$name.qga,server=on,wait=off"
      -device virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0)
    append+=" ferry.agent=1"
  fi
  local args=(-name "$name" -accel tcg -m "${FERRY_GUEST_MEM_MIB:-256}" -smp 1
    -display none -no-reboot -monitor none -serial "file:$serial"
    -kernel "$kernel" -initrd "$dir/initrd.img"
    -append "$append"
    -qmp "unix:$qmp,server=on,wait=off"
    "${agent[@]}"
    -pidfile "$pidfile" -daemonize)
  local i=0 disk fmt letters=abcdefghijklmnopqrst
  for disk in "${disks[@]}"; do
    [[ -f $disk ]] || die "disk image $disk does not exist"
    [[ $disk != *,* ]] || die "disk path $disk contains a comma, which QEMU's option syntax cannot take"
    fmt=raw; [[ $disk == *.qcow2 ]] && fmt=qcow2
    args+=(-blockdev "driver=file,filename=$(realpath "$disk"),node-name=disk$i-file"
      -blockdev "driver=$fmt,file=disk$i-file,node-name=disk$i"
      -device "virtio-blk-pci,drive=disk$i,id=vd${letters:$i:1}")
    i=$((i + 1))
  done
  qemu-system-x86_64 "${args[@]}" 2>"$log" || die "qemu-system-x86_64 failed to start $name: $(tail -n 3 "$log")"

  local timeout=${FERRY_GUEST_BOOT_TIMEOUT:-180} waited=0
  local pid
  pid=$(cat "$pidfile")
  while ! grep -q '^FERRY-GUEST-READY' "$serial" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      die "guest $name exited before it was ready; console tail: $(tail -n 5 "$serial" 2>/dev/null | tr '\n' '|')"
    fi
    if grep -q '^FERRY-GUEST-ERROR' "$serial" 2>/dev/null || (( waited >= timeout * 10 )); then
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$pidfile"
      die "guest $name not ready after $((waited / 10)) s; console tail: $(tail -n 5 "$serial" 2>/dev/null | tr '\n' '|')"
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  echo "$pid"
}

cmd_stop() {
  local dir=$1 name=$2
  local pidfile=$dir/$name.pid
  [[ -f $pidfile ]] || return 0
  local pid
  pid=$(cat "$pidfile")
  # Only signal the process if it still is this guest's QEMU (pids get reused).
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "-name $name "; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

(( $# >= 1 )) || usage
case $1 in
  build) (( $# == 2 )) || usage; cmd_build "$2" ;;
  start) (( $# >= 3 )) || usage; cmd_start "${@:2}" ;;
  stop) (( $# == 3 )) || usage; cmd_stop "$2" "$3" ;;
  *) usage ;;
esac
