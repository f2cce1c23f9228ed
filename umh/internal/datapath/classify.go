package datapath

import (
	"encoding/binary"
	"sort"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
)

// Classification. The entries are cut into segments at every chain start
// (hook entries and ERROR entries), which is where jumps land. Within a
// segment, an entry whose conditions include exact values (a source or
// destination under a mask, a protocol, a tcp/udp port or port range)
// gets keys: those values, under the masks of its shape. A port range is
// cut into the aligned blocks of ports that it touches, of a size that
// depends only on its width (portBlocks), so that ranges of similar width
// share one shape whatever their alignment, and small ranges share the
// shape of exact ports: the entry gets one key per block. The entries of
// one shape form a group; each (group, segment, key) is a bucket in a hash
// map whose value is the bucket's place in the lists map, where the
// bucket's entries follow in entry order, ended by none. Every other entry
// of the segment is on the segment's linear list, in the lists map too.
//
// The keys are complete: a packet that an entry matches has one of the
// entry's keys under the entry's group masks. So the first entry at or
// after a position that matches a packet is the lowest of, for each
// group, the first entry of the packet's bucket that matches (each
// candidate is checked in full), and the first entry of the linear list
// that matches. The cost of a search is one hash lookup per group present
// in the segment, plus the candidates checked, whatever the number of
// entries. Each group also has the bits on which all its keys agree: a
// packet whose key differs there has no bucket, and the group is skipped
// without a hash lookup.
//
// Skipping an entry is only sound when it could neither hotdrop the packet
// nor reach a kernel match (whose ->match() may have side effects). A
// kernel match ends the matches an entry's keys come from: an entry's keys
// only come from its ipt_ip part and the port matches before its first
// kernel match. A match can hotdrop a packet whatever its ports (a tcp
// header cut short, a tcp fragment at offset 1, tcp options cut short, or
// any port before a tcp option check): for the packets that could hotdrop
// (the program's risky), each group with port masks also has, per key
// without the ports, a bucket of all its entries with that key
// (groupNoPorts), where the program looks instead. Its candidates are
// checked in full; the first one that matches or hotdrops ends the search.

// maxGroups is the number of groups a segment mask can name.
const maxGroups = 64

// minBucket is the number of entries of one shape in a segment below
// which they go on the linear list: a hash lookup costs about as much as
// checking a few entries.
const minBucket = 4

// maxBlocks is the most blocks a port range is cut into, and the most keys
// an entry gets.
const maxBlocks = 4

type shape struct {
	smask, dmask, pmask, spmask, dpmask uint32
}

func (s shape) zero() bool { return s == shape{} }

type classKey struct {
	group, seg, saddr, daddr, proto, ports uint32
}

func (k classKey) bpf() clsKey {
	return clsKey{Group: k.group, Seg: k.seg, Saddr: k.saddr, Daddr: k.daddr, Proto: k.proto, Ports: k.ports}
}

// fields are the key's values that packets decide (not group and segment).
func (k classKey) fields() [4]uint32 { return [4]uint32{k.saddr, k.daddr, k.proto, k.ports} }

// entryShape is the shape of an entry and its keys (values under the
// shape; group and segment left zero). An entry without a shape has one
// zero key.
func entryShape(e *ipt.Entry) (shape, []classKey) {
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
	keys := []classKey{k}
	// The first tcp or udp match with a non-inverted port or port range,
	// before any kernel match.
	for i := range e.Matches {
		var sp, dp [2]uint16
		var inv uint8
		switch x := e.Matches[i].Info.(type) {
		case *ipt.KernelExt:
			return s, keys
		case *ipt.TCP:
			sp, dp, inv = x.SrcPorts, x.DstPorts, x.InvFlags
		case *ipt.UDP:
			sp, dp, inv = x.SrcPorts, x.DstPorts, x.InvFlags
		default:
			continue
		}
		var sm, dm uint32
		var sb, db []uint32
		if inv&ipt.TCPInvSrcPorts == 0 {
			sm, sb = portBlocks(sp)
		}
		if inv&ipt.TCPInvDstPorts == 0 {
			dm, db = portBlocks(dp)
		}
		// At most maxBlocks keys: of two ranges, the one cut in fewer
		// blocks if both together are too many.
		if sm != 0 && dm != 0 && len(sb)*len(db) > maxBlocks {
			if len(sb) < len(db) {
				dm, db = 0, nil
			} else {
				sm, sb = 0, nil
			}
		}
		if sm|dm == 0 {
			continue
		}
		s.spmask, s.dpmask = sm, dm
		if sb == nil {
			sb = []uint32{0}
		}
		if db == nil {
			db = []uint32{0}
		}
		keys = keys[:0]
		for _, a := range sb {
			for _, b := range db {
				kk := k
				kk.ports = a<<16 | b
				keys = append(keys, kk)
			}
		}
		break
	}
	return s, keys
}

// maxBlockBits: ranges that need blocks of more than 1<<maxBlockBits
// ports are not keyed.
const maxBlockBits = 14

// portBlocks cuts the port range r into aligned blocks of 1<<b ports,
// b the smallest even number for which any range of r's width touches at
// most maxBlocks blocks: ranges of up to 4 ports are exact ports (mask
// 0xFFFF), of up to 13 blocks of 4, and so on. It returns the port mask
// and the blocks' first ports, or mask 0 for no useful key (an empty range
// matches no port and needs none).
func portBlocks(r [2]uint16) (uint32, []uint32) {
	if r[0] > r[1] {
		return 0, nil
	}
	w := uint32(r[1]) - uint32(r[0]) // width - 1
	for b := uint32(0); b <= maxBlockBits; b += 2 {
		if w > (maxBlocks-1)<<b {
			continue
		}
		mask := uint32(0xFFFF) << b & 0xFFFF
		var blocks []uint32
		for x := uint32(r[0]) >> b; x <= uint32(r[1])>>b; x++ {
			blocks = append(blocks, x<<b)
		}
		return mask, blocks
	}
	return 0, nil
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

// groupInfo is a keyed group: its masks, and the bits of the key fields
// (saddr, daddr, proto, ports) on which all its keys agree.
type groupInfo struct {
	shape
	agreeMask, agreeVal [4]uint32
}

// classification is the result of classify.
type classification struct {
	segOf   []uint32
	segEnds []uint32
	groups  []groupInfo         // keyed groups, by id
	group   []int               // by entry: its group id, -1 for the linear list
	keys    [][]classKey        // by entry (valid when group >= 0)
	heads   map[classKey]uint32 // bucket -> its place in lists
	noPorts int                 // of them, buckets without the ports (groupNoPorts)
	lists   []uint32            // buckets and linear lists, each ended by none
	ghead   []uint32            // by segment: place of its linear list in lists, or none
	gmask   []uint64            // by segment
	linear  int                 // entries on linear lists
	bucketN map[classKey]int    // bucket sizes (statistics)
}

// listFirst is the first entry of the list at place pos, none for none.
func (c *classification) listFirst(pos uint32) uint32 {
	if pos == none {
		return none
	}
	return c.lists[pos]
}

func classify(t *ipt.Table, linearOnly bool) *classification {
	n := len(t.Entries)
	c := &classification{group: make([]int, n), keys: make([][]classKey, n),
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
		c.groups = append(c.groups, groupInfo{shape: s})
	}
	// Buckets and linear lists, in entry order; buckets in the order of
	// their first entry, so that the layout is deterministic.
	bucketOf := make(map[classKey]int, n) // into bucketKeys and buckets
	var bucketKeys []classKey
	var buckets [][]uint32
	add := func(k classKey, i int) {
		j, have := bucketOf[k]
		if !have {
			j = len(buckets)
			bucketOf[k] = j
			bucketKeys, buckets = append(bucketKeys, k), append(buckets, nil)
		}
		if b := buckets[j]; len(b) == 0 || b[len(b)-1] != uint32(i) {
			buckets[j] = append(b, uint32(i))
		}
	}
	linear := make([][]uint32, nseg)
	seen := make([]bool, len(c.groups))
	for i := 0; i < n; i++ {
		seg := c.segOf[i]
		g, ok := id[shapes[i]]
		if !ok || count[segShape{seg, shapes[i]}] < minBucket {
			c.group[i] = -1
			linear[seg] = append(linear[seg], uint32(i))
			c.linear++
			continue
		}
		c.group[i] = g
		c.gmask[seg] |= 1 << g
		gi := &c.groups[g]
		for j := range c.keys[i] {
			k := &c.keys[i][j]
			k.group, k.seg = uint32(g), seg
			f := k.fields()
			if !seen[g] {
				seen[g] = true
				gi.agreeMask = [4]uint32{^uint32(0), ^uint32(0), ^uint32(0), ^uint32(0)}
				gi.agreeVal = f
			}
			for x := range f {
				gi.agreeMask[x] &^= f[x] ^ gi.agreeVal[x]
				gi.agreeVal[x] &= gi.agreeMask[x]
			}
			add(*k, i)
			if gi.spmask|gi.dpmask != 0 {
				np := *k
				np.group |= groupNoPorts
				np.ports = 0
				add(np, i)
			}
		}
	}
	c.heads = make(map[classKey]uint32, len(bucketKeys))
	for j, k := range bucketKeys {
		c.heads[k] = uint32(len(c.lists))
		if k.group&groupNoPorts != 0 {
			c.noPorts++
		} else {
			c.bucketN[k] = len(buckets[j])
		}
		c.lists = append(append(c.lists, buckets[j]...), none)
	}
	for s := range c.ghead {
		c.ghead[s] = none
		if len(linear[s]) > 0 {
			c.ghead[s] = uint32(len(c.lists))
			c.lists = append(append(c.lists, linear[s]...), none)
		}
	}
	return c
}
