// Package wire is the codec of the pipe protocol between bpfilter.ko and
// the usermode helper. It mirrors kmod/msgfmt.h; TestPinnedToC compiles
// that header and checks that sizes and offsets agree.
//
// A request is a header and the caller's bytes (Len of them), a reply a
// header and the answer's bytes: the module copies both from and to the
// caller itself, so the umh never touches another process's memory.
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
	CmdNetnsExit = 1  // set: the payload's namespaces (u64 cookies) are gone
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
	ReplySize   = 8
)

// MaxPayload bounds a request's payload: the module refuses larger optlens
// (with -ENOMEM, as ip_tables refuses tables beyond XT_MAX_TABLE_SIZE)
// before it allocates, so a larger length is a garbled request.
const MaxPayload = 512<<20 + 4096

// Request is struct mbox_request.
type Request struct {
	Netns  uint64 // net_cookie of the caller's network namespace
	Len    uint32 // bytes of payload: the caller's optval, optlen bytes
	IsSet  uint32 // 1 for setsockopt, 0 for getsockopt
	Cmd    uint32 // optname, or Cmd*
	Pid    uint32 // caller's pid in the initial pid namespace, for logs
	Flags  uint32 // Flag* bits
	Optlen uint32 // the caller's optlen (the payload is what the call reads of it)
}

// Reply is struct mbox_reply: 0 or a negative errno, and the length of
// the payload that follows.
type Reply struct {
	Status int32
	Len    uint32
}

// ErrShort is returned by ReadRequest for a request cut off by EOF.
var ErrShort = errors.New("short request")

// ReadRequest reads one request and its payload. It returns io.EOF when
// the module closed the pipe between requests, and an error wrapping
// ErrShort when a request was cut off.
func ReadRequest(r io.Reader) (Request, []byte, error) {
	var b [RequestSize]byte
	n, err := io.ReadFull(r, b[:])
	switch {
	case err == io.EOF:
		return Request{}, nil, io.EOF
	case err == io.ErrUnexpectedEOF:
		return Request{}, nil, fmt.Errorf("%w: %d of %d bytes", ErrShort, n, RequestSize)
	case err != nil:
		return Request{}, nil, fmt.Errorf("read request: %w", err)
	}
	req, err := DecodeRequest(b[:])
	if err != nil {
		return req, nil, err
	}
	payload := make([]byte, req.Len)
	if n, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return req, nil, fmt.Errorf("%w: payload %d of %d bytes", ErrShort, n, req.Len)
		}
		return req, nil, fmt.Errorf("read request payload: %w", err)
	}
	return req, payload, nil
}

// DecodeRequest decodes a request header from exactly RequestSize bytes.
func DecodeRequest(b []byte) (Request, error) {
	if len(b) != RequestSize {
		return Request{}, fmt.Errorf("%w: %d of %d bytes", ErrShort, len(b), RequestSize)
	}
	le := binary.LittleEndian
	req := Request{
		Netns:  le.Uint64(b[0:]),
		Len:    le.Uint32(b[8:]),
		IsSet:  le.Uint32(b[12:]),
		Cmd:    le.Uint32(b[16:]),
		Pid:    le.Uint32(b[20:]),
		Flags:  le.Uint32(b[24:]),
		Optlen: le.Uint32(b[28:]),
	}
	switch {
	case req.IsSet > 1:
		return req, fmt.Errorf("garbled request: is_set %d", req.IsSet)
	case req.Flags&^knownFlags != 0:
		return req, fmt.Errorf("garbled request: flags %#x", req.Flags)
	case req.Len > MaxPayload:
		return req, fmt.Errorf("garbled request: payload of %d bytes", req.Len)
	case req.Cmd >= FirstSockopt && req.Len > req.Optlen:
		return req, fmt.Errorf("garbled request: payload of %d bytes, optlen %d", req.Len, req.Optlen)
	}
	return req, nil
}

// Encode returns the request header as the module sends it.
func (r Request) Encode() []byte {
	b := make([]byte, RequestSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], r.Netns)
	le.PutUint32(b[8:], r.Len)
	le.PutUint32(b[12:], r.IsSet)
	le.PutUint32(b[16:], r.Cmd)
	le.PutUint32(b[20:], r.Pid)
	le.PutUint32(b[24:], r.Flags)
	le.PutUint32(b[28:], r.Optlen)
	return b
}

// EncodeReply returns a reply with status and payload as the module reads
// it: the header, then the payload.
func EncodeReply(status int32, payload []byte) []byte {
	b := make([]byte, ReplySize, ReplySize+len(payload))
	binary.LittleEndian.PutUint32(b, uint32(status))
	binary.LittleEndian.PutUint32(b[4:], uint32(len(payload)))
	return append(b, payload...)
}

// WriteReply writes one reply and its payload in a single write.
func WriteReply(w io.Writer, status int32, payload []byte) error {
	if _, err := w.Write(EncodeReply(status, payload)); err != nil {
		return fmt.Errorf("write reply: %w", err)
	}
	return nil
}

// Segment is one piece of a get's answer: Data goes at Off in optval.
type Segment struct {
	Off  uint32
	Data []byte
}

// SegmentSize is the size of struct mbox_segment.
const SegmentSize = 8

// EncodeSegments is the payload of a get's reply.
func EncodeSegments(segs []Segment) []byte {
	n := 0
	for _, s := range segs {
		n += SegmentSize + len(s.Data)
	}
	b := make([]byte, 0, n)
	for _, s := range segs {
		b = binary.LittleEndian.AppendUint32(b, s.Off)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s.Data)))
		b = append(b, s.Data...)
	}
	return b
}

// Cookies decodes the payload of CmdNetnsExit: little-endian u64 cookies.
func Cookies(payload []byte) ([]uint64, error) {
	if len(payload)%8 != 0 {
		return nil, fmt.Errorf("garbled namespace exit: %d bytes", len(payload))
	}
	out := make([]uint64, 0, len(payload)/8)
	for i := 0; i < len(payload); i += 8 {
		out = append(out, binary.LittleEndian.Uint64(payload[i:]))
	}
	return out, nil
}
