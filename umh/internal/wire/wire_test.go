package wire

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// cLayout compiles kmod/msgfmt.h on the host and returns the sizes and
// offsets it defines, keyed like "mbox_request.addr".
func cLayout(t *testing.T) map[string]uintptr {
	t.Helper()
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatalf("the C/Go pin test needs gcc: %v", err)
	}
	hdr, err := filepath.Abs("../../../kmod/msgfmt.h")
	if err != nil {
		t.Fatal(err)
	}
	var prog strings.Builder
	prog.WriteString("#include <stdio.h>\n#include <stddef.h>\n#include \"" + hdr + "\"\nint main(void) {\n")
	prog.WriteString(`printf("mbox_request %zu\n", sizeof(struct mbox_request));` + "\n")
	prog.WriteString(`printf("mbox_reply %zu\n", sizeof(struct mbox_reply));` + "\n")
	prog.WriteString(`printf("health %d\n", BPFILTER_CMD_HEALTH);` + "\n")
	prog.WriteString(`printf("netns_exit %d\n", BPFILTER_CMD_NETNS_EXIT);` + "\n")
	for _, f := range []string{"addr", "len", "is_set", "cmd", "pid", "netns", "reserved"} {
		prog.WriteString(`printf("mbox_request.` + f + ` %zu %zu\n", offsetof(struct mbox_request, ` + f +
			`), sizeof(((struct mbox_request *)0)->` + f + `));` + "\n")
	}
	prog.WriteString(`printf("mbox_reply.status %zu %zu\n", offsetof(struct mbox_reply, status), sizeof(((struct mbox_reply *)0)->status));` + "\n")
	prog.WriteString("return 0;\n}\n")

	dir := t.TempDir()
	src := filepath.Join(dir, "layout.c")
	if err := os.WriteFile(src, []byte(prog.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "layout")
	if out, err := exec.Command(cc, "-Wall", "-Werror", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("compile msgfmt.h: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uintptr{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		for i, v := range f[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("bad line %q", line)
			}
			key := f[0]
			if i == 1 {
				key += ".size"
			}
			m[key] = uintptr(n)
		}
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
	}
	cNames := map[string]string{
		"Addr": "addr", "Len": "len", "IsSet": "is_set", "Cmd": "cmd",
		"Pid": "pid", "Netns": "netns", "Reserved": "reserved",
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
	want := Request{Addr: 0x7ffd12345678, Len: 84, IsSet: 1, Cmd: 64, Pid: 1234, Netns: 4026531840}
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
	reserved := Request{Cmd: 64, Reserved: 1}.Encode()
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
		{"reserved not zero", reserved, false, false},
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
