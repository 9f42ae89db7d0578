# Shared by scripts/test and scripts/demo: install what the build needs.
# shellcheck shell=bash

# ensure_packages PKG...: installs the Debian packages that are missing.
# As root it runs apt-get update once and installs them; otherwise it prints
# the exact command to run and fails.
ensure_packages() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    return 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# What every build of the project needs: toolchain, the interface
# dependencies (hwloc, rdma-core headers) and the test and benchmark libraries.
build_packages=(cmake ninja-build g++ pkg-config libhwloc-dev libibverbs-dev catch2 libbenchmark-dev clang-format clang libclang-rt-14-dev)

# Open MPI for tutti-bench --compare mpi (tutti-bench-mpi is built when its
# development files are there), matplotlib for the demo's plot.
demo_packages=(openmpi-bin libopenmpi-dev python3-matplotlib)

# What tests/softroce/run-vm.sh needs to boot Debian's kernel under qemu with
# soft-RoCE (rdma_rxe): the emulator, a static busybox for the initramfs, the
# verbs user space (rxe provider, ibv_devices, perftest), ip and modprobe, and
# cpio to pack the initramfs.
softroce_packages=(qemu-system-x86 busybox-static rdma-core ibverbs-providers ibverbs-utils perftest iproute2 kmod cpio)
