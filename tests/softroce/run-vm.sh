#!/usr/bin/env bash
# Runs a command inside a qemu VM with soft-RoCE (rdma_rxe): two "hosts" in
# one kernel, A and B, each with its own rxe device and address, and network
# namespaces tutti_a and tutti_b to run each host's processes in. Real
# libibverbs, real queue pairs, no RDMA hardware, no KVM.
#
#   run-vm.sh --cache DIR [--timeout SECONDS] [--verbose] -- COMMAND [ARGS...]
#
#   --cache DIR      keeps Debian's kernel and the initramfs between runs
#   --timeout S      kills the VM after S seconds (default 300)
#   --verbose        shows the kernel's messages and times the guest's setup
#
# Must run as root: it installs packages, boots qemu and serves the host's
# root file system to the guest over 9p. The guest sees the host's root
# read-only, so COMMAND runs with the same binaries, from the same working
# directory, in the guest's root network namespace, with these variables:
#   TUTTI_SOFTROCE=1
#   TUTTI_SOFTROCE_NETNS_A=tutti_a     TUTTI_SOFTROCE_NETNS_B=tutti_b
#   TUTTI_SOFTROCE_HCA_A=rxe_a         TUTTI_SOFTROCE_HCA_B=rxe_b
#   TUTTI_SOFTROCE_ADDR_A=10.77.0.1    TUTTI_SOFTROCE_ADDR_B=10.77.0.2
#   TUTTI_SOFTROCE_GID_INDEX_A/_B      the RoCE v2 GID index of each address
# plus PATH, HOME and TMPDIR (on a tmpfs: nothing else is writable), and the
# host's TUTTI_* and *SAN_OPTIONS variables. /dev/shm is a tmpfs; /tmp is the
# host's, read-only. Run a rank of host A as
#   ip netns exec "$TUTTI_SOFTROCE_NETNS_A" PROGRAM
# there it has ADDR_A and reaches ADDR_B over TCP (a veth pair between the
# namespaces); it opens HCA_A, whose RoCE v2 GID is ADDR_A, and its RDMA
# traffic to HCA_B crosses a second veth pair (see guest_main for why two).
#
# COMMAND's stdout and stderr stream to stdout through the VM's serial
# console, and run-vm.sh exits with COMMAND's exit status. Other exits:
#   77   the harness cannot run here (not root, no apt, packages or kernel
#        not obtainable): ctest reports a skip with SKIP_RETURN_CODE 77
#   124  the VM ran past --timeout and was killed
#   125  the VM died, or the guest's setup failed, before COMMAND finished
#   2    bad usage
# Everything it creates stays in the cache directory: the kernel, the
# initramfs, and for each run a fresh directory that it removes on exit.
set -euo pipefail

readonly netns_a=tutti_a netns_b=tutti_b
readonly veth_a=veth_a veth_b=veth_b
readonly roce_a=roce_a roce_b=roce_b
readonly hca_a=rxe_a hca_b=rxe_b
readonly addr_a=10.77.0.1 addr_b=10.77.0.2 prefix_len=24
# Modules the guest loads once its root is mounted, in this order: rdma_rxe
# computes its ICRC with the kernel's "crc32" crypto hash, and `rdma link add`
# fails unless a crc32 implementation is loaded first.
readonly guest_modules=(crc32_generic crc32_pclmul ib_core ib_uverbs rdma_rxe veth)
# Modules the initramfs needs to mount the 9p root (their dependencies, in
# load order, come from modprobe --show-depends).
readonly initramfs_modules=(virtio_pci 9pnet_virtio 9p)

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
  echo "run-vm.sh: $*" >&2
  exit 1
}

skip() {
  echo "run-vm.sh: SKIP: $*" >&2
  exit 77
}

# --- guest side -------------------------------------------------------------
# After the initramfs has mounted the host's root, the guest's PID 1 runs this
# script again as `run-vm.sh --guest SHARE`. SHARE is the run's writable 9p
# share: `job` in it says what to run, `status` carries the result back.

guest_share=""
guest_status_written=0
job_verbose=0

# PID 1 must never just exit: the kernel would panic, loudly. Whatever
# happened, leave a status for the host and power off.
guest_finish() {
  local rc=$1
  if [ "$guest_status_written" -eq 0 ]; then
    echo "run-vm.sh (guest): setup failed with status $rc" >&2
    echo "setup $rc" >"$guest_share/status" || true
  fi
  sync
  # busybox's poweroff -f calls reboot(2) directly: there is no init system
  # to ask.
  /bin/busybox poweroff -f
  sleep 60
}

# gid_index DEVICE ADDRESS: the index of DEVICE's RoCE v2 GID for the IPv4
# ADDRESS (an IPv4-mapped IPv6 GID), or fails.
# Builtins only: the table has hundreds of entries, and every process costs
# milliseconds under emulation.
gid_index() {
  local dev=$1 addr=$2 want port path gid type
  local IFS=.
  # shellcheck disable=SC2086 # splitting the dotted quad is the point
  set -- $addr
  printf -v want '0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x' "$1" "$2" "$3" "$4"
  port=/sys/class/infiniband/$dev/ports/1
  for path in "$port"/gids/*; do
    # Unused entries read as zeros or fail to read.
    read -r gid 2>/dev/null <"$path" || continue
    [ "$gid" = "$want" ] || continue
    read -r type 2>/dev/null <"$port/gid_attrs/types/${path##*/}" || continue
    if [ "$type" = "RoCE v2" ]; then
      echo "${path##*/}"
      return 0
    fi
  done
  return 1
}

# step WHAT: with --verbose, says what the guest does next and when (seconds
# since the kernel started).
step() {
  [ "$job_verbose" -eq 1 ] || return 0
  local up
  read -r up _ </proc/uptime
  echo "run-vm.sh (guest) [$up s]: $*" >&2
}

# wait_gid DEVICE ADDRESS: the GID table fills in asynchronously after
# `rdma link add`; waits up to 10 s for the RoCE v2 GID of ADDRESS.
wait_gid() {
  local _
  for _ in $(seq 100); do
    gid_index "$1" "$2" && return 0
    sleep 0.1
  done
  echo "run-vm.sh (guest): $1 has no RoCE v2 GID for $2" >&2
  return 1
}

guest_main() {
  guest_share=$1
  trap 'guest_finish $?' EXIT
  export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

  # The serial console would turn every \n into \r\n in the host's logs.
  stty -onlcr </dev/console 2>/dev/null || true

  local job_cwd="" job_kernel_root="" job_cmd=() job_env=()
  # shellcheck source=/dev/null # written by host_main with printf %q
  source "$guest_share/job"

  # The initramfs moved /proc, /sys and /dev here and mounted /run (the
  # share's mount point). The host's root is read-only, so everything
  # writable lives on tmpfs. /tmp is deliberately left alone: the build tree
  # may be under the host's /tmp, and a tmpfs there would hide it.
  mkdir -p /dev/shm /dev/pts
  mount -t tmpfs -o mode=1777 shm /dev/shm
  mount -t devpts -o gid=5,mode=620 devpts /dev/pts
  mkdir -p /run/tutti/home
  mkdir -m 1777 /run/tutti/tmp
  ulimit -l unlimited

  step "loading ${guest_modules[*]}"
  modprobe -a -d "$job_kernel_root" "${guest_modules[@]}"

  step "creating the RoCE link and the namespaces $netns_a and $netns_b"
  # rdma_rxe in Debian 12's kernel (6.1) only works in the initial network
  # namespace: it looks up routes in init_net and receives on one UDP socket
  # there (per-namespace rxe is a much later addition). An rxe device on a
  # veth moved into a namespace gets its GIDs, but every send completes with
  # a local QP operation error. So the two hosts are built in two layers,
  # with the same addresses in both:
  #  - RDMA: $roce_a ($addr_a) and $roce_b ($addr_b), a veth pair in the
  #    root namespace, $hca_a on $roce_a and $hca_b on $roce_b. Both
  #    addresses are local there, so policy routing sends traffic for one
  #    address out through the other's veth instead of through lo (rxe drops
  #    what arrives on lo), and accept_local lets it in at the other end.
  #  - TCP (bootstrap, stores, perftest's exchange): $veth_a ($addr_a) in
  #    $netns_a and $veth_b ($addr_b) in $netns_b, a veth pair between them.
  # A rank run in $netns_a sees only its own address and reaches the other
  # over TCP; verbs, whatever the caller's namespace, use the shared rxe
  # devices (whose netdevs it cannot see). From the root namespace both
  # addresses answer, over the RDMA link.
  # Jumbo frames, as on real RoCE fabrics: rxe then runs at an IB MTU of
  # 4096, which also moves about 1.5x the bytes per second of 1500 here.
  local conf
  for conf in all default; do
    echo 1 >"/proc/sys/net/ipv4/conf/$conf/accept_local"
    echo 0 >"/proc/sys/net/ipv4/conf/$conf/rp_filter"
  done
  # ip -batch: one process per namespace rather than one per command.
  ip -batch - <<EOF
link set lo up
link add $roce_a mtu 9000 type veth peer name $roce_b mtu 9000
addr add $addr_a/$prefix_len dev $roce_a
addr add $addr_b/$prefix_len dev $roce_b
link set $roce_a up
link set $roce_b up
rule add pref 100 lookup local
rule del pref 0 lookup local
rule add pref 10 iif lo to $addr_a lookup 101
rule add pref 11 iif lo to $addr_b lookup 102
route add $addr_a dev $roce_b src $addr_b table 101
route add $addr_b dev $roce_a src $addr_a table 102
netns add $netns_a
netns add $netns_b
link add $veth_a netns $netns_a type veth peer name $veth_b netns $netns_b
EOF
  ip -n "$netns_a" -batch - <<EOF
link set lo up
addr add $addr_a/$prefix_len dev $veth_a
link set $veth_a up
EOF
  ip -n "$netns_b" -batch - <<EOF
link set lo up
addr add $addr_b/$prefix_len dev $veth_b
link set $veth_b up
EOF
  step "adding $hca_a and $hca_b"
  # rdma devices are shared across namespaces (the default `rdma system`
  # netns mode), so processes in $netns_a and $netns_b open them too.
  rdma -b - <<EOF
link add $hca_a type rxe netdev $roce_a
link add $hca_b type rxe netdev $roce_b
EOF

  # What a verbs program sees: libibverbs must list both devices.
  step "checking ibv_devices"
  local devices gid_a gid_b
  devices=$(ibv_devices)
  [[ "$devices" =~ [[:space:]]${hca_a}[[:space:]] ]] || die "ibv_devices does not list $hca_a: $devices"
  [[ "$devices" =~ [[:space:]]${hca_b}[[:space:]] ]] || die "ibv_devices does not list $hca_b: $devices"
  step "waiting for RoCE v2 GIDs"
  gid_a=$(wait_gid "$hca_a" "$addr_a")
  gid_b=$(wait_gid "$hca_b" "$addr_b")
  step "GID indices: $hca_a $gid_a, $hca_b $gid_b"

  local env=(
    PATH="$PATH"
    HOME=/run/tutti/home
    TMPDIR=/run/tutti/tmp
    LANG=C.UTF-8
    TUTTI_SOFTROCE=1
    TUTTI_SOFTROCE_NETNS_A="$netns_a" TUTTI_SOFTROCE_NETNS_B="$netns_b"
    TUTTI_SOFTROCE_HCA_A="$hca_a" TUTTI_SOFTROCE_HCA_B="$hca_b"
    TUTTI_SOFTROCE_ADDR_A="$addr_a" TUTTI_SOFTROCE_ADDR_B="$addr_b"
    TUTTI_SOFTROCE_GID_INDEX_A="$gid_a" TUTTI_SOFTROCE_GID_INDEX_B="$gid_b"
    "${job_env[@]}"
  )
  cd "$job_cwd" || die "working directory $job_cwd is not visible in the guest"
  step "running ${job_cmd[*]}"
  local rc=0
  env -i "${env[@]}" "${job_cmd[@]}" </dev/null || rc=$?
  step "${job_cmd[0]} exited with status $rc"
  echo "exit $rc" >"$guest_share/status"
  guest_status_written=1
}

# --- host side --------------------------------------------------------------

# host_init_script "MODULE...": the initramfs's /init, just enough busybox to
# load MODULE... (the 9p stack), mount the host's root, /run and the run's
# share, and hand over to `run-vm.sh --guest` through the one-line boot
# script that the host writes into the share.
host_init_script() {
  local mods=$1
  cat <<INIT
#!/bin/busybox sh
bb=/bin/busybox
fail() { echo "run-vm.sh (initramfs): \$*"; \$bb poweroff -f; \$bb sleep 60; }
\$bb mount -t proc proc /proc
\$bb mount -t sysfs sysfs /sys
\$bb mount -t devtmpfs devtmpfs /dev
for m in $mods; do
  \$bb insmod /mods/\$m.ko || fail "insmod \$m failed"
done
# Probing virtio devices can finish after insmod returns: retry briefly.
i=0
until err=\$(\$bb mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro hostroot /newroot 2>&1); do
  i=\$((i + 1)); [ \$i -lt 50 ] || fail "cannot mount the host's root over 9p: \$err"
  \$bb usleep 100000
done
\$bb mount -t tmpfs -o mode=0755 run /newroot/run || fail "cannot mount /run"
\$bb mkdir -p /newroot/run/tutti/share
\$bb mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /newroot/run/tutti/share || fail "cannot mount the share"
\$bb mount --move /dev /newroot/dev
\$bb mount --move /proc /newroot/proc
\$bb mount --move /sys /newroot/sys
exec \$bb switch_root /newroot /bin/sh /run/tutti/share/boot
INIT
}

# build_initramfs KERNEL_ROOT KVER OUT: packs busybox, the 9p modules and
# /init into OUT, unless OUT was built from the same inputs.
build_initramfs() {
  local root=$1 kver=$2 out=$3
  local paths=() names=() path
  # modprobe lists a shared dependency once per module asked for: keep the
  # first, which is where it has to load.
  mapfile -t paths < <(modprobe -a --show-depends -d "$root" -S "$kver" "${initramfs_modules[@]}" |
    awk '$1 == "insmod" && !seen[$2]++ { print $2 }')
  [ ${#paths[@]} -gt 0 ] || die "no 9p modules found in $root"
  for path in "${paths[@]}"; do
    names+=("$(basename "$path" | sed 's/\.ko.*//')")
  done
  local init key
  init=$(host_init_script "${names[*]}")
  key=$(printf '%s\n' "$kver" "$init" "$(sha256sum /bin/busybox)" | sha256sum | cut -d' ' -f1)
  if [ -f "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then
    return 0
  fi
  echo "run-vm.sh: building the initramfs"
  local dir
  dir=$(mktemp -d "$cache/initramfs.XXXXXX")
  mkdir -p "$dir"/{bin,dev,proc,sys,newroot,mods}
  cp /bin/busybox "$dir/bin/busybox"
  for path in "${paths[@]}"; do
    case "$path" in
      *.ko) cp "$path" "$dir/mods/" ;;
      *.ko.xz) xz -dc "$path" >"$dir/mods/$(basename "$path" .xz)" ;;
      *.ko.zst) zstd -qdc "$path" >"$dir/mods/$(basename "$path" .zst)" ;;
      *) die "unknown module format: $path" ;;
    esac
  done
  printf '%s\n' "$init" >"$dir/init"
  chmod +x "$dir/init"
  (cd "$dir" && find . | cpio -o -H newc --quiet | gzip -1) >"$out.tmp"
  rm -rf "$dir"
  mv "$out.tmp" "$out"
  echo "$key" >"$out.key"
}

# fetch_kernel: Debian's current kernel, downloaded and unpacked into the
# cache once; later runs reuse it without touching the network.
fetch_kernel() {
  local kdir=$cache/kernel
  [ -f "$kdir/complete" ] && return 0
  echo "run-vm.sh: downloading Debian's kernel into $kdir"
  rm -rf "$kdir" "$cache/kernel.tmp"
  mkdir -p "$cache/kernel.tmp/deb"
  local dl=$cache/kernel.tmp/deb
  # The sandbox user _apt may not be able to write to the cache directory.
  local apt_opts=(-q -o APT::Sandbox::User=root)
  if ! (cd "$dl" && apt-get "${apt_opts[@]}" download linux-image-amd64 >/dev/null 2>&1); then
    # A container image may ship without package lists.
    apt-get -qq update || true
    (cd "$dl" && apt-get "${apt_opts[@]}" download linux-image-amd64 >/dev/null) ||
      skip "cannot download linux-image-amd64 with apt-get"
  fi
  # linux-image-amd64 is a metapackage; the image is the versioned package it
  # depends on, "linux-image-6.1.0-NN-amd64 (= VERSION)".
  local dep pkg ver
  dep=$(dpkg-deb -f "$dl"/linux-image-amd64_*.deb Depends | cut -d, -f1)
  pkg=$(awk '{ print $1 }' <<<"$dep")
  ver=$(sed -n 's/.*(= *\([^)]*\)).*/\1/p' <<<"$dep")
  (cd "$dl" && apt-get "${apt_opts[@]}" download "$pkg${ver:+=$ver}" >/dev/null) ||
    skip "cannot download $pkg with apt-get"
  dpkg-deb -x "$dl/${pkg}_"*.deb "$cache/kernel.tmp/root"
  local kver
  kver=$(ls "$cache/kernel.tmp/root/lib/modules")
  [ -f "$cache/kernel.tmp/root/boot/vmlinuz-$kver" ] || die "$pkg has no /boot/vmlinuz-$kver"
  # modprobe -d ROOT reads ROOT/lib/modules/KVER/modules.dep*.
  depmod -b "$cache/kernel.tmp/root" "$kver"
  rm -rf "$dl"
  echo "$kver" >"$cache/kernel.tmp/kver"
  mv "$cache/kernel.tmp" "$kdir"
  touch "$kdir/complete"
}

cache=""
run_dir=""
qemu_pid=""

host_cleanup() {
  if [ -n "$qemu_pid" ]; then
    kill -TERM "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  [ -n "$run_dir" ] && rm -rf "$run_dir"
}

host_main() {
  local timeout=300 verbose=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --cache) cache=${2:?--cache needs a directory}; shift 2 ;;
      --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
      --verbose) verbose=1; shift ;;
      --) shift; break ;;
      -h|--help) usage; exit 0 ;;
      *) echo "run-vm.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
  done
  if [ -z "$cache" ] || [ $# -eq 0 ]; then
    usage >&2
    exit 2
  fi
  [[ "$timeout" =~ ^[1-9][0-9]*$ ]] || { echo "run-vm.sh: --timeout needs a positive number of seconds" >&2; exit 2; }

  [ "$(id -u)" -eq 0 ] || skip "must run as root (it installs packages and boots a VM)"
  if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
    skip "needs a Debian system with apt-get"
  fi

  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  # shellcheck source-path=SCRIPTDIR source=../../scripts/lib.sh
  source "$here/../../scripts/lib.sh"

  mkdir -p "$cache"
  cache=$(cd "$cache" && pwd)
  trap host_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  # Runs sharing a cache (ctest -j) must not fetch or build into it at once.
  local lock_fd
  exec {lock_fd}>"$cache/lock"
  flock "$lock_fd"
  ensure_packages "${softroce_packages[@]}" >&2 || skip "cannot install ${softroce_packages[*]}"
  fetch_kernel
  local kroot=$cache/kernel/root kver
  kver=$(cat "$cache/kernel/kver")
  build_initramfs "$kroot" "$kver" "$cache/initramfs.gz"
  flock -u "$lock_fd"
  exec {lock_fd}>&-

  # A run killed outright (ctest's timeout sends SIGKILL) leaves its
  # directory behind; runs last minutes, so a day-old one is such a leftover.
  find "$cache" -mindepth 1 -maxdepth 1 -name 'run.*' -mmin +1440 -exec rm -rf {} +
  run_dir=$(mktemp -d "$cache/run.XXXXXX")
  mkdir "$run_dir/share"
  local self name
  self="$here/$(basename "${BASH_SOURCE[0]}")"
  {
    printf 'job_cwd=%q\n' "$PWD"
    printf 'job_kernel_root=%q\n' "$kroot"
    printf 'job_verbose=%d\n' "$verbose"
    printf 'job_cmd=('
    printf '%q ' "$@"
    printf ')\njob_env=('
    # The host's tutti and sanitizer settings (ctest's ENVIRONMENT, a
    # preset's ASAN_OPTIONS) reach COMMAND; the softroce ones are the guest's.
    while IFS= read -r name; do
      case "$name" in
        TUTTI_SOFTROCE*) ;;
        TUTTI_*|*SAN_OPTIONS) printf '%q ' "$name=${!name}" ;;
      esac
    done < <(compgen -e)
    printf ')\n'
  } >"$run_dir/share/job"
  printf 'exec /bin/bash %q --guest /run/tutti/share\n' "$self" >"$run_dir/share/boot"

  # No KVM on these machines (their /dev/kvm fails qemu's MSR setup): TCG.
  # -nic none: the guest's only network is the veth pairs it makes itself. stdin from /dev/null keeps qemu away from
  # the terminal's settings. quiet loglevel=0 keeps kernel messages out of
  # COMMAND's output; panic=-1 with -no-reboot turns a panic into an exit.
  # tsc=reliable: the emulated TSC follows the host's, and without it the
  # kernel falls back to the HPET, whose every read is emulated MMIO.
  local append="console=ttyS0 panic=-1 tsc=reliable"
  [ "$verbose" -eq 1 ] || append+=" quiet loglevel=0"
  # shellcheck disable=SC2054 # the commas belong to qemu's option syntax
  local qemu=(
    qemu-system-x86_64 -machine q35 -cpu max -smp 2 -m 2048
    -nographic -vga none -no-reboot -nic none
    -kernel "$kroot/boot/vmlinuz-$kver" -initrd "$cache/initramfs.gz"
    -append "$append"
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
    # qemu's option parser reads ",," as a comma.
    -virtfs "local,path=${run_dir//,/,,}/share,mount_tag=share,security_model=none,multidevs=remap"
  )
  # qboot boots a -kernel faster than SeaBIOS and prints nothing, where
  # SeaBIOS writes a banner and terminal escapes to the serial console.
  if [ -f /usr/share/qemu/qboot.rom ]; then
    qemu+=(-bios qboot.rom)
  fi
  local qemu_rc=0
  timeout --kill-after=10 "$timeout" "${qemu[@]}" </dev/null &
  qemu_pid=$!
  wait "$qemu_pid" || qemu_rc=$?
  qemu_pid=""

  local status=""
  [ -f "$run_dir/share/status" ] && status=$(cat "$run_dir/share/status")
  case "$status" in
    "exit "*) return "${status#exit }" ;;
    "setup "*)
      echo "run-vm.sh: the guest's setup failed (status ${status#setup }) before COMMAND ran; see above" >&2
      return 125 ;;
  esac
  if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
    echo "run-vm.sh: the VM ran past --timeout $timeout s and was killed" >&2
    return 124
  fi
  echo "run-vm.sh: the VM stopped before COMMAND finished (a kernel panic, or qemu failed: status $qemu_rc); --verbose shows the kernel's messages" >&2
  return 125
}

if [ "${1:-}" = "--guest" ]; then
  guest_main "$2"
else
  host_main "$@"
fi
