package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// ErrUnsupported is wrapped by every refusal of a table that ip_tables
// accepts but this compiler cannot enforce exactly.
var ErrUnsupported = errors.New("datapath: not supported")

// Ext is a kernel extension that the programs call out to: ctx->callout
// is its index in Spec.Exts.
type Ext struct {
	Entry *ipt.Entry
	Match int // index in Entry.Matches, or -1 for the target
	Ext   *ipt.KernelExt
}

// entryRecords are the records of one entry: the first carries the ipt_ip
// part and the first match, each further one a further match.
type entryRecords struct {
	recs   []record
	action datapathAction
	target uint32
	ct     bool // a match reads conntrack
}

// encodeEntry turns an entry into records, in match order (the order
// decides which match hotdrops or calls out first, as in ipt_do_table).
// Kernel extensions get the next indexes in exts.
func encodeEntry(t *ipt.Table, e *ipt.Entry, exts *[]Ext) (*entryRecords, error) {
	er := &entryRecords{}
	var first record
	encodeIP(&first, &e.IP)
	er.recs = append(er.recs, first)
	for i := range e.Matches {
		m := &e.Matches[i]
		if _, ok := m.Info.(*ipt.Comment); ok {
			continue // matches every packet
		}
		rec := &er.recs[len(er.recs)-1]
		if rec.Kind != kindNone {
			er.recs = append(er.recs, record{})
			rec = &er.recs[len(er.recs)-1]
		}
		if k, ok := m.Info.(*ipt.KernelExt); ok {
			rec.Kind = kindCallout
			setMatch(rec, datapathCalloutMatch{Ext: uint32(len(*exts))})
			*exts = append(*exts, Ext{Entry: e, Match: i, Ext: k})
			continue
		}
		switch m.Info.(type) {
		case *ipt.Conntrack, *ipt.State:
			er.ct = true
		}
		if err := encodeMatch(rec, m); err != nil {
			return nil, fmt.Errorf("entry %d (offset %d), match %d %q: %w", e.Index, e.Offset, i+1, m.Name, err)
		}
	}
	var err error
	if er.action, er.target, err = encodeTarget(t, e, exts); err != nil {
		return nil, err
	}
	return er, nil
}

func encodeIP(r *record, ip *ipt.IP) {
	le := binary.LittleEndian
	r.Src, r.Smsk = le.Uint32(ip.Src[:]), le.Uint32(ip.SrcMask[:])
	r.Dst, r.Dmsk = le.Uint32(ip.Dst[:]), le.Uint32(ip.DstMask[:])
	r.In, r.InMask, r.Out, r.OutMask = ip.InIface, ip.InIfaceMask, ip.OutIface, ip.OutIfaceMask
	r.Proto = uint32(ip.Proto)
	r.Flags = uint32(ip.Flags & ipt.FlagFrag)
	r.Inv = uint32(ip.InvFlags)
}

func encodeTarget(t *ipt.Table, e *ipt.Entry, exts *[]Ext) (datapathAction, uint32, error) {
	switch e.Target.Kind {
	case ipt.TargetError:
		return actDrop, 0, nil // ipt_error: NF_DROP
	case ipt.TargetStandard:
	case ipt.TargetExt:
		if q, ok := e.Target.Info.(*ipt.NFQ); ok && q.QueuesTotal <= 1 {
			// nfqueue_tg*: one queue (ipt refuses more).
			return actQueue, QueueVerdict(q.QueueNum, q.Bypass()), nil
		}
		return 0, 0, fmt.Errorf("entry %d (offset %d): target %q revision %d: %w", e.Index, e.Offset, e.Target.Name, e.Target.Revision, ErrUnsupported)
	case ipt.TargetKernel:
		k, ok := e.Target.Info.(*ipt.KernelExt)
		if !ok {
			return 0, 0, fmt.Errorf("entry %d (offset %d): kernel target %q without data: %w", e.Index, e.Offset, e.Target.Name, ErrUnsupported)
		}
		*exts = append(*exts, Ext{Entry: e, Match: -1, Ext: k})
		return actCallout, uint32(len(*exts) - 1), nil
	default:
		return 0, 0, fmt.Errorf("entry %d (offset %d): target %q: %w", e.Index, e.Offset, e.Target.Name, ErrUnsupported)
	}
	switch v := e.Target.Verdict; {
	case v == ipt.VerdictAccept:
		return actAccept, 0, nil
	case v == ipt.VerdictDrop:
		return actDrop, 0, nil
	case v == ipt.VerdictQueue:
		// NF_QUEUE: queue 0, no bypass (nf_queue drops if nothing
		// listens).
		return actQueue, QueueVerdict(0, false), nil
	case v == ipt.VerdictReturn:
		return actReturn, 0, nil
	case v >= 0:
		if e.Jump < 0 || e.Jump >= len(t.Entries) {
			// A jump no hook reaches to no entry: never executed.
			return actDrop, 0, nil
		}
		if e.Jump != e.Index+1 && !e.Goto() {
			return actJump, uint32(e.Jump), nil
		}
		return actGoto, uint32(e.Jump), nil
	default:
		return 0, 0, fmt.Errorf("entry %d (offset %d): verdict %d: %w", e.Index, e.Offset, v, ErrUnsupported)
	}
}

func encodeMatch(r *record, m *ipt.Match) error {
	be, le := binary.BigEndian, binary.LittleEndian
	switch x := m.Info.(type) {
	case *ipt.TCP:
		r.Kind, r.Need = kindPorts, 20 // sizeof(struct tcphdr)
		setMatch(r, datapathPortsMatch{
			SptLo: uint32(x.SrcPorts[0]), SptHi: uint32(x.SrcPorts[1]),
			DptLo: uint32(x.DstPorts[0]), DptHi: uint32(x.DstPorts[1]),
			FlgMask: uint32(x.FlagMask), FlgCmp: uint32(x.FlagCmp),
			Inv: uint32(x.InvFlags & ipt.TCPInvMask), Tcp: 1, Option: uint32(x.Option),
		})
	case *ipt.UDP:
		r.Kind, r.Need = kindPorts, 8 // sizeof(struct udphdr)
		setMatch(r, datapathPortsMatch{
			SptLo: uint32(x.SrcPorts[0]), SptHi: uint32(x.SrcPorts[1]),
			DptLo: uint32(x.DstPorts[0]), DptHi: uint32(x.DstPorts[1]),
			Inv: uint32(x.InvFlags & ipt.UDPInvMask),
		})
	case *ipt.ICMP:
		r.Kind, r.Need = kindICMP, 8 // sizeof(struct icmphdr)
		setMatch(r, datapathIcmpMatch{Type: uint32(x.Type), CodeMin: uint32(x.Code[0]),
			CodeMax: uint32(x.Code[1]), Inv: uint32(x.InvFlags & ipt.ICMPInv)})
	case *ipt.Multiport:
		if x.Flags > ipt.MultiportEither || x.Count > ipt.MultiPorts {
			return fmt.Errorf("multiport flags %d count %d: %w", x.Flags, x.Count, ErrUnsupported)
		}
		r.Kind, r.Need = kindMultiport, 4 // two ports
		mp := datapathMultiportMatch{Which: datapathMpWhich(x.Flags), Inv: uint32(x.Invert & 1)}
		if x.Invert > 1 {
			// ports_match_v1 returns true ^ invert and invert: a u8
			// beyond 1 is true both ways.
			mp.Inv = 2
		}
		for k, p := range multiportRanges(x) {
			mp.Ranges[k] = datapathMpRange{Lo: p[0], Hi: p[1]}
		}
		setMatch(r, mp)
	case *ipt.IPRange:
		r.Kind = kindIPRange
		setMatch(r, datapathIprangeMatch{Flags: uint32(x.Flags),
			SrcMin: be.Uint32(x.SrcMin[:4]), SrcMax: be.Uint32(x.SrcMax[:4]),
			DstMin: be.Uint32(x.DstMin[:4]), DstMax: be.Uint32(x.DstMax[:4])})
	case *ipt.Conntrack:
		r.Kind = kindConntrack
		c := datapathConntrackMatch{ExpiresMin: x.ExpiresMin, ExpiresMax: x.ExpiresMax,
			L4proto: x.L4Proto, MatchFlags: x.MatchFlags, InvertFlags: x.InvertFlags,
			StateMask: x.StateMask, StatusMask: x.StatusMask, Revision: uint16(x.Revision)}
		for i, a := range [4][16]byte{x.OrigSrc, x.OrigDst, x.ReplSrc, x.ReplDst} {
			c.Addr[i] = le.Uint32(a[:4])
		}
		for i, a := range [4][16]byte{x.OrigSrcMask, x.OrigDstMask, x.ReplSrcMask, x.ReplDstMask} {
			c.Mask[i] = le.Uint32(a[:4])
		}
		// ipt.Conntrack has port numbers; ct_port compares revisions 1
		// and 2 with the tuple's __be16 as it is (layout.h: network
		// order), revision 3 in host order.
		c.Port = [4]uint16{x.OrigSrcPort, x.OrigDstPort, x.ReplSrcPort, x.ReplDstPort}
		if x.Revision != 3 {
			for i, p := range c.Port {
				c.Port[i] = le.Uint16(binary.BigEndian.AppendUint16(nil, p))
			}
		}
		c.PortHigh = [4]uint16{x.OrigSrcPortHigh, x.OrigDstPortHigh, x.ReplSrcPortHigh, x.ReplDstPortHigh}
		setMatch(r, c)
	case *ipt.State:
		r.Kind = kindState
		setMatch(r, datapathStateMatch{Mask: x.StateMask})
	default:
		return fmt.Errorf("match %q revision %d: %w", m.Name, m.Revision, ErrUnsupported)
	}
	return nil
}

// multiportRanges is ports_match_v1's view of the ports: up to 15 ranges
// (a single port is a range of one), padded with empty ranges.
func multiportRanges(m *ipt.Multiport) [ipt.MultiPorts][2]uint16 {
	var r [ipt.MultiPorts][2]uint16
	for k := range r {
		r[k] = [2]uint16{0xFFFF, 0} // empty
	}
	n := 0
	for i := 0; i < int(m.Count) && i < ipt.MultiPorts; i++ {
		s := m.Ports[i]
		if m.PFlags[i] != 0 && i+1 < ipt.MultiPorts {
			i++
			r[n] = [2]uint16{s, m.Ports[i]}
		} else {
			r[n] = [2]uint16{s, s}
		}
		n++
	}
	return r
}
