// Package vm boots the test kernel in QEMU with bpfilter.ko, for the VM
// tests and for `make run` / `make shell`. Every boot goes through Boot:
// one cached initramfs, one shared 9p directory, one serial log file.
package vm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Config names what a boot needs on the host. The Makefile sets it in the
// environment; ConfigFromEnv reads it.
type Config struct {
	Kernel  string // bzImage
	ModRoot string // holds lib/modules/<release>/ of the kernel's in-tree modules
	Build   string // holds bpfilter.ko, its test variants (Modules), bpfilter_umh
	Cache   string // where the initramfs is cached
	// Slowdown multiplies every VM timeout: a debug kernel runs the same
	// tests several times slower (BPFILTER_SLOWDOWN, set by the Makefile).
	Slowdown int
	// Flavour is the debug flavour of the kernel (kconfig/<flavour>.config:
	// debug, kasan), or "" for the test kernel (BPFILTER_FLAVOUR).
	Flavour string
	// KmodOnly runs only each group's KmodTests (BPFILTER_KMOD_ONLY=1,
	// set by make vmtest-debug).
	KmodOnly bool
}

// ConfigFromEnv reads BPFILTER_KERNEL, BPFILTER_MODROOT and BPFILTER_BUILD,
// and checks that what they name exists. Missing pieces are an error, never
// a reason to skip: run the tests through `make vmtest`.
func ConfigFromEnv() (Config, error) {
	cfg := Config{
		Kernel:  os.Getenv("BPFILTER_KERNEL"),
		ModRoot: os.Getenv("BPFILTER_MODROOT"),
		Build:   os.Getenv("BPFILTER_BUILD"),
		Cache:   os.Getenv("BPFILTER_CACHE"),
	}
	slow := os.Getenv("BPFILTER_SLOWDOWN")
	if slow == "" {
		slow = "1"
	}
	n, err := strconv.Atoi(slow)
	if err != nil || n < 1 {
		return cfg, fmt.Errorf("BPFILTER_SLOWDOWN=%q: want a whole number of at least 1", slow)
	}
	cfg.Slowdown = n
	cfg.Flavour = os.Getenv("BPFILTER_FLAVOUR")
	cfg.KmodOnly = os.Getenv("BPFILTER_KMOD_ONLY") == "1"
	if cfg.Cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return cfg, fmt.Errorf("no cache directory: %w", err)
		}
		cfg.Cache = filepath.Join(dir, "bpfilter")
	}
	var errs []error
	for _, c := range []struct{ env, path string }{
		{"BPFILTER_KERNEL", cfg.Kernel},
		{"BPFILTER_MODROOT", cfg.ModRoot},
		{"BPFILTER_BUILD", cfg.Build},
	} {
		if c.path == "" {
			errs = append(errs, fmt.Errorf("%s is not set", c.env))
		} else if _, err := os.Stat(c.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.env, err))
		}
	}
	if len(errs) == 0 {
		if _, err := cfg.Release(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, fmt.Errorf("VM tests need the test kernel and the module (run them with `make vmtest`): %w", err)
	}
	return cfg, nil
}

// Release returns the kernel release whose modules ModRoot holds.
func (c Config) Release() (string, error) {
	ents, err := os.ReadDir(filepath.Join(c.ModRoot, "lib", "modules"))
	if err != nil {
		return "", fmt.Errorf("kernel modules: %w", err)
	}
	var rels []string
	for _, e := range ents {
		if e.IsDir() {
			rels = append(rels, e.Name())
		}
	}
	if len(rels) != 1 {
		return "", fmt.Errorf("%s/lib/modules holds %d kernel releases (%s), want exactly one",
			c.ModRoot, len(rels), strings.Join(rels, ", "))
	}
	return rels[0], nil
}

// Modules are the files of Build that go to the guest's modules directory.
var Modules = []string{"bpfilter.ko", "bpfilter-healthfail.ko", "bpfilter-initfail.ko", "bpfilter_umh"}
