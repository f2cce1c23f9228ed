package vm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
)

// The guest's view: what the initramfs holds. Everything that changes per
// run (the module, the test binaries, the script) comes over 9p instead, so
// that a module edit never rebuilds the initramfs.

// SharedTag is the 9p tag of the shared directory; vmmount mounts it at
// SharedMount in the guest.
const (
	SharedTag   = "gotestdata"
	SharedMount = "/mount/9p/" + SharedTag
	// Script is run by the guest's uinit from the shared directory.
	Script = "uinit.sh"
)

// GuestSetup starts every guest script: what the initramfs lacks.
// iptables takes its lock in /run; unprivileged test processes must be
// able to walk the root directory, which the initramfs makes 0700. On a
// kernel with kmemleak (kconfig/debug.config), what boot left unreferenced
// is scanned and cleared first, so that the scan after the tests reports
// only what was leaked meanwhile.
const GuestSetup = `mkdir -p /run
chmod 755 /
if [ -d /sys/kernel/debug ]; then
	mount -t debugfs debugfs /sys/kernel/debug
	if [ -e /sys/kernel/debug/kmemleak ]; then
		echo scan > /sys/kernel/debug/kmemleak
		echo clear > /sys/kernel/debug/kmemleak
	fi
fi
`

// initramfsRecipe is bumped whenever the recipe below changes in a way the
// key does not see.
const initramfsRecipe = 1

var busybox = []string{
	"github.com/u-root/u-root/cmds/core/init",
	"github.com/u-root/u-root/cmds/core/gosh",
	"github.com/u-root/u-root/cmds/core/cat",
	"github.com/u-root/u-root/cmds/core/chmod",
	"github.com/u-root/u-root/cmds/core/cp",
	"github.com/u-root/u-root/cmds/core/dmesg",
	"github.com/u-root/u-root/cmds/core/echo",
	"github.com/u-root/u-root/cmds/core/grep",
	"github.com/u-root/u-root/cmds/core/ip",
	"github.com/u-root/u-root/cmds/core/kill",
	"github.com/u-root/u-root/cmds/core/ls",
	"github.com/u-root/u-root/cmds/core/mkdir",
	"github.com/u-root/u-root/cmds/core/mount",
	"github.com/u-root/u-root/cmds/core/pidof",
	"github.com/u-root/u-root/cmds/core/ps",
	"github.com/u-root/u-root/cmds/core/rm",
	"github.com/u-root/u-root/cmds/core/shutdown",
	"github.com/u-root/u-root/cmds/core/sleep",
	"github.com/u-root/u-root/cmds/core/uname",
	"github.com/hugelgupf/vmtest/vminit/shutdownafter",
	"github.com/hugelgupf/vmtest/vminit/vmmount",
	"github.com/hugelgupf/vmtest/vminit/gouinit",
}

// Real Debian binaries: iptables-legacy (with the plugins it dlopens) and
// kmod (whose modprobe takes the arguments the kernel's request_module
// passes). Their shared libraries come along by themselves.
var hostFiles = []string{
	"/usr/sbin/xtables-legacy-multi",
	"/usr/lib/x86_64-linux-gnu/xtables",
	"/usr/bin/kmod",
	"/etc/protocols",
	"/etc/services",
}

var symlinks = map[string]string{
	"usr/sbin/iptables-legacy":         "/usr/sbin/xtables-legacy-multi",
	"usr/sbin/iptables-legacy-save":    "/usr/sbin/xtables-legacy-multi",
	"usr/sbin/iptables-legacy-restore": "/usr/sbin/xtables-legacy-multi",
	"sbin/modprobe":                    "/usr/bin/kmod",
	"sbin/insmod":                      "/usr/bin/kmod",
	"sbin/rmmod":                       "/usr/bin/kmod",
	"sbin/lsmod":                       "/usr/bin/kmod",
	"sbin/depmod":                      "/usr/bin/kmod",
	"sbin/modinfo":                     "/usr/bin/kmod",
}

// Initramfs returns the path of the base initramfs for cfg, building it
// into the cache if it is not there yet.
func Initramfs(cfg Config, logf func(string, ...any)) (string, error) {
	key, err := initramfsKey(cfg)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cfg.Cache, "initramfs")
	out := filepath.Join(dir, key+".cpio")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)

	logf("building the initramfs (once per kernel and recipe) into %s", out)
	start := time.Now()
	files := append([]string{}, hostFiles...)
	files = append(files, filepath.Join(cfg.ModRoot, "lib", "modules")+":lib/modules")
	mods := []uimage.Modifier{
		uimage.WithEnv(golang.DisableCGO(), golang.WithGOARCH("amd64")),
		uimage.WithBusyboxCommands(busybox...),
		uimage.WithBinaryCommands("cmd/test2json"),
		uimage.WithInit("init"),
		uimage.WithUinit("shutdownafter", "--", "vmmount", "--", "gosh", SharedMount+"/"+Script),
		uimage.WithFiles(files...),
		uimage.WithTempDir(tmp),
		uimage.WithCPIOOutput(filepath.Join(tmp, "initramfs.cpio")),
	}
	for _, file := range sortedKeys(symlinks) {
		mods = append(mods, uimage.WithSymlink(file, symlinks[file]))
	}
	l := llog.New(slog.LevelWarn, func(format string, args ...any) { logf(format, args...) })
	if err := uimage.Create(l, mods...); err != nil {
		return "", fmt.Errorf("build initramfs: %w", err)
	}
	if err := os.Rename(filepath.Join(tmp, "initramfs.cpio"), out); err != nil {
		return "", err
	}
	logf("initramfs built in %v", time.Since(start).Round(time.Second))
	return out, nil
}

// initramfsKey hashes everything the initramfs is made of: the recipe,
// the Go module versions, the host files and the kernel modules.
func initramfsKey(cfg Config) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "recipe %d\n%v\n%v\n", initramfsRecipe, busybox, symlinks)
	gosum, err := moduleFile("go.sum")
	if err != nil {
		return "", err
	}
	if err := hashFile(h, gosum); err != nil {
		return "", err
	}
	roots := append([]string{}, hostFiles...)
	roots = append(roots, filepath.Join(cfg.ModRoot, "lib", "modules"))
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s %d %d\n", path, info.Size(), info.ModTime().UnixNano())
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("initramfs input: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func hashFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// moduleFile finds name in the module root, the first parent of the
// working directory with a go.mod.
func moduleFile(name string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, name), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
