package ipt

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNFQueue: NFQUEUE is checked as nfqueue_tg_check checks it, and what
// bpfilter cannot replicate (more than one queue) is refused with a reason.
func TestNFQueue(t *testing.T) {
	for _, tt := range []struct {
		name   string
		q      NFQ
		errno  unix.Errno
		bypass bool
	}{
		{"rev0", NFQ{Revision: 0, QueueNum: 5}, 0, false},
		{"rev1", NFQ{Revision: 1, QueueNum: 7, QueuesTotal: 1}, 0, false},
		{"rev1 no queues", NFQ{Revision: 1, QueuesTotal: 0}, unix.EINVAL, false},
		{"rev1 out of range", NFQ{Revision: 1, QueueNum: 65535, QueuesTotal: 2}, unix.ERANGE, false},
		{"rev1 balance", NFQ{Revision: 1, QueueNum: 1, QueuesTotal: 4}, unix.EOPNOTSUPP, false},
		{"rev2 bypass", NFQ{Revision: 2, QueueNum: 3, QueuesTotal: 1, Flags: 1}, 0, true},
		{"rev2 bad bypass", NFQ{Revision: 2, QueuesTotal: 1, Flags: 2}, unix.EINVAL, false},
		{"rev3 bypass", NFQ{Revision: 3, QueueNum: 9, QueuesTotal: 1, Flags: NFQFlagBypass}, 0, true},
		{"rev3 fanout one queue", NFQ{Revision: 3, QueuesTotal: 1, Flags: NFQFlagCPUFanout}, 0, false},
		{"rev3 fanout", NFQ{Revision: 3, QueuesTotal: 2, Flags: NFQFlagCPUFanout | NFQFlagBypass}, unix.EOPNOTSUPP, true},
		{"rev3 bad flags", NFQ{Revision: 3, QueuesTotal: 1, Flags: 4}, unix.EINVAL, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := NewFilterBuilder()
			tg := tt.q.Target()
			if err := b.Append("INPUT", RuleSpec{Target: &tg}); err != nil {
				t.Fatal(err)
			}
			blob, err := b.Replace(4, 0)
			if err != nil {
				t.Fatal(err)
			}
			h, err := ParseReplaceHeader(blob)
			if err != nil {
				t.Fatal(err)
			}
			tb, err := Translate(&h, blob[ReplaceSize:])
			if tt.errno != 0 {
				if !errors.Is(err, tt.errno) {
					t.Fatalf("got %v, want %v", err, tt.errno)
				}
				t.Logf("%v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			e := tb.Entries[tb.EntryAt(tb.HookEntry[HookLocalIn]).Index]
			q, ok := e.Target.Info.(*NFQ)
			if e.Target.Kind != TargetExt || !ok {
				t.Fatalf("target %+v", e.Target)
			}
			want := tt.q
			if want.Revision == 0 {
				want.QueuesTotal = 1
			}
			if *q != want || q.Bypass() != tt.bypass {
				t.Fatalf("decoded %+v (bypass %v), want %+v (%v)", *q, q.Bypass(), want, tt.bypass)
			}
		})
	}
	// A revision that xt_NFQUEUE does not have: EPROTOTYPE (the name is in
	// the UNSPEC list at other revisions).
	if _, err := findExtension(true, NFQueueTarget, 4); err == nil || err.Errno != unix.EPROTOTYPE {
		t.Fatalf("revision 4: %v", err)
	}
	if best, errno := FindRevision(NFQueueTarget, 2, true); best != 3 || errno != 0 {
		t.Fatalf("GET_REVISION NFQUEUE 2: %d %v", best, errno)
	}
}
