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
		{Name: "flag_trace", C: "BPFILTER_REQ_TRACE"},
	}
	exprs = append(exprs, cvalues.Expr{Name: "mbox_segment", C: "sizeof(struct mbox_segment)"},
		cvalues.Expr{Name: "mbox_segment.off", C: "offsetof(struct mbox_segment, off)"},
		cvalues.Expr{Name: "mbox_segment.len", C: "offsetof(struct mbox_segment, len)"})
	for _, f := range []string{"status", "len"} {
		exprs = append(exprs,
			cvalues.Expr{Name: "mbox_reply." + f, C: "offsetof(struct mbox_reply, " + f + ")"},
			cvalues.Expr{Name: "mbox_reply." + f + ".size", C: "sizeof(((struct mbox_reply *)0)->" + f + ")"})
	}
	for _, f := range []string{"netns", "len", "is_set", "cmd", "pid", "flags", "optlen"} {
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
		"flag_trace":   FlagTrace,
	}
	cNames := map[string]string{
		"Netns": "netns", "Len": "len", "IsSet": "is_set", "Cmd": "cmd",
		"Pid": "pid", "Flags": "flags", "Optlen": "optlen",
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
	goLayout["mbox_reply.status"] = unsafe.Offsetof(Reply{}.Status)
	goLayout["mbox_reply.status.size"] = unsafe.Sizeof(Reply{}.Status)
	goLayout["mbox_reply.len"] = unsafe.Offsetof(Reply{}.Len)
	goLayout["mbox_reply.len.size"] = unsafe.Sizeof(Reply{}.Len)
	goLayout["mbox_segment"] = SegmentSize
	goLayout["mbox_segment.off"] = 0
	goLayout["mbox_segment.len"] = 4

	if !reflect.DeepEqual(c, goLayout) {
		t.Fatalf("kmod/msgfmt.h and package wire disagree:\nC:  %v\nGo: %v", c, goLayout)
	}
	if c["mbox_request"] != RequestSize || c["mbox_reply"] != ReplySize {
		t.Fatalf("RequestSize %d / ReplySize %d do not match C %d / %d",
			RequestSize, ReplySize, c["mbox_request"], c["mbox_reply"])
	}
}

func TestRoundTrip(t *testing.T) {
	want := Request{Netns: 0x1000000000004, Len: 5, IsSet: 1, Cmd: 64, Pid: 1234, Flags: FlagTrace, Optlen: 900}
	in := append(want.Encode(), 1, 2, 3, 4, 5, 0xEE)
	got, payload, err := ReadRequest(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if !bytes.Equal(payload, []byte{1, 2, 3, 4, 5}) {
		t.Fatalf("payload % x, want the 5 bytes after the header and no more", payload)
	}
}

func TestReadRequestErrors(t *testing.T) {
	full := Request{Cmd: 64}.Encode()
	withPayload := append(Request{Cmd: 64, Len: 4, Optlen: 4}.Encode(), 1, 2, 3)
	tests := []struct {
		name  string
		in    []byte
		isEOF bool
		short bool
	}{
		{"eof", nil, true, false},
		{"short", full[:5], false, true},
		{"one byte short", full[:RequestSize-1], false, true},
		{"payload one byte short", withPayload, false, true},
		{"is_set not boolean", Request{Cmd: 64, IsSet: 7}.Encode(), false, false},
		{"unknown flag", Request{Cmd: 64, Flags: 1 << 1}.Encode(), false, false},
		{"payload beyond optlen", Request{Cmd: 64, Len: 2, Optlen: 1}.Encode(), false, false},
		{"payload beyond the module's bound", Request{Cmd: 64, Len: MaxPayload + 1, Optlen: MaxPayload + 1}.Encode(), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ReadRequest(bytes.NewReader(tt.in))
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
	got := EncodeReply(-92, []byte{7, 8})
	want := []byte{0xa4, 0xff, 0xff, 0xff, 2, 0, 0, 0, 7, 8}
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
}

func TestEncodeSegments(t *testing.T) {
	got := EncodeSegments([]Segment{{Off: 1, Data: []byte{7}}, {Off: 0x100, Data: nil}})
	want := []byte{1, 0, 0, 0, 1, 0, 0, 0, 7, 0, 1, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
}

func TestCookies(t *testing.T) {
	got, err := Cookies([]byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{1, 1<<56 | 2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := Cookies(make([]byte, 9)); err == nil {
		t.Fatal("9 bytes decoded as cookies")
	}
}
