// Command bpfilter-vm boots the test kernel with bpfilter.ko, for people:
//
//	bpfilter-vm run     load the module, show its life cycle, unload, power off
//	bpfilter-vm shell   load the module and leave a shell on the console
//
// `make run` and `make shell` call it with the environment that the VM
// tests get (BPFILTER_KERNEL, BPFILTER_MODROOT, BPFILTER_BUILD).
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/vm"
)

// runScript shows the life cycle; each step echoes what it does.
const runScript = `
echo; echo "==> insmod bpfilter.ko"
insmod $M/bpfilter.ko
dmesg | grep "bpfilter:"
echo; echo "==> the umh is a process of its own"
echo "pid $(pidof bpfilter_umh): $(cat /proc/$(pidof bpfilter_umh)/comm)"
echo; echo "==> the seed 002 transcript, answered by bpfilter (ip_tables is not loaded)"
echo "# iptables-legacy -L -n"
iptables-legacy -L -n
echo; echo "==> real packets: a network namespace behind a veth pair"
$M/bpfilter-probe setup
$M/bpfilter-probe udp 23 5
$M/bpfilter-probe udp 24 5
echo "# echo 1 > /sys/module/bpfilter/parameters/trace   (the umh logs every call)"
echo 1 > /sys/module/bpfilter/parameters/trace
echo "# iptables-legacy -A INPUT -p udp --dport 23 -j DROP"
iptables-legacy -A INPUT -p udp --dport 23 -j DROP
echo 0 > /sys/module/bpfilter/parameters/trace
echo "# dmesg | grep bpfilter (what the umh saw of that command; the module's hooks)"
dmesg | grep "bpfilter_umh: [gs]etsockopt\|bpfilter: netns"
echo "# iptables-legacy-save   (no -t: the filter table is listed, as with ip_tables)"
iptables-legacy-save | grep -v "^#"
echo "# iptables-legacy -L -n"
iptables-legacy -L -n
$M/bpfilter-probe udp 23 5
$M/bpfilter-probe udp 24 5
echo "# iptables-legacy -L INPUT -v -x -n"
iptables-legacy -L INPUT -v -x -n
echo "# iptables-legacy -F"
iptables-legacy -F
$M/bpfilter-probe udp 23 5
echo "# iptables-legacy -L -n"
iptables-legacy -L -n
echo; echo "==> rmmod bpfilter"
rmmod bpfilter
dmesg | grep "bpfilter: stopped"
echo; echo "==> no umh left:"
pidof bpfilter_umh || echo "no bpfilter_umh process"
echo; echo "==> done, powering off"
`

const shellScript = `
insmod $M/bpfilter.ko
dmesg | grep bpfilter
echo
echo "bpfilter.ko is loaded; the modules are in $M. Ctrl-A X leaves QEMU."
# vmmount runs this script with stdin on /dev/null: talk to the console.
gosh </dev/ttyS0 >/dev/ttyS0 2>&1
`

func main() {
	if len(os.Args) != 2 || (os.Args[1] != "run" && os.Args[1] != "shell") {
		fmt.Fprintln(os.Stderr, "usage: bpfilter-vm run|shell")
		os.Exit(2)
	}
	if err := boot(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "bpfilter-vm:", err)
		os.Exit(1)
	}
}

func boot(mode string) error {
	cfg, err := vm.ConfigFromEnv()
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...) }
	initramfs, err := vm.Initramfs(cfg, logf)
	if err != nil {
		return err
	}
	shared, err := os.MkdirTemp("", "bpfilter-vm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(shared)
	if err := vm.Populate(cfg, shared); err != nil {
		return err
	}
	// The packet sender of the run script, beside the modules.
	build := exec.Command("go", "build", "-o", filepath.Join(shared, "modules", "bpfilter-probe"),
		"github.com/bpfilter/bpfilter/vmtests/cmd/bpfilter-probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build bpfilter-probe: %v: %s", err, out)
	}
	script := runScript
	if mode == "shell" {
		script = shellScript
	}
	script = vm.GuestSetup + "M=" + vm.SharedMount + "/modules\n" + script
	if err := os.WriteFile(filepath.Join(shared, vm.Script), []byte(script), 0o644); err != nil {
		return err
	}
	b := vm.Boot{
		Shared:    shared,
		SerialLog: filepath.Join(cfg.Build, "vm-"+mode+".log"),
		Timeout:   5 * time.Minute,
	}
	logf("booting %s (%s)", cfg.Kernel, vm.QEMUCommand(cfg, logf))
	if mode == "shell" {
		return vm.Interactive(cfg, initramfs, b)
	}
	b.Line = func(line string) { fmt.Println(line) }
	return vm.Run(context.Background(), cfg, initramfs, b)
}
