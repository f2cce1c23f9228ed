package klog

import (
	"bytes"
	"testing"
)

func TestRecords(t *testing.T) {
	var b bytes.Buffer
	l := New(&b)
	l.SetTrace(true)
	l.Infof("started, pid %d", 42)
	l.Errorf("two\nlines\n")
	l.Warnf("w")
	l.Debugf("x")
	want := "<6>bpfilter_umh: started, pid 42\n<3>bpfilter_umh: two\n<3>bpfilter_umh: lines\n<4>bpfilter_umh: w\n<7>bpfilter_umh: x\n"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}

// TestTrace: trace lines are off by default, and go to a file of their
// own, so that the kernel's per-file rate limit of them leaves the notable
// lines alone.
func TestTrace(t *testing.T) {
	var notable, trace bytes.Buffer
	l := NewSplit(&notable, &trace)
	if l.Tracing() {
		t.Fatal("tracing is on by default")
	}
	l.Debugf("call 1")
	l.Warnf("refused")
	l.SetTrace(true)
	l.Debugf("call 2")
	l.Infof("stopping")
	l.SetTrace(false)
	l.Debugf("call 3")
	if want := "<4>bpfilter_umh: refused\n<6>bpfilter_umh: stopping\n"; notable.String() != want {
		t.Errorf("notable: got %q, want %q", notable.String(), want)
	}
	if want := "<7>bpfilter_umh: call 2\n"; trace.String() != want {
		t.Errorf("trace: got %q, want %q", trace.String(), want)
	}
}
