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

	ProgsSize = 40 // sizeof(struct bpfilter_progs)
	HeldSize  = 32 // sizeof(struct bpfilter_held)

	// ProgsConntrack is BPFILTER_PROGS_CONNTRACK: the programs read
	// conntrack, which the module switches on in the namespace.
	ProgsConntrack = 0x1
	// ProgsIfNames is BPFILTER_PROGS_IFNAMES: the programs compare
	// interface names, which the module then fills in.
	ProgsIfNames = 0x2
	// MaxProgsSize is BPFILTER_PROGS_MAX_SIZE: a SET_PROGS, records
	// included, is at most this many bytes.
	MaxProgsSize = 64 << 20

	// ExtSize is sizeof(struct bpfilter_ext), the data not included;
	// ExtTarget is BPFILTER_EXT_TARGET.
	ExtSize     = 136
	ExtTarget   = 0x1
	ExtNameSize = 32 // bpfilter_ext.name
	ipSize      = 84 // struct ipt_ip
)

// Progs is struct bpfilter_progs.
type Progs struct {
	Netns  uint64
	Gen    uint64
	ProgFD [NumHooks]int32
	CtxFD  int32
	Flags  uint32 // Progs*
	NumExt uint32 // struct bpfilter_ext records that follow
}

// Ext is struct bpfilter_ext: a kernel extension of a rule, which the
// module checks and runs (the programs call out to it by its index).
type Ext struct {
	Name     string
	Revision uint8
	Target   bool
	HookMask uint32 // (1 << NF_INET_*) of the chains that reach the rule
	IP       []byte // the rule's struct ipt_ip
	Data     []byte // XT_ALIGN(size) bytes of match or target data
}

// Set is what a SetProgs hands over besides the programs and the ctx.
type Set struct {
	Conntrack bool  // the programs read conntrack (ProgsConntrack)
	IfNames   bool  // the programs compare interface names (ProgsIfNames)
	Exts      []Ext // by callout index
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
// programs of namespace netns, reading ctx, calling out to set's
// extensions, tagged gen. The module wants a program at every hook
// (EINVAL otherwise), or none: all nil (progs and ctx, an empty set)
// drops the namespace's programs. When it returns, no packet runs the
// programs it replaced. Errors wrap the errno: ESRCH, the namespace is
// gone; EINVAL, a wrong program, map or record; an extension's check's
// errno (as ip_tables would give it).
func (c *Conn) SetProgs(netns, gen uint64, progs [NumHooks]*ebpf.Program, ctx *ebpf.Map, set Set) error {
	p := Progs{Netns: netns, Gen: gen, ProgFD: [NumHooks]int32{-1, -1, -1}, CtxFD: -1,
		NumExt: uint32(len(set.Exts))}
	if set.Conntrack {
		p.Flags |= ProgsConntrack
	}
	if set.IfNames {
		p.Flags |= ProgsIfNames
	}
	for i, prog := range progs {
		if prog != nil {
			p.ProgFD[i] = int32(prog.FD())
		}
	}
	if ctx != nil {
		p.CtxFD = int32(ctx.FD())
	}
	b := p.Marshal()
	for i := range set.Exts {
		r, err := set.Exts[i].Marshal()
		if err != nil {
			return fmt.Errorf("kmodctl: netns %d (gen %d): extension %d: %w", netns, gen, i, err)
		}
		b = append(b, r...)
	}
	if len(b) > MaxProgsSize {
		return fmt.Errorf("kmodctl: netns %d (gen %d): %d bytes of programs and extensions, more than the module takes (%d): %w",
			netns, gen, len(b), MaxProgsSize, unix.ENOMEM)
	}
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
	le.PutUint32(b[32:], p.Flags)
	le.PutUint32(b[36:], p.NumExt)
	return b
}

// Marshal lays out struct bpfilter_ext and its data, padded to 8 bytes.
func (x *Ext) Marshal() ([]byte, error) {
	if len(x.Name) == 0 || len(x.Name) >= xtExtensionMaxNameLen {
		return nil, fmt.Errorf("name %q: not 1..%d bytes", x.Name, xtExtensionMaxNameLen-1)
	}
	if len(x.IP) != ipSize {
		return nil, fmt.Errorf("%s: ipt_ip of %d bytes, want %d", x.Name, len(x.IP), ipSize)
	}
	size := ExtSize + (len(x.Data)+7)&^7
	b := make([]byte, size)
	le := binary.LittleEndian
	le.PutUint32(b[0:], uint32(size))
	le.PutUint32(b[4:], uint32(len(x.Data)))
	le.PutUint32(b[8:], x.HookMask)
	if x.Target {
		b[12] = ExtTarget
	}
	b[13] = x.Revision
	copy(b[16:16+ExtNameSize], x.Name)
	copy(b[48:48+ipSize], x.IP)
	copy(b[ExtSize:], x.Data)
	return b, nil
}

// xtExtensionMaxNameLen is XT_EXTENSION_MAXNAMELEN: a name and its NUL.
const xtExtensionMaxNameLen = 29

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
