package procmem

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestReadWriteOwnMemory(t *testing.T) {
	buf := []byte("0123456789abcdef")
	m := New(os.Getpid(), addrOf(buf), uint32(len(buf)))
	got := make([]byte, 4)
	if _, err := m.ReadAt(got, 10); err != nil {
		t.Fatal(err)
	}
	if string(got) != "abcd" {
		t.Fatalf("read %q", got)
	}
	if _, err := m.WriteAt([]byte("XY"), 14); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "0123456789abcdXY" {
		t.Fatalf("after write: %q", buf)
	}
	runtime.KeepAlive(buf)
}

func TestBounds(t *testing.T) {
	outer := make([]byte, 64)
	for i := range outer {
		outer[i] = 0xee
	}
	inner := outer[16:32]
	m := New(os.Getpid(), addrOf(inner), uint32(len(inner)))
	tests := []struct {
		name string
		n    int
		off  int64
	}{
		{"past the end", 4, 14},
		{"negative offset", 4, -1},
		{"bigger than the buffer", 17, 0},
		{"at the end", 1, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := m.ReadAt(make([]byte, tt.n), tt.off); !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("read: %v, want ErrOutOfRange", err)
			}
			if _, err := m.WriteAt(bytes.Repeat([]byte{0}, tt.n), tt.off); !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("write: %v, want ErrOutOfRange", err)
			}
		})
	}
	for i, b := range outer {
		if b != 0xee {
			t.Fatalf("byte %d changed", i)
		}
	}
	runtime.KeepAlive(outer)
}

func TestUnmappedIsEFAULT(t *testing.T) {
	m := New(os.Getpid(), 8, 16) // page 0 is never mapped
	if _, err := m.ReadAt(make([]byte, 8), 0); !errors.Is(err, unix.EFAULT) {
		t.Fatalf("read of unmapped memory: %v, want EFAULT", err)
	}
}

// addrOf is the address of the first byte of p.
func addrOf(p []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&p[0]))) }
