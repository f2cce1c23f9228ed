package klog

import (
	"bytes"
	"testing"
)

func TestRecords(t *testing.T) {
	var b bytes.Buffer
	l := New(&b)
	l.Infof("started, pid %d", 42)
	l.Errorf("two\nlines\n")
	l.Debugf("x")
	want := "<6>bpfilter_umh: started, pid 42\n<3>bpfilter_umh: two\n<3>bpfilter_umh: lines\n<7>bpfilter_umh: x\n"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}
