//go:build !vmguest

package datapath

import (
	"path/filepath"
	"reflect"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/cvalues"
)

// TestPinnedToProgctx compiles kmod/progctx.h (and the kernel's
// netfilter.h for the verdicts it stands for) and compares it with the
// constants the programs are built with.
func TestPinnedToProgctx(t *testing.T) {
	hdr, err := filepath.Abs("../../../kmod/progctx.h")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		"sizeof(struct bpfilter_ctx)":   CtxSize,
		"BPFILTER_IFNAMSIZ":             int64(len(bpfCtx{}.In)),
		"BPFILTER_VERDICT_CALLOUT":      NFCallout,
		"BPFILTER_CTX_RESUME":           CtxResume,
		"BPFILTER_CTX_CT":               CtxCT,
		"BPFILTER_VERDICT_DROP":         NFDrop,
		"BPFILTER_VERDICT_ACCEPT":       NFAccept,
		"BPFILTER_VERDICT_QUEUE":        NFQueue,
		"BPFILTER_VERDICT_QUEUE_BYPASS": NFQueueBypass,
		"BPFILTER_VERDICT_QUEUE_SHIFT":  NFQueueShift,
		"NF_DROP":                       NFDrop,
		"NF_ACCEPT":                     NFAccept,
		"NF_QUEUE":                      NFQueue,
		"NF_VERDICT_FLAG_QUEUE_BYPASS":  NFQueueBypass,
		"NF_VERDICT_QBITS":              NFQueueShift,
		"NF_QUEUE_NR(513)":              int64(QueueVerdict(513, false)),
		"NF_QUEUE_NR(65535) | NF_VERDICT_FLAG_QUEUE_BYPASS": int64(QueueVerdict(65535, true)),
	}
	got := cvalues.EvalAll(t, []string{"<linux/netfilter.h>", `"` + hdr + `"`}, want)
	if !reflect.DeepEqual(got, want) {
		for k := range want {
			if got[k] != want[k] {
				t.Errorf("%s: C %d, Go %d", k, got[k], want[k])
			}
		}
	}
	if s := CtxSpec(); s.ValueSize != CtxSize || s.MaxEntries < 1 {
		t.Fatalf("ctx map spec %+v", s)
	}
}
