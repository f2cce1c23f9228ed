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
# KCONFIG_DEBUG picks a debug flavour, a kernel of its own:
#   KCONFIG_DEBUG=debug   adds kconfig/debug.config (lockdep, kmemleak, KFENCE,
#                         SLUB and object debugging: cheap enough for make test)
#   KCONFIG_DEBUG=kasan   adds kconfig/kasan.config (KASAN: slow under TCG)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cache=${BPFILTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bpfilter}
pkg=linux-source-6.1
tarball=/usr/src/$pkg.tar.xz
frags=("$top/kconfig/base.config" "$top/kconfig/bpfilter.config" "$top/kconfig/netfilter.config")
flavour=${KCONFIG_DEBUG:-}
case "$flavour" in
"" | 0) flavour=plain ;;
debug | kasan) frags+=("$top/kconfig/$flavour.config") ;;
*) echo "kernel.sh: KCONFIG_DEBUG=$flavour: want debug or kasan (or nothing)" >&2; exit 2 ;;
esac

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

kdir() { echo "$cache/kernel/6.1-$flavour-$(key)"; }

# The objects Kbuild has made so far: one CC or AS line each in the log.
objects_built() { grep -c -E '^  (CC|AS) ' "$1" 2>/dev/null || true; }

# One progress line while make runs (pid $1, log $2): rewritten in place
# on a terminal, a line a minute otherwise (CI logs).
progress() {
	local pid=$1 log=$2 total=$3 start=$SECONDS n last=-60 el
	while kill -0 "$pid" 2>/dev/null; do
		n=$(objects_built "$log")
		el=$((SECONDS - start))
		if [[ -t 2 ]]; then
			printf '\r    %d of ~%d objects, %d:%02d ' "$n" "$total" $((el / 60)) $((el % 60)) >&2
		elif ((el - last >= 60)); then
			printf '    %d of ~%d objects, %d:%02d\n' "$n" "$total" $((el / 60)) $((el % 60)) >&2
			last=$el
		fi
		sleep 1
	done
	[[ -t 2 ]] && printf '\n' >&2
	return 0
}

build() {
	local dir src out jobs
	dir=$(kdir)
	if [[ -f "$dir/.done" ]]; then
		return 0
	fi
	# One build per cache directory: a second make waits for the first
	# (two builds in one tree break each other), then finds it done.
	mkdir -p "$cache/kernel"
	exec 9>"$dir.lock"
	if ! flock -n 9; then
		step "waiting for the build of $dir by another make"
		flock 9
	fi
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
	# The total is an estimate: the count of the last build of this flavour
	# here, or the one measured for tools/kernel.objects (not part of the key).
	local total pid rc=0
	total=$(awk -v f="$flavour" '$1 == f { print $2 }' "$top/tools/kernel.objects")
	[[ -f "$cache/kernel/$flavour.objects" ]] && total=$(cat "$cache/kernel/$flavour.objects")
	make -C "$src" O="$out" -j"$jobs" bzImage modules >"$dir/build.log" 2>&1 &
	pid=$!
	progress "$pid" "$dir/build.log" "$total"
	wait "$pid" || rc=$?
	if [[ $rc != 0 ]]; then
		tail -30 "$dir/build.log" >&2
		die "kernel build failed, see $dir/build.log"
	fi
	objects_built "$dir/build.log" >"$cache/kernel/$flavour.objects"
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
