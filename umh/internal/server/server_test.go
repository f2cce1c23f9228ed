package server

import (
	"bytes"
	"encoding/binary"
	"errors"
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
	in.Write(wire.Request{Cmd: 64, IsSet: 1, Len: 10, Pid: 2}.Encode())
	in.Write(wire.Request{Cmd: 66, Len: 4, Pid: 3}.Encode())
	var seen []wire.Request
	var out, log bytes.Buffer
	s := &Server{
		Handler: HandlerFunc(func(r wire.Request) int32 {
			seen = append(seen, r)
			return -int32(unix.ENOPROTOOPT)
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
		t.Fatalf("log lacks the request:\n%s", log.String())
	}
}

func TestServeFailingHealth(t *testing.T) {
	var out bytes.Buffer
	s := &Server{Handler: HandlerFunc(func(wire.Request) int32 { return 0 }), Log: klog.Discard(), Health: -5}
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
			s := &Server{Handler: HandlerFunc(func(wire.Request) int32 { called = true; return 0 }), Log: klog.Discard()}
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
	s := &Server{Handler: HandlerFunc(func(wire.Request) int32 { panic("boom") }), Log: klog.New(&log)}
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
