# SPDX-License-Identifier: GPL-2.0
#
# bpfilter: see README.md. The two commands: `make run`, `make test`.
#
#   make              the umh and bpfilter.ko (against the test kernel, or KDIR)
#   make kernel       build the test kernel (cached outside the repository)
#   make vmtest       boot the test kernel in QEMU and run the VM tests
#   make vmtest-debug the kmod groups on the debug kernel (kconfig/debug.config)
#   make test         unit tests, fuzzing (bounded), style checks, VM tests on
#                     the test kernel and on the debug kernel
#   make compat-check build the module against Linux 5.10 too
#   make bench        iptables benchmarks in the VM, bpfilter against ip_tables
#   make run          boot, load the module, drop real packets with a rule, unload
#   make shell        boot to a guest shell with the module loaded
#   make install      install bpfilter.ko under updates/ and run depmod
#   make clean
#
# KDIR=/path/to/kernel/build points everything at another kernel tree;
# KERNEL_IMAGE= names its bzImage (default: $(KDIR)/arch/x86/boot/bzImage).

SHELL := /bin/bash
GO ?= go
# A debug flavour's module, umh and logs live apart from the plain ones.
BUILD := $(CURDIR)/build$(if $(filter-out 0,$(KCONFIG_DEBUG)),/$(KCONFIG_DEBUG))
GOFLAGS_BUILD := -trimpath -ldflags='-s -w'
# The BPF datapath's object, built from its C by bpf2go (make generate):
# the umh embeds it. Its Go side (datapath_bpfel.go) is committed.
DATAPATH_OBJ := umh/internal/datapath/datapath_bpfel.o
DATAPATH_SRC := $(wildcard umh/internal/datapath/bpf/*.c umh/internal/datapath/bpf/*.h) \
	kmod/progctx.h umh/internal/datapath/gen.go
UMH_SRC := $(shell find umh -name '*.go') $(DATAPATH_OBJ) go.mod go.sum
KMOD_SRC := Kbuild $(wildcard kmod/*.c kmod/*.h)

ifeq ($(KDIR),)
# The test kernel; lazily evaluated, as linux-source may not be installed yet.
KCACHE = $(shell KCONFIG_DEBUG=$(KCONFIG_DEBUG) tools/kernel.sh dir)
KDIR = $(KCACHE)/build
KERNEL_IMAGE = $(KCACHE)/bzImage
MODROOT = $(KCACHE)/modroot
KERNEL_TARGET := kernel
else
KERNEL_IMAGE ?= $(KDIR)/arch/x86/boot/bzImage
MODROOT ?= $(BUILD)/modroot
KERNEL_TARGET := kdir-modules
endif

export CGO_ENABLED := 0
# KCONFIG_DEBUG=debug (kconfig/debug.config: lockdep, kmemleak, KFENCE...) or
# KCONFIG_DEBUG=kasan (kconfig/kasan.config) selects a debug kernel everywhere.
export KCONFIG_DEBUG
# The groups that reach every kmod path, which make test also runs on the
# debug kernel.
DEBUG_GROUPS := TestLifecycle|TestBadInput|TestKmodPaths|TestEnforce|TestTraffic

.PHONY: all module kernel kdir-modules umh vmtest vmtest-debug test unit fuzz bench checkpatch compat-check run shell install clean print-kernel deps-vm generate

all: module

umh: $(BUILD)/bpfilter_umh

$(BUILD)/bpfilter_umh: $(UMH_SRC)
	@mkdir -p $(BUILD)
	$(GO) build $(GOFLAGS_BUILD) -o $@ ./umh
	@echo "  UMH     $@: $$(stat -c %s $@) bytes, static: $$(file -b $@ 2>/dev/null | grep -o 'statically linked' || echo '?')"

$(BUILD)/bpfilter_umh_healthfail: $(UMH_SRC)
	@mkdir -p $(BUILD)
	$(GO) build $(GOFLAGS_BUILD) -tags bpfilter_healthfail -o $@ ./umh

# Kbuild runs in a copy of Kbuild and kmod/ under $(BUILD), one per kernel
# flavour and variant, so that no two builds share objects (a plain and a
# debug build at once would mix them) and the source tree stays clean.
# cp -p keeps the sources' times: Kbuild rebuilds only what changed.
ktree = mkdir -p $(1)/kmod && rm -f $(1)/kmod/*.[ch] && \
	cp -p Kbuild $(1)/ && cp -p kmod/*.c kmod/*.h $(1)/kmod/
KTREE = $(BUILD)/kbuild

module: $(KERNEL_TARGET) $(BUILD)/bpfilter_umh
	@$(call ktree,$(KTREE))
	$(MAKE) -C $(KDIR) M=$(KTREE) UMH_BIN=$(BUILD)/bpfilter_umh modules
	@cp $(KTREE)/bpfilter.ko $(BUILD)/bpfilter.ko
	@echo "  KO      $(BUILD)/bpfilter.ko: $$(stat -c %s $(BUILD)/bpfilter.ko) bytes"

# Test-only variants of the module, each built in its own M= directory so
# that no build undoes another:
#   bpfilter-healthfail.ko  around a umh that fails its health check
#   bpfilter-initfail.ko    init fails after the sockopt hook is published
#                           (Kbuild: BPFILTER_TEST=initfail)
define variant
$(BUILD)/bpfilter-$(1).ko: module $(2) $(KMOD_SRC)
	@$$(call ktree,$(BUILD)/$(1))
	$(MAKE) -s -C $(KDIR) M=$(BUILD)/$(1) UMH_BIN=$(2) $(3) modules
	@cp $(BUILD)/$(1)/bpfilter.ko $$@
endef
$(eval $(call variant,healthfail,$(BUILD)/bpfilter_umh_healthfail,))
$(eval $(call variant,initfail,$(BUILD)/bpfilter_umh,BPFILTER_TEST=initfail))

# Everything a boot needs: the kernel, the modules, QEMU and the guest tools.
VM_DEPS := module $(BUILD)/bpfilter-healthfail.ko $(BUILD)/bpfilter-initfail.ko deps-vm

kernel:
	@tools/deps.sh kernel
	@tools/kernel.sh build

# Another tree: its in-tree modules (ip_tables...) go into the guest too.
kdir-modules:
	@test -f $(KDIR)/Module.symvers || { echo "KDIR=$(KDIR) is not a built kernel tree (no Module.symvers)"; exit 1; }
	$(MAKE) -s -C $(KDIR) INSTALL_MOD_PATH=$(MODROOT) INSTALL_MOD_STRIP=1 modules_install

print-kernel:
	@echo $(KERNEL_IMAGE)

deps-vm:
	@tools/deps.sh vm

# How much slower than the test kernel the kernel runs the tests under TCG
# (measured): every VM timeout is multiplied by it.
SLOWDOWN := $(or $(if $(filter debug,$(KCONFIG_DEBUG)),4),$(if $(filter kasan,$(KCONFIG_DEBUG)),3),1)
VMENV = BPFILTER_KERNEL=$(KERNEL_IMAGE) BPFILTER_MODROOT=$(MODROOT) BPFILTER_BUILD=$(BUILD) BPFILTER_SLOWDOWN=$(SLOWDOWN) \
	BPFILTER_FLAVOUR=$(filter-out 0,$(KCONFIG_DEBUG)) BPFILTER_KMOD_ONLY=$(BPFILTER_KMOD_ONLY)

vmtest: $(VM_DEPS)
	$(VMENV) $(GO) test -count=1 -timeout $$((60 * $(SLOWDOWN)))m -v $(if $(RUN),-run '$(RUN)') ./vmtests/ 2>&1 | tee $(BUILD)/vmtest.log; exit $${PIPESTATUS[0]}

# The kmod groups on the debug kernel, only their tests that reach kmod's
# paths (GuestTests.KmodTests): any report of its detectors fails.
vmtest-debug:
	$(MAKE) vmtest KCONFIG_DEBUG=debug RUN='$(DEBUG_GROUPS)' BPFILTER_KMOD_ONLY=1

# compat.h exists to compare kernel versions: only it may.
CHECKPATCH = $(firstword $(wildcard $(KDIR)/source/scripts/checkpatch.pl $(KDIR)/scripts/checkpatch.pl)) \
	--no-tree --quiet --strict
# iptables benchmarks in the VM, bpfilter against ip_tables (README's table);
# RUN='TestStateful' runs only the guest benchmarks that it matches.
bench: $(VM_DEPS)
	$(VMENV) BPFILTER_BENCH_RUN='$(RUN)' $(GO) test -count=1 -timeout 40m -v -tags bench -run TestBench ./vmtests/ 2>&1 | tee $(BUILD)/bench.log; exit $${PIPESTATUS[0]}

# The module compiled against Debian bullseye's 5.10 as well (cached).
compat-check: $(BUILD)/bpfilter_umh
	@tools/compat-check.sh $(BUILD)/bpfilter_umh

# The blob parser under the fuzzer, for a bounded time. Minimizing a new
# input is bounded too: by default it may take 60 s, outlast -fuzztime and
# end the run with "context deadline exceeded" although nothing failed.
FUZZTIME ?= 20s
FUZZ = $(GO) test -run='^$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=3s
fuzz: $(DATAPATH_OBJ)
	$(FUZZ) -fuzz=FuzzDecode ./umh/internal/ipt/
	$(FUZZ) -fuzz=FuzzTranslate ./umh/internal/ipt/
	$(FUZZ) -fuzz=FuzzSockopt ./umh/internal/table/

checkpatch: $(KERNEL_TARGET)
	@perl $(CHECKPATCH) -f $(filter-out kmod/compat.h,$(wildcard kmod/*.c kmod/*.h))
	@perl $(CHECKPATCH) --ignore LINUX_VERSION_CODE,CONSTANT_COMPARISON -f kmod/compat.h
	@echo "  CHECK   kmod/: checkpatch clean"

# bpf2go (Debian's clang) turns umh/internal/datapath/bpf/ into the object
# and its Go types; make generate redoes it whatever the times say.
$(DATAPATH_OBJ): $(DATAPATH_SRC)
	@tools/deps.sh bpf
	cd umh/internal/datapath && $(GO) generate ./

generate:
	@rm -f $(DATAPATH_OBJ)
	@$(MAKE) --no-print-directory $(DATAPATH_OBJ)

unit: $(DATAPATH_OBJ)
	@test -z "$$(gofmt -l umh vmtests tools)" || { gofmt -l umh vmtests tools; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags vmguest ./...
	$(GO) test -count=1 ./umh/... ./vmtests/vm/

# On a cold machine the debug kernel builds at the lowest priority while the
# plain VM tests run, which leave the CPUs idle much of the time (measured
# 2026-12-02: VM tests beside such a build ran about a tenth slower, and
# the build took 18 min instead of 9.5). Where it is cached, that build
# returns at once.
test: unit fuzz checkpatch compat-check
	@tools/deps.sh kernel
	@mkdir -p $(BUILD)
	@KCONFIG_DEBUG=debug nice -n 19 tools/kernel.sh build >$(BUILD)/kernel-debug-prebuild.log 2>&1 & pid=$$!; \
	$(MAKE) vmtest; rc=$$?; \
	if ! wait $$pid; then echo "the debug kernel's build failed:"; cat $(BUILD)/kernel-debug-prebuild.log; exit 1; fi; \
	[ $$rc = 0 ] || exit $$rc
	$(MAKE) vmtest-debug

run: $(VM_DEPS)
	$(VMENV) $(GO) run ./vmtests/cmd/bpfilter-vm run

shell: $(VM_DEPS)
	$(VMENV) $(GO) run ./vmtests/cmd/bpfilter-vm shell

install: module
	$(MAKE) -C $(KDIR) M=$(KTREE) INSTALL_MOD_DIR=updates modules_install
	depmod $(if $(INSTALL_MOD_PATH),-b $(INSTALL_MOD_PATH)) $$(cat $(KDIR)/include/config/kernel.release)

# Every flavour's outputs; and what builds in the tree itself left before
# they moved to build/ (Kbuild's own clean would delete go.mod with *.mod).
KBUILD_OUTPUTS := bpfilter.ko bpfilter.mod bpfilter.mod.c bpfilter.mod.o bpfilter.o \
	Module.symvers modules.order .*.cmd kmod/*.o kmod/.*.cmd .tmp_versions
clean:
	rm -rf $(CURDIR)/build $(KBUILD_OUTPUTS) $(DATAPATH_OBJ)
