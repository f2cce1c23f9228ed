// Package wire is the codec of the pipe protocol between bpfilter.ko and
// the usermode helper. It mirrors kmod/msgfmt.h; TestPinnedToC compiles
// that header and checks that sizes and offsets agree.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Control commands, which the module sends on its own; sockopt requests
// carry their optname (64 and up) as the command.
const (
	CmdHealth    = 0  // get: is the umh alive? answered 0
	CmdNetnsExit = 1  // set: network namespace Netns is gone
	CmdShutdown  = 2  // set: the module is going: undo everything
	CmdNetdev    = 3  // set: interfaces of namespace Netns changed
	FirstSockopt = 64 // the first iptables optname
)

// Request flags (Request.Flags).
const (
	FlagTrace = 1 << 0 // log this request in the kernel log (bpfilter.trace)

	knownFlags = FlagTrace
)

// RequestSize and ReplySize are the sizes of struct mbox_request and
// struct mbox_reply.
const (
	RequestSize = 32
	ReplySize   = 4
)

// Request is struct mbox_request.
type Request struct {
	Addr  uint64 // caller's optval, in the address space of Pid
	Len   uint32 // optlen: only [Addr, Addr+Len) may be touched
	IsSet uint32 // 1 for setsockopt, 0 for getsockopt
	Cmd   uint32 // optname, or CmdHealth
	Pid   uint32 // caller's pid in the initial pid namespace
	Netns uint32 // inode number of the socket's network namespace
	Flags uint32 // Flag* bits
}

// Reply is struct mbox_reply: 0 or a negative errno.
type Reply struct {
	Status int32
}

// ErrShort is returned by ReadRequest for a request cut off by EOF.
var ErrShort = errors.New("short request")

// ReadRequest reads one request. It returns io.EOF when the module closed
// the pipe between requests, and an error wrapping ErrShort when a request
// was cut off.
func ReadRequest(r io.Reader) (Request, error) {
	var b [RequestSize]byte
	n, err := io.ReadFull(r, b[:])
	switch {
	case err == io.EOF:
		return Request{}, io.EOF
	case err == io.ErrUnexpectedEOF:
		return Request{}, fmt.Errorf("%w: %d of %d bytes", ErrShort, n, RequestSize)
	case err != nil:
		return Request{}, fmt.Errorf("read request: %w", err)
	}
	return DecodeRequest(b[:])
}

// DecodeRequest decodes a request from exactly RequestSize bytes.
func DecodeRequest(b []byte) (Request, error) {
	if len(b) != RequestSize {
		return Request{}, fmt.Errorf("%w: %d of %d bytes", ErrShort, len(b), RequestSize)
	}
	le := binary.LittleEndian
	req := Request{
		Addr:  le.Uint64(b[0:]),
		Len:   le.Uint32(b[8:]),
		IsSet: le.Uint32(b[12:]),
		Cmd:   le.Uint32(b[16:]),
		Pid:   le.Uint32(b[20:]),
		Netns: le.Uint32(b[24:]),
		Flags: le.Uint32(b[28:]),
	}
	if req.IsSet > 1 {
		return req, fmt.Errorf("garbled request: is_set %d", req.IsSet)
	}
	if req.Flags&^knownFlags != 0 {
		return req, fmt.Errorf("garbled request: flags %#x", req.Flags)
	}
	return req, nil
}

// Encode returns the request as the module sends it.
func (r Request) Encode() []byte {
	b := make([]byte, RequestSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], r.Addr)
	le.PutUint32(b[8:], r.Len)
	le.PutUint32(b[12:], r.IsSet)
	le.PutUint32(b[16:], r.Cmd)
	le.PutUint32(b[20:], r.Pid)
	le.PutUint32(b[24:], r.Netns)
	le.PutUint32(b[28:], r.Flags)
	return b
}

// Encode returns the reply as the module reads it.
func (r Reply) Encode() []byte {
	b := make([]byte, ReplySize)
	binary.LittleEndian.PutUint32(b, uint32(r.Status))
	return b
}

// WriteReply writes one reply in a single write, as the module reads it.
func WriteReply(w io.Writer, r Reply) error {
	if _, err := w.Write(r.Encode()); err != nil {
		return fmt.Errorf("write reply: %w", err)
	}
	return nil
}
