package codegen

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// ErrUnsupported is wrapped by every refusal of a table that ip_tables
// accepts but this compiler cannot enforce exactly.
var ErrUnsupported = errors.New("codegen: not supported")

// entryRecords are the records of one entry: the first carries the ipt_ip
// part and the first match, each further one a further match.
type entryRecords struct {
	recs   [][]byte
	action uint32
	target uint32
}

// encodeEntry turns an entry into records, in match order (the order
// decides which match hotdrops first, as in ipt_do_table).
func encodeEntry(t *ipt.Table, e *ipt.Entry) (*entryRecords, error) {
	er := &entryRecords{}
	var err error
	if er.action, er.target, err = encodeTarget(t, e); err != nil {
		return nil, err
	}
	first := make([]byte, recordSize)
	encodeIP(first, &e.IP)
	er.recs = append(er.recs, first)
	for i := range e.Matches {
		m := &e.Matches[i]
		if _, ok := m.Info.(*ipt.Comment); ok {
			continue // matches every packet
		}
		rec := er.recs[len(er.recs)-1]
		if binary.LittleEndian.Uint32(rec[recKind:]) != kindNone {
			rec = make([]byte, recordSize)
			er.recs = append(er.recs, rec)
		}
		if err := encodeMatch(rec, m); err != nil {
			return nil, fmt.Errorf("entry %d (offset %d), match %d %q: %w", e.Index, e.Offset, i+1, m.Name, err)
		}
	}
	return er, nil
}

func encodeIP(b []byte, ip *ipt.IP) {
	copy(b[recSrc:], ip.Src[:])
	copy(b[recSmsk:], ip.SrcMask[:])
	copy(b[recDst:], ip.Dst[:])
	copy(b[recDmsk:], ip.DstMask[:])
	copy(b[recIn:], ip.InIface[:])
	copy(b[recInMask:], ip.InIfaceMask[:])
	copy(b[recOut:], ip.OutIface[:])
	copy(b[recOutMask:], ip.OutIfaceMask[:])
	putU32(b, recProto, uint32(ip.Proto))
	putU32(b, recFlags, uint32(ip.Flags&ipt.FlagFrag))
	putU32(b, recInv, uint32(ip.InvFlags))
}

func encodeTarget(t *ipt.Table, e *ipt.Entry) (action, target uint32, err error) {
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

func encodeMatch(b []byte, m *ipt.Match) error {
	switch x := m.Info.(type) {
	case *ipt.TCP:
		encodePorts(b, x.SrcPorts, x.DstPorts, uint32(x.InvFlags&ipt.TCPInvMask))
		putU32(b, recKind, kindPorts)
		putU32(b, recNeed, 20) // sizeof(struct tcphdr)
		putU32(b, recFMask, uint32(x.FlagMask))
		putU32(b, recFCmp, uint32(x.FlagCmp))
		putU32(b, recTCP, 1)
		putU32(b, recOpt, uint32(x.Option))
	case *ipt.UDP:
		encodePorts(b, x.SrcPorts, x.DstPorts, uint32(x.InvFlags&ipt.UDPInvMask))
		putU32(b, recKind, kindPorts)
		putU32(b, recNeed, 8) // sizeof(struct udphdr)
	case *ipt.ICMP:
		putU32(b, recKind, kindICMP)
		putU32(b, recNeed, 8) // sizeof(struct icmphdr)
		putU32(b, recIType, uint32(x.Type))
		putU32(b, recICMin, uint32(x.Code[0]))
		putU32(b, recICMax, uint32(x.Code[1]))
		putU32(b, recIInv, uint32(x.InvFlags&ipt.ICMPInv))
	case *ipt.Multiport:
		if x.Flags > ipt.MultiportEither || x.Count > ipt.MultiPorts {
			return fmt.Errorf("multiport flags %d count %d: %w", x.Flags, x.Count, ErrUnsupported)
		}
		putU32(b, recKind, kindMultiport)
		putU32(b, recNeed, 4) // two ports
		putU32(b, recMPFlags, uint32(x.Flags))
		putU32(b, recMPInv, uint32(x.Invert&1))
		if x.Invert > 1 {
			// ports_match_v1 returns true ^ invert and invert: a u8
			// beyond 1 is true both ways.
			putU32(b, recMPInv, 2)
		}
		for k, r := range multiportRanges(x) {
			putU16(b, recMPRanges+4*k, r[0])
			putU16(b, recMPRanges+4*k+2, r[1])
		}
	case *ipt.IPRange:
		putU32(b, recKind, kindIPRange)
		putU32(b, recIRFlags, uint32(x.Flags))
		putU32(b, recIRSMin, binary.BigEndian.Uint32(x.SrcMin[:4]))
		putU32(b, recIRSMax, binary.BigEndian.Uint32(x.SrcMax[:4]))
		putU32(b, recIRDMin, binary.BigEndian.Uint32(x.DstMin[:4]))
		putU32(b, recIRDMax, binary.BigEndian.Uint32(x.DstMax[:4]))
	default:
		return fmt.Errorf("match %q revision %d: %w", m.Name, m.Revision, ErrUnsupported)
	}
	return nil
}

func encodePorts(b []byte, sp, dp [2]uint16, inv uint32) {
	putU32(b, recSptLo, uint32(sp[0]))
	putU32(b, recSptHi, uint32(sp[1]))
	putU32(b, recDptLo, uint32(dp[0]))
	putU32(b, recDptHi, uint32(dp[1]))
	putU32(b, recPInv, inv)
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
