//go:build vmguest

package traffic

import (
	"fmt"
	"testing"
)

// TestClassified: chains of at least 4 rules of one shape (rules that
// differ only in their -s, -d or --dport values), which codegen serves
// by a hashed search (umh/internal/codegen/classify.go, minBucket), with
// repeated values (the first rule wins, the later one counts nothing),
// ACCEPT among DROPs, and values that no rule has.
func TestClassified(t *testing.T) {
	r := setupRouted(t)
	var dports, sources, dests, pairs, fwds, prefixes []flow
	for p := uint16(8700); p <= 8709; p++ {
		dports = append(dports, r.in(fmt.Sprintf("dport %d", p), rtDUT, p))
	}
	for i := 2; i <= 8; i++ {
		f := r.in(fmt.Sprintf("from 10.6.0.%d", i), rtDUT, 8720)
		f.src = rtAddr(i)
		sources = append(sources, f)
		f = r.in(fmt.Sprintf("from 10.6.0.%d /31", i), rtDUT, 8730)
		f.src = rtAddr(i)
		prefixes = append(prefixes, f)
	}
	for _, i := range []int{1, 11, 12, 13, 14, 15} {
		dests = append(dests, r.in(fmt.Sprintf("to 10.6.0.%d", i), rtAddr(i), 8740))
	}
	for _, i := range []int{3, 4, 5} {
		for p := uint16(8760); p <= 8762; p++ {
			f := r.in(fmt.Sprintf("from 10.6.0.%d to %d", i, p), rtDUT, p)
			f.src = rtAddr(i)
			pairs = append(pairs, f)
		}
	}
	for p := uint16(8780); p <= 8785; p++ {
		fwds = append(fwds, r.fwd(fmt.Sprintf("fwd dport %d", p), p))
	}
	c := func(n int) string { return count(n, 64) }
	const in, out = "2/2 arrived", "0/2 arrived"
	differential(t, nil, []dcase{
		{name: "destination ports",
			rules: `
-A INPUT -p udp --dport 8701 -j DROP
-A INPUT -p udp --dport 8702 -j ACCEPT
-A INPUT -p udp --dport 8703 -j DROP
-A INPUT -p udp --dport 8702 -j DROP
-A INPUT -p udp --dport 8705 -j DROP
-A INPUT -p udp --dport 8706 -j DROP
-A INPUT -p udp --dport 8708 -j DROP`,
			flows: dports,
			want: map[string]string{"dport 8700": in, "dport 8701": out, "dport 8702": in, "dport 8703": out,
				"dport 8704": in, "dport 8705": out, "dport 8706": out, "dport 8707": in, "dport 8708": out, "dport 8709": in},
			counters: map[string]string{"INPUT 1": c(2), "INPUT 2": c(2), "INPUT 4": "0 0", "INPUT 7": c(2), "INPUT policy": c(8)}},
		{name: "sources",
			rules: `
-A INPUT -s 10.6.0.3 -j DROP
-A INPUT -s 10.6.0.5 -j DROP
-A INPUT -s 10.6.0.4 -j ACCEPT
-A INPUT -s 10.6.0.6 -j DROP
-A INPUT -s 10.6.0.4 -j DROP
-A INPUT -s 10.6.0.8 -j DROP`,
			flows: sources,
			want: map[string]string{"from 10.6.0.2": in, "from 10.6.0.3": out, "from 10.6.0.4": in, "from 10.6.0.5": out,
				"from 10.6.0.6": out, "from 10.6.0.7": in, "from 10.6.0.8": out},
			counters: map[string]string{"INPUT 3": c(2), "INPUT 5": "0 0", "INPUT policy": c(4)}},
		{name: "source prefixes",
			policy: map[string]string{"INPUT": "DROP"},
			rules: `
-A INPUT -s 10.6.0.2/31 -j ACCEPT
-A INPUT -s 10.6.0.6/31 -j ACCEPT
-A INPUT -s 10.6.0.4/31 -j DROP
-A INPUT -s 10.6.0.8/31 -j ACCEPT
-A INPUT -s 10.6.0.10/31 -j ACCEPT`,
			flows: prefixes,
			want: map[string]string{"from 10.6.0.2 /31": in, "from 10.6.0.3 /31": in, "from 10.6.0.4 /31": out,
				"from 10.6.0.5 /31": out, "from 10.6.0.6 /31": in, "from 10.6.0.7 /31": in, "from 10.6.0.8 /31": in},
			counters: map[string]string{"INPUT 1": c(4), "INPUT 3": c(4), "INPUT 5": "0 0", "INPUT policy": "0 0"}},
		{name: "destinations",
			rules: `
-A INPUT -d 10.6.0.11 -j DROP
-A INPUT -d 10.6.0.12 -j ACCEPT
-A INPUT -d 10.6.0.13 -j DROP
-A INPUT -d 10.6.0.14 -j DROP
-A INPUT -d 10.6.0.12 -j DROP`,
			flows: dests,
			want: map[string]string{"to 10.6.0.1": in, "to 10.6.0.11": out, "to 10.6.0.12": in, "to 10.6.0.13": out,
				"to 10.6.0.14": out, "to 10.6.0.15": in},
			counters: map[string]string{"INPUT 2": c(2), "INPUT 5": "0 0", "INPUT policy": c(4)}},
		{name: "source and port pairs",
			rules: `
-A INPUT -s 10.6.0.3 -p udp --dport 8761 -j DROP
-A INPUT -s 10.6.0.4 -p udp --dport 8762 -j DROP
-A INPUT -s 10.6.0.5 -p udp --dport 8760 -j DROP
-A INPUT -s 10.6.0.3 -p udp --dport 8762 -j DROP
-A INPUT -s 10.6.0.4 -p udp --dport 8761 -j ACCEPT
-A INPUT -s 10.6.0.4 -p udp --dport 8761 -j DROP`,
			flows: pairs,
			want: map[string]string{"from 10.6.0.3 to 8760": in, "from 10.6.0.3 to 8761": out, "from 10.6.0.3 to 8762": out,
				"from 10.6.0.4 to 8760": in, "from 10.6.0.4 to 8761": in, "from 10.6.0.4 to 8762": out,
				"from 10.6.0.5 to 8760": out, "from 10.6.0.5 to 8761": in, "from 10.6.0.5 to 8762": in},
			counters: map[string]string{"INPUT 5": c(2), "INPUT 6": "0 0", "INPUT policy": c(8)}},
		{name: "forwarded destination ports in a user chain",
			policy: map[string]string{"FORWARD": "DROP"},
			rules: `
:fw - [0:0]
-A FORWARD -d 10.7.0.2 -j fw
-A fw -p udp --dport 8781 -j ACCEPT
-A fw -p udp --dport 8782 -j RETURN
-A fw -p udp --dport 8783 -j ACCEPT
-A fw -p udp --dport 8784 -j ACCEPT
-A fw -p udp --dport 8781 -j DROP
-A FORWARD -p udp --dport 8780 -j ACCEPT`,
			flows: fwds,
			want: map[string]string{"fwd dport 8780": in, "fwd dport 8781": in, "fwd dport 8782": out,
				"fwd dport 8783": in, "fwd dport 8784": in, "fwd dport 8785": out},
			counters: map[string]string{"FORWARD 1": c(12), "fw 2": c(2), "fw 5": "0 0", "FORWARD 2": c(2), "FORWARD policy": c(4)}},
	})
}
