package kerneltest

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// shim is an LD_PRELOAD library that records the iptables sockopt calls of
// a process (and the old counters the kernel writes on a replace) into the
// file named by $IPT_CAPTURE.
const shim = `#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void rec(uint32_t kind, int opt, int ret, int err, const void *buf, uint32_t len)
{
	const char *p = getenv("IPT_CAPTURE");
	uint32_t h[5] = {kind, (uint32_t)opt, (uint32_t)ret, (uint32_t)err, len};
	int fd;

	if (!p || (fd = open(p, O_WRONLY | O_APPEND | O_CREAT, 0644)) < 0)
		return;
	if (write(fd, h, sizeof(h)) < 0 || (len && write(fd, buf, len) < 0))
		abort();
	close(fd);
}

int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	static int (*real)(int, int, int, const void *, socklen_t);
	int r, e;

	if (!real)
		real = (int (*)(int, int, int, const void *, socklen_t))dlsym(RTLD_NEXT, "setsockopt");
	r = real(fd, level, opt, val, len);
	e = errno;
	if (level == IPPROTO_IP && opt >= 64 && opt <= 65) {
		rec(1, opt, r, r < 0 ? e : 0, val, len);
		if (opt == 64 && r == 0 && len >= 96) {
			uint32_t n;
			const void *ptr;

			memcpy(&n, (const char *)val + 84, 4);
			memcpy(&ptr, (const char *)val + 88, 8);
			rec(3, opt, 0, 0, ptr, n * 16);
		}
	}
	errno = e;
	return r;
}

int getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	static int (*real)(int, int, int, void *, socklen_t *);
	int r, e;

	if (!real)
		real = (int (*)(int, int, int, void *, socklen_t *))dlsym(RTLD_NEXT, "getsockopt");
	if (level == IPPROTO_IP && opt >= 64 && opt <= 67)
		rec(0, opt, 0, 0, val, *len);
	r = real(fd, level, opt, val, len);
	e = errno;
	if (level == IPPROTO_IP && opt >= 64 && opt <= 67)
		rec(2, opt, r, r < 0 ? e : 0, val, *len);
	errno = e;
	return r;
}
`

// Kind is what a Record holds.
type Kind uint32

// Record kinds.
const (
	GetIn       Kind = 0 // getsockopt argument, before the call
	Set         Kind = 1 // setsockopt argument
	GetOut      Kind = 2 // getsockopt argument, after the call
	OldCounters Kind = 3 // what the kernel wrote at ipt_replace.counters
)

// Record is one recorded sockopt call.
type Record struct {
	Kind  Kind
	Opt   int
	Ret   int32
	Errno unix.Errno
	Data  []byte
}

// Capture runs script with sh in a fresh network namespace, with
// iptables-legacy's sockopt calls recorded, and returns the records.
func Capture(t testing.TB, script string) []Record {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a private network namespace")
	}
	for _, tool := range []string{"gcc", "iptables-legacy", "iptables-legacy-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "shim.c")
	lib := filepath.Join(dir, "shim.so")
	if err := os.WriteFile(src, []byte(shim), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-O2", "-Wall", "-o", lib, src, "-ldl").CombinedOutput(); err != nil {
		t.Fatalf("build capture shim: %v\n%s", err, out)
	}
	logPath := filepath.Join(dir, "capture.bin")
	cmd := exec.Command("sh", "-ec", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LD_PRELOAD=" + lib, "IPT_CAPTURE=" + logPath}
	// The namespace is made by clone itself: if it cannot be, nothing runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if out, err := cmd.CombinedOutput(); err != nil {
		if len(out) == 0 {
			t.Skipf("cannot run iptables-legacy in a private network namespace: %v", err)
		}
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatalf("no capture: %v", err)
	}
	var recs []Record
	for len(raw) >= 20 {
		le := binary.LittleEndian
		r := Record{
			Kind: Kind(le.Uint32(raw)), Opt: int(le.Uint32(raw[4:])),
			Ret: int32(le.Uint32(raw[8:])), Errno: unix.Errno(le.Uint32(raw[12:])),
		}
		n := int(le.Uint32(raw[16:]))
		raw = raw[20:]
		if n > len(raw) {
			t.Fatalf("truncated capture record")
		}
		r.Data, raw = raw[:n], raw[n:]
		recs = append(recs, r)
	}
	return recs
}

// Replaces returns the IPT_SO_SET_REPLACE arguments among recs.
func Replaces(recs []Record) [][]byte {
	var out [][]byte
	for _, r := range recs {
		if r.Kind == Set && r.Opt == 64 {
			out = append(out, r.Data)
		}
	}
	return out
}
