#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Compile bpfilter.ko against a second kernel series: Debian bullseye's
# linux-source-5.10 (fetched with apt into the cache, without touching the
# system's apt sources), configured with our fragments. It proves that the
# module builds on another kernel of the 5.9..6.7 API; it does not boot it.
#
#   tools/compat-check.sh UMH_BIN
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
umh=${1:?usage: $0 UMH_BIN}
cache=${BPFILTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bpfilter}/compat/5.10
step() { printf '==> %s\n' "$*" >&2; }

mkdir -p "$cache/apt/lists/partial" "$cache/apt/archives/partial"
apt=(-o Dir::Etc::SourceList="$cache/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
	-o Dir::State::Lists="$cache/apt/lists" -o Dir::Cache::Archives="$cache/apt/archives"
	-o Debug::NoLocking=1)
if [[ ! -f "$cache/build/.prepared" ]]; then
	echo "deb http://deb.debian.org/debian-security bullseye-security main" >"$cache/apt/sources.list"
	step "fetching linux-source-5.10 (Debian bullseye)"
	apt-get "${apt[@]}" update -qq
	(cd "$cache/apt" && apt-get "${apt[@]}" download linux-source-5.10 2>/dev/null)
	rm -rf "$cache/x" "$cache/src" "$cache/build"
	dpkg-deb -x "$cache"/apt/linux-source-5.10_*.deb "$cache/x"
	step "unpacking and configuring"
	mkdir -p "$cache/src" "$cache/build"
	tar -C "$cache/src" --strip-components=1 -xf "$cache/x/usr/src/linux-source-5.10.tar.xz"
	rm -rf "$cache/x"
	make -s -C "$cache/src" O="$cache/build" tinyconfig >/dev/null
	"$cache/src/scripts/kconfig/merge_config.sh" -m -O "$cache/build" "$cache/build/.config" \
		"$top"/kconfig/{base,bpfilter,netfilter}.config >/dev/null
	make -s -C "$cache/src" O="$cache/build" olddefconfig
	step "modules_prepare"
	make -s -C "$cache/src" O="$cache/build" -j"$(nproc)" modules_prepare
	touch "$cache/build/.prepared"
fi

# Build from a copy, so that the main tree's objects stay the test kernel's.
m=$(mktemp -d)
trap 'rm -rf "$m"' EXIT
mkdir -p "$m/kmod"
cp "$top/Kbuild" "$m/"
cp "$top"/kmod/*.c "$top"/kmod/*.h "$m/kmod/"
# No Module.symvers in a prepared-only tree: unresolved symbols cannot be
# checked, only compilation and linking of the module itself.
make -s -C "$cache/build" M="$m" UMH_BIN="$(realpath "$umh")" KBUILD_MODPOST_WARN=1 modules 2>&1 |
	grep -v -e 'Module.symvers' -e 'Modules may not have' -e 'Unresolved symbol check' || true
test -f "$m/bpfilter.ko"
echo "  COMPAT  bpfilter.ko builds against $(cat "$cache/build/include/config/kernel.release")"
