package datapath

import (
	"encoding/binary"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// refEval is ipt_do_table for one packet at one hook, written from
// net/ipv4/netfilter/ip_tables.c and the match modules of Linux 6.1,
// independently of the compiler. It adds to counters (by entry index) and
// returns the netfilter verdict.
func refEval(t *ipt.Table, hook int, p *pkt, counters []ipt.Counters) uint32 {
	return refEvalTrace(t, hook, p, counters, nil)
}

// fakeExt is the tests' kernel running a kernel match: it matches when
// the last byte of the source address shares a bit with the first data
// byte (a stand-in for any ->match(), whose calls must come exactly in
// ip_tables' order).
func fakeExt(x *ipt.KernelExt, p *pkt) bool { return p.src.As4()[3]&x.Data[0] != 0 }

// refEvalTrace is refEval that also appends to *trace the entry of each
// kernel extension it runs, in order.
func refEvalTrace(t *ipt.Table, hook int, p *pkt, counters []ipt.Counters, trace *[]int) uint32 {
	const nfDrop, nfAccept, nfQueue = 0, 1, 3
	skb := p.ip()
	fragoff := binary.BigEndian.Uint16(skb[6:]) & 0x1FFF
	thoff := int(skb[0]&0xF) * 4
	var indev, outdev [ipt.IfNameSize]byte
	copy(indev[:], p.in)
	copy(outdev[:], p.out)
	var stack []int
	hotdrop := false
	e := t.EntryAt(t.HookEntry[hook])
	for steps := 0; steps < 1<<20; steps++ {
		if !ipPacketMatch(skb, &indev, &outdev, &e.IP, fragoff != 0) {
			e = nextEntry(t, e)
			if e == nil {
				return nfDrop
			}
			continue
		}
		matched := true
		for i := range e.Matches {
			if x, ok := e.Matches[i].Info.(*ipt.KernelExt); ok {
				if trace != nil {
					*trace = append(*trace, e.Index)
				}
				if !fakeExt(x, p) {
					matched = false
					break
				}
				continue
			}
			if !refMatch(&e.Matches[i], p, skb, fragoff, thoff, &hotdrop) {
				matched = false
				break
			}
		}
		if !matched {
			if hotdrop {
				return nfDrop
			}
			if e = nextEntry(t, e); e == nil {
				return nfDrop
			}
			continue
		}
		counters[e.Index].Pcnt++
		counters[e.Index].Bcnt += uint64(len(skb))
		tg := &e.Target
		switch tg.Kind {
		case ipt.TargetError:
			return nfDrop // ipt_error: NF_DROP
		case ipt.TargetKernel:
			// LOG: XT_CONTINUE
			if trace != nil {
				*trace = append(*trace, e.Index)
			}
			if e = nextEntry(t, e); e == nil {
				return nfDrop
			}
			continue
		case ipt.TargetExt:
			q := tg.Info.(*ipt.NFQ) // nfqueue_tg, _v1 to _v3, one queue
			v := uint32(q.QueueNum)<<16 | nfQueue
			if (q.Revision == 2 && q.Flags != 0) || (q.Revision == 3 && q.Flags&1 != 0) {
				v |= 0x8000 // NF_VERDICT_FLAG_QUEUE_BYPASS
			}
			return v
		}
		v := tg.Verdict
		if v < 0 {
			if v != ipt.VerdictReturn {
				// NF_DROP, NF_ACCEPT, NF_QUEUE: -v - 1
				return uint32(-v - 1)
			}
			if len(stack) == 0 {
				e = t.EntryAt(t.Underflow[hook])
			} else {
				e = nextEntry(t, t.Entries[stack[len(stack)-1]])
				stack = stack[:len(stack)-1]
			}
			if e == nil {
				return nfDrop
			}
			continue
		}
		next := t.EntryAt(uint32(v))
		if uint32(v) != e.Offset+uint32(e.NextOffset) && !e.Goto() {
			if len(stack) >= t.StackSize {
				return nfDrop
			}
			stack = append(stack, e.Index)
		}
		if e = next; e == nil {
			return nfDrop
		}
	}
	return nfDrop
}

func nextEntry(t *ipt.Table, e *ipt.Entry) *ipt.Entry {
	if e.Index+1 >= len(t.Entries) {
		return nil
	}
	return t.Entries[e.Index+1]
}

func invf(inv uint8, flag uint8, b bool) bool { return b != (inv&flag != 0) }

func ifnameDiffers(a, b, m *[ipt.IfNameSize]byte) bool {
	for i := range a {
		if (a[i]^b[i])&m[i] != 0 {
			return true
		}
	}
	return false
}

func ipPacketMatch(skb []byte, in, out *[ipt.IfNameSize]byte, ip *ipt.IP, isfrag bool) bool {
	le := binary.LittleEndian
	saddr, daddr := le.Uint32(skb[12:]), le.Uint32(skb[16:])
	if invf(ip.InvFlags, ipt.InvSrcIP, saddr&le.Uint32(ip.SrcMask[:]) != le.Uint32(ip.Src[:])) ||
		invf(ip.InvFlags, ipt.InvDstIP, daddr&le.Uint32(ip.DstMask[:]) != le.Uint32(ip.Dst[:])) {
		return false
	}
	if invf(ip.InvFlags, ipt.InvViaIn, ifnameDiffers(in, &ip.InIface, &ip.InIfaceMask)) {
		return false
	}
	if invf(ip.InvFlags, ipt.InvViaOut, ifnameDiffers(out, &ip.OutIface, &ip.OutIfaceMask)) {
		return false
	}
	if ip.Proto != 0 && invf(ip.InvFlags, ipt.InvProto, uint16(skb[9]) != ip.Proto) {
		return false
	}
	if invf(ip.InvFlags, ipt.InvFrag, ip.Flags&ipt.FlagFrag != 0 && !isfrag) {
		return false
	}
	return true
}

// header is skb_header_pointer: n bytes at off, or nil.
func header(skb []byte, off, n int) []byte {
	if off+n > len(skb) {
		return nil
	}
	return skb[off : off+n]
}

func portMatch(lo, hi, p uint16, inv bool) bool { return (p >= lo && p <= hi) != inv }

func refMatch(m *ipt.Match, p *pkt, skb []byte, fragoff uint16, thoff int, hotdrop *bool) bool {
	be := binary.BigEndian
	switch x := m.Info.(type) {
	case *ipt.Comment:
		return true
	case *ipt.State:
		return refState(x, p.ct)
	case *ipt.Conntrack:
		return refConntrack(x, p.ct)
	case *ipt.TCP:
		if fragoff != 0 {
			if fragoff == 1 {
				*hotdrop = true
			}
			return false
		}
		th := header(skb, thoff, 20)
		if th == nil {
			*hotdrop = true
			return false
		}
		if !portMatch(x.SrcPorts[0], x.SrcPorts[1], be.Uint16(th[0:]), x.InvFlags&ipt.TCPInvSrcPorts != 0) ||
			!portMatch(x.DstPorts[0], x.DstPorts[1], be.Uint16(th[2:]), x.InvFlags&ipt.TCPInvDstPorts != 0) {
			return false
		}
		if !invf(x.InvFlags, ipt.TCPInvFlags, th[13]&x.FlagMask == x.FlagCmp) {
			return false
		}
		if x.Option != 0 {
			doff := int(th[12]>>4) * 4
			if doff < 20 {
				*hotdrop = true
				return false
			}
			if !tcpFindOption(x.Option, skb, thoff, doff-20, x.InvFlags&ipt.TCPInvOption != 0, hotdrop) {
				return false
			}
		}
		return true
	case *ipt.UDP:
		if fragoff != 0 {
			return false
		}
		uh := header(skb, thoff, 8)
		if uh == nil {
			*hotdrop = true
			return false
		}
		return portMatch(x.SrcPorts[0], x.SrcPorts[1], be.Uint16(uh[0:]), x.InvFlags&ipt.UDPInvSrcPorts != 0) &&
			portMatch(x.DstPorts[0], x.DstPorts[1], be.Uint16(uh[2:]), x.InvFlags&ipt.UDPInvDstPorts != 0)
	case *ipt.ICMP:
		if fragoff != 0 {
			return false
		}
		ic := header(skb, thoff, 8)
		if ic == nil {
			*hotdrop = true
			return false
		}
		hit := x.Type == 0xFF || (ic[0] == x.Type && ic[1] >= x.Code[0] && ic[1] <= x.Code[1])
		return hit != (x.InvFlags&ipt.ICMPInv != 0)
	case *ipt.Multiport:
		if fragoff != 0 {
			return false
		}
		pp := header(skb, thoff, 4)
		if pp == nil {
			*hotdrop = true
			return false
		}
		return portsMatchV1(x, be.Uint16(pp[0:]), be.Uint16(pp[2:]))
	case *ipt.IPRange:
		saddr, daddr := be.Uint32(skb[12:]), be.Uint32(skb[16:])
		if x.Flags&ipt.IPRangeSrc != 0 {
			m := saddr < be.Uint32(x.SrcMin[:]) || saddr > be.Uint32(x.SrcMax[:])
			if m != (x.Flags&ipt.IPRangeSrcInv != 0) {
				return false
			}
		}
		if x.Flags&ipt.IPRangeDst != 0 {
			m := daddr < be.Uint32(x.DstMin[:]) || daddr > be.Uint32(x.DstMax[:])
			if m != (x.Flags&ipt.IPRangeDstInv != 0) {
				return false
			}
		}
		return true
	}
	panic("reference: unknown match " + m.Name)
}

// portsMatchV1 is ports_match_v1, with C's bool conversion of
// "true ^ invert" (invert is a u8).
func portsMatchV1(m *ipt.Multiport, src, dst uint16) bool {
	hitRet := (1 ^ m.Invert) != 0
	for i := 0; i < int(m.Count); i++ {
		s := m.Ports[i]
		e := s
		if m.PFlags[i] != 0 {
			i++
			e = m.Ports[i]
		}
		switch m.Flags {
		case ipt.MultiportSource:
			if src >= s && src <= e {
				return hitRet
			}
		case ipt.MultiportDestination:
			if dst >= s && dst <= e {
				return hitRet
			}
		case ipt.MultiportEither:
			if (src >= s && src <= e) || (dst >= s && dst <= e) {
				return hitRet
			}
		}
	}
	return m.Invert != 0
}

// tcpFindOption is tcp_find_option of Linux 6.1.
func tcpFindOption(option uint8, skb []byte, protoff, optlen int, invert bool, hotdrop *bool) bool {
	if optlen == 0 {
		return invert
	}
	op := header(skb, protoff+20, optlen)
	if op == nil {
		*hotdrop = true
		return false
	}
	for i := 0; i < optlen; {
		if op[i] == option {
			return !invert
		}
		if op[i] < 2 || i == optlen-1 {
			i++
		} else if op[i+1] != 0 {
			i += int(op[i+1])
		} else {
			i++
		}
	}
	return invert
}

// ctStateBit is the state bit of xt_state and xt_conntrack for ct (nil:
// the ctx carries no conntrack, as for a packet without an entry).
func ctStateBit(ct *ctInfo, untracked uint32) uint32 {
	switch {
	case ct != nil && ct.present != 0:
		return 1 << (ct.info%3 + 1) // XT_STATE_BIT
	case ct != nil && ct.info == 7: // IP_CT_UNTRACKED
		return untracked
	}
	return 1 // INVALID
}

// refState is state_mt.
func refState(x *ipt.State, ct *ctInfo) bool {
	return x.StateMask&ctStateBit(ct, ipt.StateUntracked) != 0
}

// refConntrack is conntrack_mt with conntrack_mt_v1..v3, for IPv4.
func refConntrack(x *ipt.Conntrack, ct *ctInfo) bool {
	mf, inv := x.MatchFlags, x.InvertFlags
	// flag: the condition of flag is checked and fails.
	fails := func(flag uint16, cond bool) bool { return mf&flag != 0 && cond == (inv&flag != 0) }
	bit := ctStateBit(ct, ipt.CTStateUntracked)
	present := ct != nil && ct.present != 0
	if mf&ipt.CTMatchState != 0 {
		if present {
			if ct.status&(1<<4) != 0 { // IPS_SRC_NAT
				bit |= ipt.CTStateSNAT
			}
			if ct.status&(1<<5) != 0 {
				bit |= ipt.CTStateDNAT
			}
		}
		if (uint32(x.StateMask)&bit != 0) == (inv&ipt.CTMatchState != 0) {
			return false
		}
	}
	if !present {
		return mf&ipt.CTMatchState != 0
	}
	le := binary.LittleEndian
	addrs := [4][2][16]byte{{x.OrigSrc, x.OrigSrcMask}, {x.OrigDst, x.OrigDstMask}, {x.ReplSrc, x.ReplSrcMask}, {x.ReplDst, x.ReplDstMask}}
	if fails(ipt.CTMatchDirection, ct.dir == 0) {
		return false
	}
	for i, flag := range []uint16{ipt.CTMatchOrigSrc, ipt.CTMatchOrigDst, ipt.CTMatchReplSrc, ipt.CTMatchReplDst} {
		a, m := le.Uint32(addrs[i][0][:]), le.Uint32(addrs[i][1][:])
		if fails(flag, (ct.addr[i]^a)&m == 0) {
			return false
		}
	}
	if fails(ipt.CTMatchProto, ct.proto == uint32(x.L4Proto)) {
		return false
	}
	ports := [4]uint16{x.OrigSrcPort, x.OrigDstPort, x.ReplSrcPort, x.ReplDstPort}
	highs := [4]uint16{x.OrigSrcPortHigh, x.OrigDstPortHigh, x.ReplSrcPortHigh, x.ReplDstPortHigh}
	for i, flag := range []uint16{ipt.CTMatchOrigSrcPrt, ipt.CTMatchOrigDstPrt, ipt.CTMatchReplSrcPrt, ipt.CTMatchReplDstPrt} {
		// ct.port is the tuple's __be16 read as a host-order u16.
		port := ct.port[i]>>8 | ct.port[i]<<8
		if x.Revision != 3 {
			if fails(flag, port == ports[i]) {
				return false
			}
		} else if mf&flag != 0 && (port >= ports[i] && port <= highs[i]) == (inv&flag != 0) {
			return false
		}
	}
	if fails(ipt.CTMatchStatus, uint32(x.StatusMask)&ct.status != 0) {
		return false
	}
	return !fails(ipt.CTMatchExpires, ct.expires >= x.ExpiresMin && ct.expires <= x.ExpiresMax)
}
