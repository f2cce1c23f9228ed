package wire

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"testing"
	"unsafe"

	"github.com/bpfilter/bpfilter/umh/internal/cvalues"
)

// cLayout compiles kmod/msgfmt.h on the host and returns the sizes and
// offsets it defines, keyed like "mbox_request.addr" (offset) and
// "mbox_request.addr.size".
func cLayout(t *testing.T) map[string]uintptr {
	t.Helper()
	hdr, err := filepath.Abs("../../../kmod/msgfmt.h")
	if err != nil {
		t.Fatal(err)
	}
	exprs := []cvalues.Expr{
		{Name: "mbox_request", C: "sizeof(struct mbox_request)"},
		{Name: "mbox_reply", C: "sizeof(struct mbox_reply)"},
		{Name: "health", C: "BPFILTER_CMD_HEALTH"},
		{Name: "netns_exit", C: "BPFILTER_CMD_NETNS_EXIT"},
		{Name: "shutdown", C: "BPFILTER_CMD_SHUTDOWN"},
		{Name: "netdev", C: "BPFILTER_CMD_NETDEV"},
		{Name: "flag_trace", C: "BPFILTER_REQ_TRACE"},
		{Name: "mbox_reply.status", C: "offsetof(struct mbox_reply, status)"},
		{Name: "mbox_reply.status.size", C: "sizeof(((struct mbox_reply *)0)->status)"},
	}
	for _, f := range []string{"addr", "len", "is_set", "cmd", "pid", "netns", "flags"} {
		exprs = append(exprs,
			cvalues.Expr{Name: "mbox_request." + f, C: "offsetof(struct mbox_request, " + f + ")"},
			cvalues.Expr{Name: "mbox_request." + f + ".size", C: "sizeof(((struct mbox_request *)0)->" + f + ")"})
	}
	m := map[string]uintptr{}
	for k, v := range cvalues.Eval(t, []string{`"` + hdr + `"`}, exprs) {
		m[k] = uintptr(v)
	}
	return m
}

func TestPinnedToC(t *testing.T) {
	c := cLayout(t)
	goLayout := map[string]uintptr{
		"mbox_request": unsafe.Sizeof(Request{}),
		"mbox_reply":   unsafe.Sizeof(Reply{}),
		"health":       CmdHealth,
		"netns_exit":   CmdNetnsExit,
		"shutdown":     CmdShutdown,
		"netdev":       CmdNetdev,
		"flag_trace":   FlagTrace,
	}
	cNames := map[string]string{
		"Addr": "addr", "Len": "len", "IsSet": "is_set", "Cmd": "cmd",
		"Pid": "pid", "Netns": "netns", "Flags": "flags",
	}
	rt := reflect.TypeOf(Request{})
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		name, ok := cNames[f.Name]
		if !ok {
			t.Fatalf("Go field %s has no C counterpart", f.Name)
		}
		goLayout["mbox_request."+name] = f.Offset
		goLayout["mbox_request."+name+".size"] = f.Type.Size()
	}
	goLayout["mbox_reply.status"] = 0
	goLayout["mbox_reply.status.size"] = unsafe.Sizeof(Reply{}.Status)

	if !reflect.DeepEqual(c, goLayout) {
		t.Fatalf("kmod/msgfmt.h and package wire disagree:\nC:  %v\nGo: %v", c, goLayout)
	}
	if c["mbox_request"] != RequestSize || c["mbox_reply"] != ReplySize {
		t.Fatalf("RequestSize %d / ReplySize %d do not match C %d / %d",
			RequestSize, ReplySize, c["mbox_request"], c["mbox_reply"])
	}
}

func TestRoundTrip(t *testing.T) {
	want := Request{Addr: 0x7ffd12345678, Len: 84, IsSet: 1, Cmd: 64, Pid: 1234, Netns: 4026531840, Flags: FlagTrace}
	got, err := ReadRequest(bytes.NewReader(want.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestReadRequestErrors(t *testing.T) {
	full := Request{Cmd: 64}.Encode()
	garbled := Request{Cmd: 64, IsSet: 7}.Encode()
	flags := Request{Cmd: 64, Flags: 1 << 1}.Encode()
	tests := []struct {
		name  string
		in    []byte
		isEOF bool
		short bool
	}{
		{"eof", nil, true, false},
		{"short", full[:5], false, true},
		{"one byte short", full[:RequestSize-1], false, true},
		{"is_set not boolean", garbled, false, false},
		{"unknown flag", flags, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadRequest(bytes.NewReader(tt.in))
			if err == nil {
				t.Fatal("no error")
			}
			if got := errors.Is(err, io.EOF); got != tt.isEOF {
				t.Fatalf("EOF = %v for %v", got, err)
			}
			if got := errors.Is(err, ErrShort); got != tt.short {
				t.Fatalf("short = %v for %v", got, err)
			}
		})
	}
}

func TestReplyEncoding(t *testing.T) {
	got := Reply{Status: -92}.Encode()
	want := []byte{0xa4, 0xff, 0xff, 0xff}
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
}
