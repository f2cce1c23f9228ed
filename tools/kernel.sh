#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build (or find in the cache) the test kernel: Debian's linux-source-6.1,
# tinyconfig plus the fragments in kconfig/, bzImage plus in-tree modules
# plus what an out-of-tree M= build needs.
#
#   tools/kernel.sh build     build unless cached; print nothing else on success
#   tools/kernel.sh dir       print the cache directory of the current key
#
# The cache lives outside the repository, in $BPFILTER_CACHE (default
# ~/.cache/bpfilter), keyed by the source package version, the fragments and
# this script, so that any change to one of them builds a new kernel.
# KCONFIG_DEBUG=1 adds kconfig/debug.config.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cache=${BPFILTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bpfilter}
pkg=linux-source-6.1
tarball=/usr/src/$pkg.tar.xz
frags=("$top/kconfig/base.config" "$top/kconfig/bpfilter.config" "$top/kconfig/netfilter.config")
if [[ "${KCONFIG_DEBUG:-0}" == 1 ]]; then
	frags+=("$top/kconfig/debug.config")
fi

die() { echo "kernel.sh: $*" >&2; exit 1; }
step() { printf '==> %s\n' "$*" >&2; }

srcver() {
	dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true
}

key() {
	local v
	v=$(srcver)
	[[ -n "$v" ]] || die "$pkg is not installed (tools/deps.sh kernel installs it)"
	{ echo "$pkg $v"; cat "${frags[@]}" "$0"; } | sha256sum | cut -c1-16
}

kdir() { echo "$cache/kernel/6.1-$(key)"; }

build() {
	local dir src out jobs
	dir=$(kdir)
	if [[ -f "$dir/.done" ]]; then
		return 0
	fi
	[[ -f "$tarball" ]] || die "$tarball missing (apt-get install $pkg)"
	jobs=$(nproc)
	mkdir -p "$dir"
	src=$dir/src
	out=$dir/build
	if [[ ! -f "$src/Makefile" ]]; then
		step "unpacking $tarball ($(srcver))"
		rm -rf "$src" "$dir/tmp"
		mkdir -p "$dir/tmp"
		tar -C "$dir/tmp" -xf "$tarball"
		mv "$dir/tmp/$pkg" "$src"
		rmdir "$dir/tmp"
	fi
	mkdir -p "$out"
	step "configuring: tinyconfig + ${frags[*]##*/}"
	make -s -C "$src" O="$out" tinyconfig >/dev/null
	"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "${frags[@]}" >"$dir/merge.log" 2>&1 ||
		die "merge_config failed, see $dir/merge.log"
	make -s -C "$src" O="$out" olddefconfig >/dev/null
	check_config "$out/.config"
	step "building bzImage and modules with -j$jobs (log: $dir/build.log)"
	if ! make -C "$src" O="$out" -j"$jobs" bzImage modules >"$dir/build.log" 2>&1; then
		tail -30 "$dir/build.log" >&2
		die "kernel build failed, see $dir/build.log"
	fi
	step "installing in-tree modules into $dir/modroot"
	rm -rf "$dir/modroot"
	make -s -C "$src" O="$out" INSTALL_MOD_PATH="$dir/modroot" INSTALL_MOD_STRIP=1 \
		modules_install >>"$dir/build.log" 2>&1 || die "modules_install failed, see $dir/build.log"
	cp "$out/arch/x86/boot/bzImage" "$dir/bzImage"
	make -s -C "$src" O="$out" kernelrelease >"$dir/kernelrelease"
	touch "$dir/.done"
	step "test kernel ready: $dir/bzImage ($(cat "$dir/kernelrelease"))"
}

# Every option a fragment asks for must be in the final .config, as asked:
# a silently dropped option (missing dependency) is an error.
check_config() {
	local cfg=$1 f line opt bad=0
	for f in "${frags[@]}"; do
		while IFS= read -r line; do
			case "$line" in
			CONFIG_*=*)
				grep -qxF -- "$line" "$cfg" || {
					echo "kernel.sh: ${f##*/} asks for $line, .config has: $(grep -E "^(# )?${line%%=*}[= ]" "$cfg" || echo 'nothing')" >&2
					bad=1
				}
				;;
			"# CONFIG_"*" is not set")
				opt=${line#\# }
				opt=${opt%% *}
				if grep -q "^$opt=" "$cfg"; then
					echo "kernel.sh: ${f##*/} asks for $opt unset, .config sets it" >&2
					bad=1
				fi
				;;
			esac
		done <"$f"
	done
	[[ $bad == 0 ]] || die "requested options missing from the final .config"
}

case "${1:-build}" in
build) build ;;
dir) kdir ;;
*) die "usage: $0 build|dir" ;;
esac
