package netnsfind

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// newNetns makes a network namespace held by a thread that stays in it
// until the returned function is called.
func newNetns(t *testing.T) (ino uint64, release func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating network namespaces needs root")
	}
	inoc := make(chan uint64)
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread dies with its namespace.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			errc <- err
			return
		}
		inoc <- st.Ino
		<-done
	}()
	select {
	case ino := <-inoc:
		return ino, func() { close(done) }
	case err := <-errc:
		t.Fatalf("unshare: %v", err)
	}
	return 0, nil
}

func check(t *testing.T, f *os.File, err error, ino uint64) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := Inode(f)
	if err != nil || got != ino {
		t.Fatalf("opened inode %d (%v), want %d", got, err, ino)
	}
}

func TestHeldByThread(t *testing.T) {
	ino, release := newNetns(t)
	defer release()
	f, err := Open(ino)
	check(t, f, err, ino)
}

func TestHeldByFd(t *testing.T) {
	ino, release := newNetns(t)
	f, err := fromTasks(ino)
	check(t, f, err, ino)
	// Keep only a descriptor: the thread goes away.
	held, err := Open(ino)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	release()
	f, err = fromFds(ino)
	if f == nil && err == nil {
		t.Fatal("a namespace held by an fd was not found through /proc/*/fd")
	}
	check(t, f, err, ino)
}

func TestHeldByMount(t *testing.T) {
	ino, release := newNetns(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "ns with space")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := fromTasks(ino)
	if err != nil || src == nil {
		t.Fatalf("source: %v", err)
	}
	if err := unix.Mount(src.Name(), target, "", unix.MS_BIND, ""); err != nil {
		src.Close()
		release()
		t.Skipf("bind-mounting a namespace is not allowed here: %v", err)
	}
	src.Close()
	defer unix.Unmount(target, unix.MNT_DETACH)
	release()
	f, err := fromMounts(ino)
	if f == nil && err == nil {
		t.Fatal("a namespace held by a bind mount was not found in mountinfo")
	}
	check(t, f, err, ino)
}

func TestGone(t *testing.T) {
	if _, err := Open(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("inode 1: %v, want ErrNotFound", err)
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{`/run/netns/a`: "/run/netns/a", `/tmp/a\040b`: "/tmp/a b", `\134x`: `\x`} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
