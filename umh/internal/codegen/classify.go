package codegen

import (
	"encoding/binary"
	"math/bits"
	"sort"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// Classification. The entries are cut into segments at every chain start
// (hook entries and ERROR entries), which is where jumps land. Within a
// segment, an entry whose conditions include exact values (a source or
// destination under a mask, a protocol, an exact tcp/udp port) gets a key:
// those values, under the masks of its shape. The entries of one shape
// form a group; each (group, segment, key) is a bucket in a hash map whose
// value is the bucket's first entry, the others following in entry order
// through the records' next field. Every other entry of the segment is on
// the segment's linear list.
//
// A key is complete: a packet that an entry matches has the entry's key
// under the entry's group masks. So the first entry at or after a position
// that matches a packet is the lowest of, for each group, the first entry
// of the packet's bucket that matches (each candidate is checked in full),
// and the first entry of the linear list that matches. The cost of a
// search is one hash lookup per group present in the segment, plus the
// candidates checked, whatever the number of entries.
//
// Skipping entries is only sound when no skipped entry could hotdrop the
// packet: the program walks every entry instead (slow path) for the
// packets where a match could hotdrop (a transport header shorter than the
// protocol's, a tcp fragment at offset 1).

// maxGroups is the number of groups a segment mask can name.
const maxGroups = 64

// minBucket is the number of entries of one shape in a segment below
// which they go on the linear list: a hash lookup costs about as much as
// checking a few entries.
const minBucket = 4

type shape struct {
	smask, dmask, pmask, spmask, dpmask uint32
}

func (s shape) zero() bool { return s == shape{} }

type classKey struct {
	group, seg, saddr, daddr, proto, ports uint32
}

func (k classKey) marshal() []byte {
	b := make([]byte, keySize)
	putU32(b, keyGroup, k.group)
	putU32(b, keySeg, k.seg)
	putU32(b, keySaddr, k.saddr)
	putU32(b, keyDaddr, k.daddr)
	putU32(b, keyProto, k.proto)
	putU32(b, keyPorts, k.ports)
	return b
}

// entryShape is the shape of an entry and its key values (under the shape).
func entryShape(e *ipt.Entry) (shape, classKey) {
	var s shape
	var k classKey
	le := binary.LittleEndian
	if e.IP.InvFlags&ipt.InvSrcIP == 0 {
		s.smask = le.Uint32(e.IP.SrcMask[:])
		k.saddr = le.Uint32(e.IP.Src[:]) & s.smask
	}
	if e.IP.InvFlags&ipt.InvDstIP == 0 {
		s.dmask = le.Uint32(e.IP.DstMask[:])
		k.daddr = le.Uint32(e.IP.Dst[:]) & s.dmask
	}
	if e.IP.Proto != 0 && e.IP.Proto <= 0xFF && e.IP.InvFlags&ipt.InvProto == 0 {
		s.pmask = 0xFF
		k.proto = uint32(e.IP.Proto)
	}
	// The first tcp or udp match with a non-inverted port or port range.
	// A range is keyed by the smallest aligned block of ports holding it
	// (a mask on the port): every port of the range has the key.
	for i := range e.Matches {
		var sp, dp [2]uint16
		var inv uint8
		switch x := e.Matches[i].Info.(type) {
		case *ipt.TCP:
			sp, dp, inv = x.SrcPorts, x.DstPorts, x.InvFlags
		case *ipt.UDP:
			sp, dp, inv = x.SrcPorts, x.DstPorts, x.InvFlags
		default:
			continue
		}
		if m := rangeMask(sp); m != 0 && inv&ipt.TCPInvSrcPorts == 0 {
			s.spmask = m
			k.ports |= uint32(sp[0]) & m << 16
		}
		if m := rangeMask(dp); m != 0 && inv&ipt.TCPInvDstPorts == 0 {
			s.dpmask = m
			k.ports |= uint32(dp[0]) & m
		}
		if s.spmask|s.dpmask != 0 {
			break
		}
	}
	return s, k
}

// segments cuts entries at chain starts: index 0, the valid hooks'
// entries, ERROR entries. It returns the segment of each entry and each
// segment's last entry.
func segments(t *ipt.Table) (segOf []uint32, ends []uint32) {
	n := len(t.Entries)
	start := make([]bool, n)
	if n > 0 {
		start[0] = true
	}
	for h := 0; h < ipt.NumHooks; h++ {
		if t.ValidHooks&(1<<h) != 0 {
			if e := t.EntryAt(t.HookEntry[h]); e != nil {
				start[e.Index] = true
			}
		}
	}
	for i, e := range t.Entries {
		if e.Target.Kind == ipt.TargetError {
			start[i] = true
		}
	}
	segOf = make([]uint32, n)
	seg := -1
	for i := 0; i < n; i++ {
		if start[i] {
			seg++
			if seg > 0 {
				ends = append(ends, uint32(i-1))
			}
		}
		segOf[i] = uint32(seg)
	}
	if n > 0 {
		ends = append(ends, uint32(n-1))
	}
	return segOf, ends
}

// classification is the result of classify.
type classification struct {
	segOf   []uint32
	segEnds []uint32
	groups  []shape             // keyed groups, by id
	group   []int               // by entry: its group id, -1 for the linear list
	keys    []classKey          // by entry (valid when group >= 0)
	heads   map[classKey]uint32 // bucket heads
	ghead   []uint32            // by segment: first entry of its linear list
	gmask   []uint64            // by segment
	next    []uint32            // by entry: next entry of its bucket or list
	linear  int                 // entries on linear lists
	bucketN map[classKey]int    // bucket sizes (statistics)
}

func classify(t *ipt.Table, linearOnly bool) *classification {
	n := len(t.Entries)
	c := &classification{group: make([]int, n), keys: make([]classKey, n), next: make([]uint32, n),
		heads: map[classKey]uint32{}, bucketN: map[classKey]int{}}
	c.segOf, c.segEnds = segments(t)
	nseg := len(c.segEnds)
	c.ghead = make([]uint32, nseg)
	c.gmask = make([]uint64, nseg)
	shapes := make([]shape, n)
	type segShape struct {
		seg uint32
		s   shape
	}
	count := map[segShape]int{}
	for i, e := range t.Entries {
		shapes[i], c.keys[i] = entryShape(e)
		count[segShape{c.segOf[i], shapes[i]}]++
	}
	// Shapes worth a group: enough entries in some segment. The most used
	// shapes get the maxGroups ids.
	total := map[shape]int{}
	var order []shape
	for i := range t.Entries {
		s := shapes[i]
		if linearOnly || s.zero() || count[segShape{c.segOf[i], s}] < minBucket {
			continue
		}
		if total[s] == 0 {
			order = append(order, s)
		}
		total[s]++
	}
	sort.SliceStable(order, func(a, b int) bool { return total[order[a]] > total[order[b]] })
	if len(order) > maxGroups {
		order = order[:maxGroups]
	}
	id := map[shape]int{}
	for g, s := range order {
		id[s] = g
	}
	c.groups = order
	// Lists, built backwards so that each is in entry order.
	for s := range c.ghead {
		c.ghead[s] = none
	}
	for i := n - 1; i >= 0; i-- {
		seg := c.segOf[i]
		g, ok := id[shapes[i]]
		if ok && count[segShape{seg, shapes[i]}] >= minBucket {
			k := c.keys[i]
			k.group, k.seg = uint32(g), seg
			c.keys[i] = k
			c.group[i] = g
			head, have := c.heads[k]
			if !have {
				head = none
			}
			c.next[i] = head
			c.heads[k] = uint32(i)
			c.bucketN[k]++
			c.gmask[seg] |= 1 << g
			continue
		}
		c.group[i] = -1
		c.next[i] = c.ghead[seg]
		c.ghead[seg] = uint32(i)
		c.linear++
	}
	return c
}

// maxRangeBits: ranges that need a block of more than 1<<maxRangeBits
// ports are not keyed.
const maxRangeBits = 12

// rangeMask is the port mask of the smallest aligned block holding the
// range r (0xFFFF for a single port), or 0 for no useful key.
func rangeMask(r [2]uint16) uint32 {
	if r[0] > r[1] {
		return 0 // matches no port: no key needed, none given
	}
	k := bits.Len16(r[0] ^ r[1])
	if k > maxRangeBits {
		return 0
	}
	return 0xFFFF << k & 0xFFFF
}
