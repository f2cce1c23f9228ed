// Package kmodctl is the umh's client of the module's private sockopts
// (kmod/msgfmt.h, BPFILTER_SO_*): it hands the module the programs of a
// namespace, and asks what the module holds after a restart.
//
// The calls go on one AF_INET datagram socket of the umh's own (the
// initial) network namespace; the namespace they are about is named by
// its net_cookie. File descriptors are resolved by the module in the
// umh's context, during the call.
package kmodctl

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The module's sockopts and their structures (kmod/msgfmt.h; pinned by
// kmodctl_test.go).
const (
	SoBase     = 0x6270 // BPFILTER_SO_BASE
	SoSetProgs = SoBase // BPFILTER_SO_SET_PROGS
	SoGetHeld  = SoBase // BPFILTER_SO_GET_HELD

	// NumHooks is BPFILTER_NUM_HOOKS: INPUT, FORWARD, OUTPUT, in that
	// order (BPFILTER_HOOK_*).
	NumHooks    = 3
	HookInput   = 0
	HookForward = 1
	HookOutput  = 2

	ProgsSize = 32 // sizeof(struct bpfilter_progs)
	HeldSize  = 32 // sizeof(struct bpfilter_held)
)

// Progs is struct bpfilter_progs.
type Progs struct {
	Netns  uint64
	Gen    uint64
	ProgFD [NumHooks]int32
	CtxFD  int32
}

// Held is struct bpfilter_held: a namespace whose programs the module
// holds, with the gen they were set with and their ids.
type Held struct {
	Netns  uint64
	Gen    uint64
	ProgID [NumHooks]uint32 // 0: no program at that hook
	CtxID  uint32           // the ctx map's id
}

// Conn is the umh's socket for the module's sockopts. Its methods may be
// called from any goroutine.
type Conn struct {
	mu sync.Mutex
	fd int
}

// Open opens the socket.
func Open() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("kmodctl: socket: %w", err)
	}
	return &Conn{fd: fd}, nil
}

// Close closes the socket.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// SetProgs makes progs (by hook: HookInput, HookForward, HookOutput) the
// programs of namespace netns, reading ctx, tagged gen. The module wants a
// program at every hook (EINVAL otherwise), or none: all nil (progs and
// ctx) drops the namespace's programs. When it returns,
// no packet runs the programs it replaced. Errors wrap the errno: ESRCH,
// the namespace is gone; EINVAL, a wrong program or map.
func (c *Conn) SetProgs(netns, gen uint64, progs [NumHooks]*ebpf.Program, ctx *ebpf.Map) error {
	p := Progs{Netns: netns, Gen: gen, ProgFD: [NumHooks]int32{-1, -1, -1}, CtxFD: -1}
	for i, prog := range progs {
		if prog != nil {
			p.ProgFD[i] = int32(prog.FD())
		}
	}
	if ctx != nil {
		p.CtxFD = int32(ctx.FD())
	}
	b := p.Marshal()
	c.mu.Lock()
	_, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(c.fd), unix.IPPROTO_IP, SoSetProgs,
		uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0)
	c.mu.Unlock()
	// The fds must stay open until the module has taken its references.
	runtime.KeepAlive(progs)
	runtime.KeepAlive(ctx)
	if errno != 0 {
		return fmt.Errorf("kmodctl: set programs of netns %d (gen %d): %w", netns, gen, errno)
	}
	return nil
}

// maxHeldBuf bounds Held's buffer: 2 million namespaces.
const maxHeldBuf = 64 << 20

// Held lists the namespaces whose programs the module holds.
func (c *Conn) Held() ([]Held, error) {
	n := 64 * HeldSize
	for {
		b := make([]byte, n)
		l := uint32(n)
		c.mu.Lock()
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(c.fd), unix.IPPROTO_IP, SoGetHeld,
			uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&l)), 0)
		c.mu.Unlock()
		switch {
		case errno == unix.ENOSPC && n < maxHeldBuf:
			// Netfilter hands optlen back only on success: the size
			// needed is unknown, so double.
			n *= 2
			continue
		case errno != 0:
			return nil, fmt.Errorf("kmodctl: get held programs: %w", errno)
		}
		return ParseHeld(b[:min(int(l), n)])
	}
}

// Marshal lays out struct bpfilter_progs.
func (p *Progs) Marshal() []byte {
	b := make([]byte, ProgsSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], p.Netns)
	le.PutUint64(b[8:], p.Gen)
	for i, fd := range p.ProgFD {
		le.PutUint32(b[16+4*i:], uint32(fd))
	}
	le.PutUint32(b[28:], uint32(p.CtxFD))
	return b
}

// ParseHeld reads an array of struct bpfilter_held.
func ParseHeld(b []byte) ([]Held, error) {
	if len(b)%HeldSize != 0 {
		return nil, fmt.Errorf("kmodctl: held: %d bytes, not a multiple of %d", len(b), HeldSize)
	}
	le := binary.LittleEndian
	out := make([]Held, 0, len(b)/HeldSize)
	for off := 0; off < len(b); off += HeldSize {
		r := b[off : off+HeldSize]
		h := Held{Netns: le.Uint64(r[0:]), Gen: le.Uint64(r[8:]), CtxID: le.Uint32(r[28:])}
		for i := range h.ProgID {
			h.ProgID[i] = le.Uint32(r[16+4*i:])
		}
		out = append(out, h)
	}
	return out, nil
}

// ErrGone is the errno of a call about a namespace that no longer exists
// (errors.Is(err, ErrGone)).
const ErrGone = unix.ESRCH
