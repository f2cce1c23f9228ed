//go:build !vmguest

package datapath

import (
	"path/filepath"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/cvalues"
)

// TestPinnedToLayout compares bpf/layout.h's #defines with the Go
// constants that stand for them (its types reach Go through bpf2go).
func TestPinnedToLayout(t *testing.T) {
	hdr, err := filepath.Abs("bpf/layout.h")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		"NONE":          none,
		"GROUP_NOPORTS": groupNoPorts,
		"NUM_HOOKS":     numHooks,
		"MAX_OPT_LEN":   maxOptLen,
		"MATCH_SIZE":    int64(len(record{}.M.Raw)),
		"MAX_GROUPS":    maxGroups,
		"MP_RANGES":     int64(len(datapathMultiportMatch{}.Ranges)),
	}
	var exprs []cvalues.Expr
	for c := range want {
		exprs = append(exprs, cvalues.Expr{Name: "v_" + c, C: c})
	}
	got := cvalues.Eval(t, []string{`"` + hdr + `"`}, exprs)
	for c, w := range want {
		if got["v_"+c] != w {
			t.Errorf("%s: C %d, Go %d", c, got["v_"+c], w)
		}
	}
}
