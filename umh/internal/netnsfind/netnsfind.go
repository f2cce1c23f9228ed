// Package netnsfind opens a network namespace known only by its inode
// number, as the module names it, without keeping it alive: the umh holds
// such a handle only while it works in the namespace, so that a namespace
// dies when its last user leaves, as with ip_tables.
//
// A live namespace is kept alive by something userspace can reach: a
// thread inside it, an open file descriptor to it, or an nsfs bind mount
// (ip netns). Open looks through those in /proc.
package netnsfind

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotFound means that nothing userspace can reach holds the namespace.
var ErrNotFound = errors.New("no process or mount holds the network namespace")

// Open returns an open file of the network namespace with inode ino.
func Open(ino uint64) (*os.File, error) {
	for _, find := range []func(uint64) (*os.File, error){fromTasks, fromFds, fromMounts} {
		f, err := find(ino)
		if err != nil || f != nil {
			return f, err
		}
	}
	return nil, fmt.Errorf("netns %d: %w", ino, ErrNotFound)
}

// Inode returns the inode of the namespace file f.
func Inode(f *os.File) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// openIf opens path and keeps it if it is a network namespace with inode
// ino (the namespace may have changed between the look and the open).
func openIf(path string, ino uint64) *os.File {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	if got, err := Inode(f); err != nil || got != ino || !isNetns(f) {
		f.Close()
		return nil
	}
	return f
}

func isNetns(f *os.File) bool {
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	return err == nil && t == unix.CLONE_NEWNET
}

func pids() []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// fromTasks finds a thread inside the namespace.
func fromTasks(ino uint64) (*os.File, error) {
	for _, pid := range pids() {
		tasks, _ := os.ReadDir(filepath.Join("/proc", pid, "task"))
		for _, t := range tasks {
			p := filepath.Join("/proc", pid, "task", t.Name(), "ns", "net")
			var st unix.Stat_t
			if unix.Stat(p, &st) != nil || st.Ino != ino {
				continue
			}
			if f := openIf(p, ino); f != nil {
				return f, nil
			}
		}
	}
	return nil, nil
}

// fromFds finds an open file descriptor to the namespace.
func fromFds(ino uint64) (*os.File, error) {
	want := "net:[" + strconv.FormatUint(ino, 10) + "]"
	for _, pid := range pids() {
		dir := filepath.Join("/proc", pid, "fd")
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			p := filepath.Join(dir, fd.Name())
			if target, err := os.Readlink(p); err != nil || target != want {
				continue
			}
			if f := openIf(p, ino); f != nil {
				return f, nil
			}
		}
	}
	return nil, nil
}

// fromMounts finds an nsfs bind mount of the namespace (ip netns add).
func fromMounts(ino uint64) (*os.File, error) {
	m, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer m.Close()
	want := "net:[" + strconv.FormatUint(ino, 10) + "]"
	sc := bufio.NewScanner(m)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source ...
		f := strings.Fields(sc.Text())
		sep := -1
		for i, w := range f {
			if w == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(f) || len(f) < 5 || f[sep+1] != "nsfs" || f[3] != want {
			continue
		}
		if file := openIf(unescape(f[4]), ino); file != nil {
			return file, nil
		}
	}
	return nil, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space...).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
