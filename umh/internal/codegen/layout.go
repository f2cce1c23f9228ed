package codegen

import "encoding/binary"

// none marks the end of a list and "no rule" in the rules map and in the
// per-packet state. Rule indices stay far below it (maxRecords).
const none = 0x7FFFFFFF

// maxRecords bounds the number of records (entries plus continuation
// records): bpf_loop runs at most 1<<23 iterations, and a walk may visit
// every record once.
const maxRecords = 1<<23 - 2

// maxSteps is the bpf_loop bound of the outer loop (one step per matched
// entry or segment hop). A packet still undecided after that many steps
// is dropped; a table without loops never comes near it.
const maxSteps = 1 << 23

// A record is one value of the rules map: the ipt_ip part of an entry and
// one of its matches. Record i < NumEntries is entry i; an entry with more
// than one match continues in records after the entries (cont), whose
// ipt_ip part is zero and so matches every packet. Every field is a u32 so
// that the program loads each one with a single instruction; byte order is
// as noted.
const (
	recSrc     = 0   // ipt_ip.src, network order (as the packet holds it)
	recSmsk    = 4   // ipt_ip.smsk
	recDst     = 8   // ipt_ip.dst
	recDmsk    = 12  // ipt_ip.dmsk
	recIn      = 16  // iniface, 16 bytes
	recInMask  = 32  // iniface_mask
	recOut     = 48  // outiface
	recOutMask = 64  // outiface_mask
	recProto   = 80  // ipt_ip.proto
	recFlags   = 84  // ipt_ip.flags & IPT_F_FRAG
	recInv     = 88  // ipt_ip.invflags
	recCont    = 92  // next record of the same entry, or none
	recAction  = 96  // act*
	recTarget  = 100 // entry index of a jump or goto; the verdict of actQueue
	recSeg     = 104 // segment of the entry
	recKind    = 108 // kind* of the match held in this record
	recNeed    = 112 // transport bytes the match reads (hotdrop below that)
	recM       = 116 // match data, by kind:
	// kindPorts (tcp, udp): host-order port ranges, tcp flags
	recSptLo = recM + 0
	recSptHi = recM + 4
	recDptLo = recM + 8
	recDptHi = recM + 12
	recFMask = recM + 16
	recFCmp  = recM + 20
	recPInv  = recM + 24 // XT_TCP_INV_SRCPT, _DSTPT, _FLAGS (same bits for udp)
	recTCP   = recM + 28 // 1 for tcp: a fragment at offset 1 is hotdropped
	recOpt   = recM + 32 // tcp option kind to look for (0: none)
	// kindICMP
	recIType = recM + 0
	recICMin = recM + 4
	recICMax = recM + 8
	recIInv  = recM + 12
	// kindMultiport: which ports (mpSrc etc.), invert, 15 ranges of two
	// u16 (lo, hi); unused ranges are empty (lo > hi)
	recMPFlags  = recM + 0
	recMPInv    = recM + 4
	recMPRanges = recM + 8
	// kindIPRange: flags, host-order bounds
	recIRFlags = recM + 0
	recIRSMin  = recM + 4
	recIRSMax  = recM + 8
	recIRDMin  = recM + 12
	recIRDMax  = recM + 16

	recordSize = recMPRanges + 4*15 // 184
)

// Actions of an entry's target.
const (
	actDrop   = 0 // DROP, ERROR
	actAccept = 1
	actReturn = 2
	actJump   = 3 // push the entry, continue at target
	actGoto   = 4 // continue at target without a push
	actQueue  = 5 // QUEUE, NFQUEUE: the verdict (NF_QUEUE_NR, bypass) is the target
)

// Match kinds.
const (
	kindNone      = 0
	kindPorts     = 1
	kindICMP      = 2
	kindMultiport = 3
	kindIPRange   = 4
)

// Multiport: which of the packet's ports a range is compared with.
const (
	mpSrc    = 0 // XT_MULTIPORT_SOURCE
	mpDst    = 1 // XT_MULTIPORT_DESTINATION
	mpEither = 2 // XT_MULTIPORT_EITHER
)

// segs map value: a segment is a run of entries between chain starts.
const (
	segEnd   = 0  // last entry index of the segment
	segGHead = 4  // first entry of the segment's linear list, or none
	segGMask = 8  // u64: bit g set if group g has buckets in the segment
	segGPos  = 16 // place of the linear list in the lists map, or none
	segSize  = 24
)

// groups map value: the masks of a group's key, then the bits of the key
// fields (saddr, daddr, proto, ports) on which all the group's keys agree
// and their values.
const (
	grpSmask  = 0
	grpDmask  = 4
	grpPmask  = 8
	grpSpmask = 12
	grpDpmask = 16
	grpAMask  = 20 // 4 u32
	grpAVal   = 36 // 4 u32
	grpSize   = 52
)

// classes map value: a bucket's first entry and its place in the lists
// map (an array of entry indices, each list ended by none).
const (
	clsFirst = 0
	clsPos   = 4
	clsSize  = 8
)

// classes map key: a group's key for a segment.
const (
	keyGroup = 0
	keySeg   = 4
	keySaddr = 8
	keyDaddr = 12
	keyProto = 16
	keyPorts = 20 // sport<<16 | dport
	keySize  = 24
)

// counters map value (per CPU): struct xt_counters.
const (
	cntPackets = 0
	cntBytes   = 8
	cntSize    = 16
)

// The per-packet state, on the main program's stack; the callbacks get a
// pointer to it.
const (
	stSaddr   = 0  // network order
	stDaddr   = 4  // network order
	stSaddrH  = 8  // host order
	stDaddrH  = 12 // host order
	stProto   = 16 //
	stFragoff = 20 // ntohs(frag_off) & IP_OFFSET
	stL4len   = 24 // tot_len - ihl*4
	stSport   = 28 // host order; 0 unless the first 4 transport bytes are there
	stDport   = 32
	stTFlags  = 36 // tcp flags byte (transport byte 13)
	stIType   = 40 // transport byte 0
	stICode   = 44 // transport byte 1
	stLen     = 48 // bytes to count: tot_len
	stPos     = 52 // entry index where the next search starts
	stIn      = 56 // input interface name, 16 bytes
	stOut     = 72 // output interface name, 16 bytes
	stVerdict = 88 // program return value once decided
	stSP      = 92 // jump stack depth
	stHotdrop = 96
	stSlow    = 100 // walk linearly for this packet
	stWC      = 104 // walk: candidate entry
	stWR      = 108 // walk: record of the candidate being evaluated
	stWBest   = 112 // walk: lowest matching entry found, or none
	stWEnd    = 116 // walk: last entry to consider
	stWLinear = 120 // walk: next candidate is c+1 (else the next in lists)
	stSeg     = 124
	stGMask   = 128 // u64
	stSegEnd  = 136
	stAction  = 140 // action of the best entry
	stTarget  = 144 // target of the best entry
	stGHead   = 148
	stOptSt   = 152 // tcp options: optNone, optScanned, optHotdrop
	stOptLen  = 156 // th->doff*4 - 20
	stOptBits = 160 // 256 bits: option kinds seen by tcp_find_option's walk
	stOpts    = 192 // the option bytes (40)
	stWL      = 232 // walk in lists: place of the candidate
	stGPos    = 236 // place of the segment's linear list
	stateSize = 240
)

// stOptSt values.
const (
	optNone    = 0 // no options (or no tcp header): tcp_find_option finds nothing
	optScanned = 1 // stOptBits holds the kinds found
	optHotdrop = 2 // doff < 5, or the options are cut short: hotdrop
)

func putU32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
func putU16(b []byte, off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
func putU64(b []byte, off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }
