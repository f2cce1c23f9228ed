package datapath

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// gsoSkbCtx is struct __sk_buff up to gso_size, as BPF_PROG_TEST_RUN
// takes it (the fields it does not accept stay zero).
type gsoSkbCtx struct {
	skbCtx
	TCIndex   uint32
	CB        [5]uint32
	Hash      uint32
	TCClassid uint32
	Data      uint32
	DataEnd   uint32
	NapiID    uint32
	Family    uint32
	RemoteIP4 uint32
	LocalIP4  uint32
	RemoteIP6 [4]uint32
	LocalIP6  [4]uint32
	RemotePrt uint32
	LocalPrt  uint32
	DataMeta  uint32
	FlowKeys  uint64
	Tstamp    uint64
	WireLen   uint32
	GsoSegs   uint32
	Sk        uint64
	GsoSize   uint32
}

// TestBigTCP: an IPv4 BIG TCP packet (Linux 6.3+: a GSO packet over
// 64 KiB) has tot_len 0, and its length is the skb's (skb_ip_totlen).
// ip_tables judges and counts it like any other; so does the program.
// The same header with tot_len 0 and no GSO is malformed, and let
// through unjudged, as before.
func TestBigTCP(t *testing.T) {
	needBPF(t)
	drop := rule().proto(6, false).m(dport(443)).j("DROP")
	tb := buildTable(t, nil, chainSpec{"OUTPUT", []ipt.RuleSpec{drop}})
	for _, linear := range []bool{false, true} {
		l := load(t, tb, Options{Linear: linear, Hooks: []Hook{Output()}})
		p := &pkt{src: addr("10.0.0.1"), dst: addr("10.0.0.2"), proto: 6, l4: tcpHdr(1000, 443, 0x10)}
		frame := p.frame()
		binary.BigEndian.PutUint16(frame[14+2:], 0) // tot_len
		run := func(gso uint32) uint32 {
			var c gsoSkbCtx
			c.Ifindex = 1
			c.GsoSegs, c.GsoSize = gso, 1448*gso
			ret, err := l.objs.Program(ipt.HookLocalOut).Run(&ebpf.RunOptions{Data: frame, Context: c})
			if err != nil {
				t.Fatalf("linear=%v: run: %v", linear, err)
			}
			return ret
		}
		if v := run(1); v != NFDrop {
			t.Errorf("linear=%v: a GSO packet with tot_len 0 to port 443: verdict %d, want DROP", linear, v)
		}
		if v := run(0); v != NFAccept {
			t.Errorf("linear=%v: tot_len 0 without GSO: verdict %d, want it let through unjudged", linear, v)
		}
		got, err := l.objs.ReadCounters()
		if err != nil {
			t.Fatal(err)
		}
		var rule ipt.Counters // the one entry with a match
		for i, e := range tb.Entries {
			if len(e.Matches) > 0 {
				rule = got[i]
			}
		}
		// The skb's length: here, the whole frame.
		if rule.Pcnt != 1 || rule.Bcnt != uint64(len(frame)) {
			t.Errorf("linear=%v: the rule counted %+v, want 1 packet of %d bytes", linear, rule, len(frame))
		}
	}
}
