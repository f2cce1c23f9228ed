package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hugelgupf/vmtest/qemu"
)

// Boot describes one VM run.
type Boot struct {
	// Shared is the host directory the guest sees at SharedMount. It must
	// hold Script, which the guest runs; the guest powers off after it.
	Shared string
	// SerialLog is the file that receives the whole serial console.
	SerialLog string
	// Timeout bounds the whole VM run.
	Timeout time.Duration
	// Line, if set, receives each console line as it comes.
	Line func(string)
}

// kernelArgs: the console on the first serial port and a panic that ends
// QEMU instead of hanging. /dev/kmsg keeps the kernel's default
// (printk.devkmsg=ratelimit), as on a real system: what the umh logs
// there is rate-limited as it would be for an admin.
var kernelArgs = []string{"console=ttyS0", "panic=-1", "quiet"}

// The QEMU binary and machine of every boot, and the accelerator options:
// the KVM probe (kvm.go) runs qemuMachine with kvmAccel, exactly as a boot
// under KVM would.
const (
	qemuMachine = "qemu-system-x86_64 -m 1024 -smp 2 -nic none"
	kvmAccel    = "-enable-kvm -cpu host"
	tcgAccel    = "-accel tcg"
)

// QEMUCommand is the QEMU binary and machine: VMTEST_QEMU if set, else
// qemu-system-x86_64 with KVM when a guest really runs under it (KVM) and
// TCG otherwise. logf (stderr if nil) gets the one line saying why not KVM.
// The first call may probe, under the VM lock: call it before locking.
func QEMUCommand(cfg Config, logf func(format string, args ...any)) string {
	if c := os.Getenv("VMTEST_QEMU"); c != "" {
		return c
	}
	if KVM(cfg, logf) {
		return qemuMachine + " " + kvmAccel
	}
	return qemuMachine + " " + tcgAccel
}

// Options returns the QEMU options of a boot of cfg with initramfs.
func Options(cfg Config, initramfs string, b Boot) []qemu.Fn {
	return []qemu.Fn{
		qemu.WithQEMUCommand(QEMUCommand(cfg, nil)),
		qemu.WithKernel(cfg.Kernel),
		qemu.WithInitramfs(initramfs),
		qemu.WithAppendKernel(kernelArgs...),
		qemu.HaltOnKernelPanic(),
		qemu.VirtioRandom(),
		qemu.P9Directory(b.Shared, SharedTag),
	}
}

// lockVMs takes the machine-wide VM lock: two TCG guests booting at once
// on a small machine starve each other's timer calibration, so VMs run
// one at a time, whoever starts them.
func lockVMs(cfg Config) (unlock func(), err error) {
	if err := os.MkdirAll(cfg.Cache, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(cfg.Cache, "vm.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// Run boots the VM and waits until it powers off. The serial console goes
// to b.SerialLog. An error means QEMU did not end cleanly (timeout, crash).
func Run(ctx context.Context, cfg Config, initramfs string, b Boot) error {
	// QEMUCommand decides KVM before the lock is taken: its probe takes it.
	if _, err := exec.LookPath(strings.Fields(QEMUCommand(cfg, nil))[0]); err != nil {
		return fmt.Errorf("QEMU is missing (tools/deps.sh vm installs it): %w", err)
	}
	unlock, err := lockVMs(cfg)
	if err != nil {
		return err
	}
	defer unlock()
	logf, err := os.Create(b.SerialLog)
	if err != nil {
		return err
	}
	fns := append(Options(cfg, initramfs, b),
		qemu.WithSerialOutput(logf),
		qemu.WithVMTimeout(b.Timeout),
	)
	if b.Line != nil {
		fns = append(fns, qemu.LogSerialByLine(func(line string) { b.Line(line) }))
	}
	v, err := qemu.StartContext(ctx, qemu.ArchAMD64, fns...)
	if err != nil {
		logf.Close()
		return fmt.Errorf("start QEMU: %w", err)
	}
	if err := v.Wait(); err != nil {
		return fmt.Errorf("QEMU (%s): %w", v.CmdlineQuoted(), err)
	}
	return nil
}

// Interactive boots the VM with this process's terminal as its console,
// for `make shell`. QEMU's escape is Ctrl-A X.
func Interactive(cfg Config, initramfs string, b Boot) error {
	// As in Run: decide KVM (its probe takes the lock) before locking.
	if _, err := exec.LookPath(strings.Fields(QEMUCommand(cfg, nil))[0]); err != nil {
		return fmt.Errorf("QEMU is missing (tools/deps.sh vm installs it): %w", err)
	}
	unlock, err := lockVMs(cfg)
	if err != nil {
		return err
	}
	defer unlock()
	o, err := qemu.OptionsFor(qemu.ArchAMD64, Options(cfg, initramfs, b)...)
	if err != nil {
		return err
	}
	args, err := o.Cmdline()
	if err != nil {
		return err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}
