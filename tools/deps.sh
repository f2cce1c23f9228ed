#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Install the Debian packages a make target needs, if any is missing.
#   tools/deps.sh kernel   building the test kernel and the module
#   tools/deps.sh vm       booting it: QEMU, iptables-legacy, kmod
#   tools/deps.sh bpf      compiling the BPF datapath (make generate, and
#                          the unit test that regenerates it): clang, llvm,
#                          libbpf's headers, the UAPI headers
set -euo pipefail

case "${1:-}" in
kernel) pkgs=(linux-source-6.1 make gcc bc bison flex libelf-dev libssl-dev cpio xz-utils kmod) ;;
vm) pkgs=(qemu-system-x86 iptables kmod netbase) ;;
bpf) pkgs=(clang llvm libbpf-dev linux-libc-dev) ;;
*) echo "usage: $0 kernel|vm|bpf" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} == 0 ]] && exit 0

if [[ $(id -u) != 0 ]]; then
	echo "deps.sh: missing packages: ${missing[*]}; install them as root (apt-get install ${missing[*]})" >&2
	exit 1
fi
echo "==> installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq "${missing[@]}" >/dev/null
