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

func replies(t *testing.T, b []byte) []int32 {
	t.Helper()
	if len(b)%wire.ReplySize != 0 {
		t.Fatalf("%d bytes of replies", len(b))
	}
	var out []int32
	for i := 0; i < len(b); i += wire.ReplySize {
		out = append(out, int32(binary.LittleEndian.Uint32(b[i:])))
	}
	return out
}

func TestServe(t *testing.T) {
	var in bytes.Buffer
	in.Write(wire.Request{Cmd: wire.CmdHealth, Pid: 1}.Encode())
	in.Write(wire.Request{Cmd: 64, IsSet: 1, Len: 10, Pid: 2, Flags: wire.FlagTrace}.Encode())
	in.Write(wire.Request{Cmd: 66, Len: 4, Pid: 3}.Encode())
	var seen []wire.Request
	var out, log bytes.Buffer
	s := &Server{
		Handler: HandlerFunc(func(r wire.Request) (int32, string) {
			seen = append(seen, r)
			return -int32(unix.ENOPROTOOPT), ""
		}),
		Log: klog.New(&log),
	}
	if err := s.Serve(&in, &out); err != nil {
		t.Fatal(err)
	}
	got := replies(t, out.Bytes())
	want := []int32{0, -92, -92}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("replies %v, want %v", got, want)
	}
	if len(seen) != 2 || seen[0].Cmd != 64 || seen[1].Cmd != 66 {
		t.Fatalf("handler saw %+v", seen)
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
	s := &Server{Handler: HandlerFunc(func(wire.Request) (int32, string) { return 0, "" }), Log: klog.Discard(), Health: -5}
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			called := false
			s := &Server{Handler: HandlerFunc(func(wire.Request) (int32, string) { called = true; return 0, "" }), Log: klog.Discard()}
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

func TestHandlerPanicIsAnError(t *testing.T) {
	var out, log bytes.Buffer
	s := &Server{Handler: HandlerFunc(func(wire.Request) (int32, string) { panic("boom") }), Log: klog.New(&log)}
	if err := s.Serve(bytes.NewReader(wire.Request{Cmd: 65}.Encode()), &out); err != nil {
		t.Fatal(err)
	}
	if got := replies(t, out.Bytes()); got[0] != -int32(unix.EIO) {
		t.Fatalf("replies %v", got)
	}
	if !strings.Contains(log.String(), "BUG:") {
		t.Fatalf("panic not logged:\n%s", log.String())
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
					Handler: HandlerFunc(func(wire.Request) (int32, string) { return tt.status, tt.reason }),
					Log:     klog.NewSplit(&notable, &trace),
				}
				if err := s.Serve(bytes.NewReader(req.Encode()), &out); err != nil {
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
	s := &Server{Handler: HandlerFunc(func(wire.Request) (int32, string) { return 0, "" }), Log: klog.New(&log)}
	if err := s.Serve(&in, &out); err != nil {
		t.Fatal(err)
	}
	want := "<7>bpfilter_umh: getsockopt 64 len 0 pid 1 netns 0: 0\n<7>bpfilter_umh: getsockopt 64 len 0 pid 3 netns 0: 0\n"
	if log.String() != want {
		t.Fatalf("log %q, want %q", log.String(), want)
	}
}
