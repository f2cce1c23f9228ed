package table

import (
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/bpfilter/bpfilter/umh/internal/ipt/kerneltest"
)

// FuzzSockopt: no call panics, whatever the command, buffer and optlen,
// and every status is 0 or a negative errno.
func FuzzSockopt(f *testing.F) {
	recs, err := kerneltest.ReadCaptureFile("../ipt/testdata/sequence.capture")
	if err != nil {
		f.Fatal(err)
	}
	for _, r := range recs {
		if r.Kind == kerneltest.Set || r.Kind == kerneltest.GetIn {
			f.Add(uint8(r.Opt), r.Kind == kerneltest.Set, r.Data, uint32(len(r.Data)))
		}
	}
	f.Fuzz(func(t *testing.T, cmd uint8, isSet bool, buf []byte, optlen uint32) {
		s := New()
		// Two calls: the second one sees what the first one installed.
		for i := 0; i < 2; i++ {
			mem := &fakeMem{buf: append([]byte(nil), buf...), optlen: int(optlen)}
			status, reason := s.Sockopt(1, uint32(cmd), isSet, mem)
			if status > 0 || status < -4095 {
				t.Fatalf("status %d (%s)", status, reason)
			}
			if status != 0 && reason == "" {
				t.Fatalf("status %d without a reason", status)
			}
		}
		tb, _ := s.Current(1)
		_ = tb.KernelEntries(nil)
		if tb.Size != uint32(len(tb.Encode())) || tb.NumEntries() == 0 {
			t.Fatalf("inconsistent table: size %d", tb.Size)
		}
		_ = ipt.ErrnoOf(nil)
	})
}
