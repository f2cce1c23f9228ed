//go:build vmguest

package traffic

import (
	"fmt"
	"testing"

	nt "github.com/bpfilter/bpfilter/vmtests/guest/nettest"
)

// TestQueue: -j QUEUE (queue 0) and -j NFQUEUE, with and without
// --queue-bypass. With no listener on its queue a packet is dropped, or
// with the bypass flag goes on as accepted; with a listener (the test's,
// over nfnetlink_queue) the listener's verdict decides.
func TestQueue(t *testing.T) {
	r := setupRouted(t)
	rules := `
-A INPUT -p udp --dport 8600 -j QUEUE
-A INPUT -p udp --dport 8603 -j NFQUEUE --queue-num 3
-A INPUT -p udp --dport 8604 -j NFQUEUE --queue-num 4 --queue-bypass
-A FORWARD -p udp --dport 8613 -j NFQUEUE --queue-num 3
-A OUTPUT -p udp --dport 8623 -j NFQUEUE --queue-num 3`
	flows := []flow{
		r.in("queue 0", rtDUT, 8600), r.in("nfqueue 3", rtDUT, 8603), r.in("nfqueue 4 bypass", rtDUT, 8604),
		r.in("not queued", rtDUT, 8609), r.fwd("fwd nfqueue 3", 8613), r.out("out nfqueue 3", 8623),
	}
	listeners := func(accept bool, queues ...uint16) func(t *testing.T) func() []string {
		return func(t *testing.T) func() []string {
			var qs []*nt.NFQueue
			for _, n := range queues {
				var q *nt.NFQueue
				if err := r.dut.Do(func() (err error) { q, err = nt.ListenNFQueue(n, accept); return err }); err != nil {
					t.Fatalf("listener on queue %d: %v", n, err)
				}
				qs = append(qs, q)
			}
			return func() []string {
				var lines []string
				for i, q := range qs {
					lines = append(lines, fmt.Sprintf("listener on queue %d (accept %v): %d packets", queues[i], accept, q.Count()))
					if err := q.Close(); err != nil {
						t.Errorf("listener on queue %d: %v", queues[i], err)
					}
				}
				return lines
			}
		}
	}
	c := func(n int) string { return count(n, 64) }
	differential(t, []string{"nfnetlink_queue", "xt_NFQUEUE"}, []dcase{
		{name: "no listener", rules: rules, flows: flows,
			want: map[string]string{"queue 0": "0/2 arrived", "nfqueue 3": "0/2 arrived", "nfqueue 4 bypass": "2/2 arrived",
				"not queued": "2/2 arrived", "fwd nfqueue 3": "0/2 arrived", "out nfqueue 3": "0/2 arrived"},
			counters: map[string]string{"INPUT 1": c(2), "INPUT 2": c(2), "INPUT 3": c(2), "INPUT policy": c(2),
				"FORWARD 1": c(2), "OUTPUT 1": c(2)}},
		{name: "listeners accept", rules: rules, flows: flows, setup: listeners(true, 0, 3, 4),
			want: map[string]string{"queue 0": "2/2 arrived", "nfqueue 3": "2/2 arrived", "nfqueue 4 bypass": "2/2 arrived",
				"not queued": "2/2 arrived", "fwd nfqueue 3": "2/2 arrived", "out nfqueue 3": "2/2 arrived"},
			counters: map[string]string{"INPUT 1": c(2), "INPUT 2": c(2), "INPUT 3": c(2), "INPUT policy": c(2)}},
		{name: "listeners drop", rules: rules, flows: flows, setup: listeners(false, 0, 3, 4),
			want: map[string]string{"queue 0": "0/2 arrived", "nfqueue 3": "0/2 arrived", "nfqueue 4 bypass": "0/2 arrived",
				"not queued": "2/2 arrived", "fwd nfqueue 3": "0/2 arrived", "out nfqueue 3": "0/2 arrived"}},
		{name: "a listener on another queue", rules: rules, flows: flows, setup: listeners(true, 5),
			want: map[string]string{"queue 0": "0/2 arrived", "nfqueue 3": "0/2 arrived", "nfqueue 4 bypass": "2/2 arrived"}},
	})
}
