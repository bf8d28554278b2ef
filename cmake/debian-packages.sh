#!/bin/sh
# Installs the Debian 12 packages convgemm builds with, when they are missing.
#   cmake/debian-packages.sh          the library with every optional component (the oneDNN GEMM
#                                     backend, the MPI component), its tests and examples
#   cmake/debian-packages.sh --bench  also the plot tool of the benchmark suite and perf (profiles)
#   cmake/debian-packages.sh --fuzz   also clang and its runtimes, libFuzzer's among them
#                                     (tests/fuzz/run)
#   cmake/debian-packages.sh --ci     also what CI needs besides: QEMU's user-mode emulator (the
#                                     suites on emulated CPUs), debootstrap (the stage that
#                                     starts from a bare Debian root) and the --fuzz packages
# Uses sudo when not run as root; does nothing (and needs no network) when all are installed.
set -eu

packages="build-essential cmake libopenblas-dev libtbb-dev libgtest-dev libgmock-dev libbenchmark-dev"
# BLIS's single-threaded build: the micro-kernels of the packed GEMM driver.
packages="$packages libblis-serial-dev"
# Debian's oneDNN is built with the OpenCL GPU runtime: its CMake config requires OpenCL's
# development files, which libdnnl-dev only recommends (and recommends are not installed here).
packages="$packages libdnnl-dev ocl-icd-opencl-dev libopenmpi-dev openmpi-bin"
case "${1:-}" in
  --bench) packages="$packages gnuplot-nox linux-perf" ;;
  --fuzz) packages="$packages clang libclang-rt-14-dev" ;;
  --ci) packages="$packages qemu-user debootstrap clang libclang-rt-14-dev" ;;
esac

missing=""
for package in $packages; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $package"
  fi
done
[ -z "$missing" ] && exit 0

echo "Installing Debian packages:$missing"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
# shellcheck disable=SC2086  # the package list is meant to split
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
