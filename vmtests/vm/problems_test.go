package vm

import (
	"strings"
	"testing"
)

// Lines as the 6.1 kernel prints them (format strings of mm/slub.c,
// mm/kmemleak.c, kernel/locking/lockdep.c, kernel/hung_task.c, ...).
func TestProblemLines(t *testing.T) {
	for _, c := range []struct {
		line string
		by   string // "" for a line that is no problem
	}{
		{"[   12.3] BUG: KASAN: slab-out-of-bounds in bpfilter_init+0x1c/0x90 [bpfilter]", "BUG/WARN"},
		{"[   12.3] BUG: KFENCE: use-after-free read in send_req+0x40/0x1a0 [bpfilter]", "BUG/WARN"},
		{"[    3.1] WARNING: possible circular locking dependency detected", "BUG/WARN"},
		{"[    3.1] BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580", "BUG/WARN"},
		{"[    3.1] kernel BUG at lib/list_debug.c:30!", "BUG/WARN"},
		{"[    3.1] BUG kmalloc-64 (Not tainted): Poison overwritten", "SLUB debug"},
		{"[   40.0] kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)", "kmemleak"},
		{"[    3.2] turning off the locking correctness validator.", "lockdep"},
		{"[  200.0] INFO: task rmmod:123 blocked for more than 120 seconds.", "hung task"},
		{"[   50.0] rcu: INFO: rcu_sched self-detected stall on CPU", "RCU stall"},
		{"[    9.9] general protection fault, probably for non-canonical address 0xdead: 0000 [#1] SMP", "oops"},
		{"[    9.9] Call Trace:", "oops"},
		{"[    0.0] kmemleak: Kernel memory leak detector initialized (mem pool available: 15676)", ""},
		{"[    0.0] kmemleak: Automatic memory scanning thread started", ""},
		{"[    0.0] KFENCE: initialized - using 2097152 bytes for 255 objects at 0x(____ptrval____)", ""},
		{"[    0.0] kasan: KernelAddressSanitizer initialized (generic)", ""},
		{"[    1.0] bpfilter: started", ""},
	} {
		got := problemLines(c.line)
		switch {
		case c.by == "" && len(got) != 0:
			t.Errorf("%q: reported as %q, is no problem", c.line, got)
		case c.by != "" && (len(got) != 1 || !strings.HasPrefix(got[0], c.by+": ")):
			t.Errorf("%q: got %q, want one line by %s", c.line, got, c.by)
		}
	}
}
