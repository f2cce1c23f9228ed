package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/klog"
	"github.com/bpfilter/bpfilter/umh/internal/wire"
)

// replies decodes the statuses of the replies in b, checking that each
// one's payload is as long as its header says.
func replies(t *testing.T, b []byte) []int32 {
	t.Helper()
	var out []int32
	for len(b) > 0 {
		if len(b) < wire.ReplySize {
			t.Fatalf("%d bytes of a reply", len(b))
		}
		n := int(binary.LittleEndian.Uint32(b[4:]))
		if len(b) < wire.ReplySize+n {
			t.Fatalf("reply payload of %d bytes, %d there", n, len(b)-wire.ReplySize)
		}
		out = append(out, int32(binary.LittleEndian.Uint32(b)))
		b = b[wire.ReplySize+n:]
	}
	return out
}

// withPayload is a request and len bytes of payload.
func withPayload(r wire.Request) []byte {
	if r.Optlen == 0 {
		r.Optlen = r.Len
	}
	return append(r.Encode(), make([]byte, r.Len)...)
}

func TestServe(t *testing.T) {
	var in bytes.Buffer
	in.Write(wire.Request{Cmd: wire.CmdHealth, Pid: 1}.Encode())
	in.Write(withPayload(wire.Request{Cmd: 64, IsSet: 1, Len: 10, Pid: 2, Flags: wire.FlagTrace}))
	in.Write(append(wire.Request{Cmd: 66, Len: 4, Optlen: 4, Pid: 3}.Encode(), 1, 2, 3, 4))
	var seen []wire.Request
	var payloads [][]byte
	var out, log bytes.Buffer
	s := &Server{
		Handler: HandlerFunc(func(r wire.Request, p []byte) (int32, []byte, string) {
			seen = append(seen, r)
			payloads = append(payloads, p)
			if r.Cmd == 66 {
				return 0, []byte{9, 9}, ""
			}
			return -int32(unix.ENOPROTOOPT), nil, ""
		}),
		Log: klog.New(&log),
	}
	if err := s.Serve(&in, &out); err != nil {
		t.Fatal(err)
	}
	got := replies(t, out.Bytes())
	want := []int32{0, -92, 0}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("replies %v, want %v", got, want)
	}
	if !bytes.HasSuffix(out.Bytes(), []byte{0, 0, 0, 0, 2, 0, 0, 0, 9, 9}) {
		t.Fatalf("the last reply does not carry the handler's answer: % x", out.Bytes())
	}
	if len(seen) != 2 || seen[0].Cmd != 64 || seen[1].Cmd != 66 {
		t.Fatalf("handler saw %+v", seen)
	}
	if len(payloads[0]) != 10 || !bytes.Equal(payloads[1], []byte{1, 2, 3, 4}) {
		t.Fatalf("handler got payloads % x", payloads)
	}
	if !strings.Contains(log.String(), "bpfilter_umh: setsockopt 64 len 10 pid 2") {
		t.Fatalf("log lacks the traced request:\n%s", log.String())
	}
	if strings.Contains(log.String(), "getsockopt 66") {
		t.Fatalf("log has a request that was not traced:\n%s", log.String())
	}
}

func TestServeFailingHealth(t *testing.T) {
	var out bytes.Buffer
	s := &Server{Handler: HandlerFunc(func(wire.Request, []byte) (int32, []byte, string) { return 0, nil, "" }), Log: klog.Discard(), Health: -5}
	if err := s.Serve(bytes.NewReader(wire.Request{}.Encode()), &out); err != nil {
		t.Fatal(err)
	}
	if got := replies(t, out.Bytes()); len(got) != 1 || got[0] != -5 {
		t.Fatalf("replies %v", got)
	}
}

func TestServeBadInput(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"short", wire.Request{Cmd: 64}.Encode()[:7], wire.ErrShort},
		{"garbled", wire.Request{Cmd: 64, IsSet: 3}.Encode(), nil},
		{"payload cut short", wire.Request{Cmd: 64, Len: 8, Optlen: 8}.Encode(), wire.ErrShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			called := false
			s := &Server{Handler: HandlerFunc(func(wire.Request, []byte) (int32, []byte, string) { called = true; return 0, nil, "" }), Log: klog.Discard()}
			err := s.Serve(bytes.NewReader(tt.in), &out)
			if err == nil {
				t.Fatal("bad input accepted")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if called || out.Len() != 0 {
				t.Fatalf("bad input reached the handler (%v) or got a reply (%d bytes)", called, out.Len())
			}
		})
	}
}

// A panic in the handler is not recovered: the umh crashes and the module
// starts a new one, rather than carrying on with a lock held.
func TestHandlerPanicCrashes(t *testing.T) {
	var out bytes.Buffer
	s := &Server{Handler: HandlerFunc(func(wire.Request, []byte) (int32, []byte, string) { panic("boom") }), Log: klog.Discard()}
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want the handler's panic", r)
		}
		if out.Len() != 0 {
			t.Fatalf("a reply was written: % x", out.Bytes())
		}
	}()
	s.Serve(bytes.NewReader(wire.Request{Cmd: 65}.Encode()), &out)
	t.Fatal("Serve returned after a panic")
}

func TestNetnsExit(t *testing.T) {
	var gone []uint64
	var out bytes.Buffer
	s := &Server{Log: klog.Discard(), NetnsExit: func(n uint64) { gone = append(gone, n) }}
	in := append(wire.Request{Cmd: wire.CmdNetnsExit, IsSet: 1, Len: 16}.Encode(),
		7, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0)
	in = append(in, append(wire.Request{Cmd: wire.CmdNetnsExit, IsSet: 1, Len: 3}.Encode(), 1, 2, 3)...)
	if err := s.Serve(bytes.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	if got := replies(t, out.Bytes()); len(got) != 2 || got[0] != 0 || got[1] != -int32(unix.EINVAL) {
		t.Fatalf("replies %v, want [0 -22]", got)
	}
	if len(gone) != 2 || gone[0] != 7 || gone[1] != 8 {
		t.Fatalf("namespaces gone: %v, want [7 8]", gone)
	}
}

// TestLogLines: what each kind of call leaves in the log, notable lines on
// their own writer, trace lines only for a request that asks for them.
func TestLogLines(t *testing.T) {
	const (
		noproto = -int32(unix.ENOPROTOOPT)
		enoent  = -int32(unix.ENOENT)
		einval  = -int32(unix.EINVAL)
	)
	tests := []struct {
		name    string
		req     wire.Request
		status  int32
		reason  string
		notable string // the notable line, or ""
		trace   string // the trace line when traced
	}{
		{"get answered", wire.Request{Cmd: 64, Len: 84, Pid: 7, Netns: 9}, 0, "",
			"", "getsockopt 64 len 84 pid 7 netns 9: 0"},
		{"set answered", wire.Request{Cmd: 64, IsSet: 1, Len: 900, Pid: 7, Netns: 9}, 0, "",
			"", "setsockopt 64 len 900 pid 7 netns 9: 0"},
		{"handed on", wire.Request{Cmd: 64, Len: 84, Pid: 7, Netns: 9}, noproto, `table "nat" is not bpfilter's`,
			"", `getsockopt 64 len 84 pid 7 netns 9: -92 (table "nat" is not bpfilter's)`},
		{"set handed on", wire.Request{Cmd: 64, IsSet: 1, Len: 84, Pid: 7, Netns: 9}, noproto, `table "nat" is not bpfilter's`,
			"", `setsockopt 64 len 84 pid 7 netns 9: -92 (table "nat" is not bpfilter's)`},
		{"get refused", wire.Request{Cmd: 66, Len: 30, Pid: 7, Netns: 9}, einval, "IPT_SO_GET_REVISION: optlen 30, want 32",
			"", "getsockopt 66 len 30 pid 7 netns 9: -22 (IPT_SO_GET_REVISION: optlen 30, want 32)"},
		{"set refused", wire.Request{Cmd: 64, IsSet: 1, Len: 900, Pid: 7, Netns: 9}, enoent, `IPT_SO_SET_REPLACE: match "mark" is not supported`,
			`IPT_SO_SET_REPLACE: match "mark" is not supported`, "setsockopt 64 len 900 pid 7 netns 9: -2"},
		{"warning", wire.Request{Cmd: 64, IsSet: 1, Len: 900, Pid: 7, Netns: 9}, 0, "counters lost",
			"counters lost", "setsockopt 64 len 900 pid 7 netns 9: 0"},
	}
	for _, tt := range tests {
		for _, traced := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/traced=%v", tt.name, traced), func(t *testing.T) {
				req := tt.req
				if traced {
					req.Flags = wire.FlagTrace
				}
				var notable, trace, out bytes.Buffer
				s := &Server{
					Handler: HandlerFunc(func(wire.Request, []byte) (int32, []byte, string) { return tt.status, nil, tt.reason }),
					Log:     klog.NewSplit(&notable, &trace),
				}
				if err := s.Serve(bytes.NewReader(withPayload(req)), &out); err != nil {
					t.Fatal(err)
				}
				if got := replies(t, out.Bytes()); len(got) != 1 || got[0] != tt.status {
					t.Fatalf("replies %v, want [%d]", got, tt.status)
				}
				want := ""
				if tt.notable != "" {
					want = "<4>bpfilter_umh: " + tt.notable + "\n"
				}
				if notable.String() != want {
					t.Errorf("notable: %q, want %q", notable.String(), want)
				}
				want = ""
				if traced {
					want = "<7>bpfilter_umh: " + tt.trace + "\n"
				}
				if trace.String() != want {
					t.Errorf("trace: %q, want %q", trace.String(), want)
				}
			})
		}
	}
}

// TestTracePerRequest: a request that does not ask for tracing is not
// traced, whatever the one before it asked.
func TestTracePerRequest(t *testing.T) {
	var in, out, log bytes.Buffer
	in.Write(wire.Request{Cmd: 64, Pid: 1, Flags: wire.FlagTrace}.Encode())
	in.Write(wire.Request{Cmd: 64, Pid: 2}.Encode())
	in.Write(wire.Request{Cmd: 64, Pid: 3, Flags: wire.FlagTrace}.Encode())
	s := &Server{Handler: HandlerFunc(func(wire.Request, []byte) (int32, []byte, string) { return 0, nil, "" }), Log: klog.New(&log)}
	if err := s.Serve(&in, &out); err != nil {
		t.Fatal(err)
	}
	want := "<7>bpfilter_umh: getsockopt 64 len 0 pid 1 netns 0: 0\n<7>bpfilter_umh: getsockopt 64 len 0 pid 3 netns 0: 0\n"
	if log.String() != want {
		t.Fatalf("log %q, want %q", log.String(), want)
	}
}
