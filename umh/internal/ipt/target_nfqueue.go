package ipt

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// NFQUEUE target (xt_NFQUEUE.c, include/uapi/linux/netfilter/xt_NFQUEUE.h).
const (
	NFQueueTarget = "NFQUEUE"
	// The sizes of struct xt_NFQ_info (revision 0), _v1, _v2, _v3.
	nfqSizeV0 = 2
	nfqSizeV1 = 4
	nfqSizeV2 = 6
	nfqSizeV3 = 6

	NFQFlagBypass    = 0x01 // NFQ_FLAG_BYPASS
	NFQFlagCPUFanout = 0x02 // NFQ_FLAG_CPU_FANOUT
	nfqFlagMask      = 0x03 // NFQ_FLAG_MASK
)

// NFQ is the data of target NFQUEUE, any revision: struct xt_NFQ_info
// (0: QueueNum only), _v1 (QueuesTotal), _v2 (Flags is the bypass field),
// _v3 (Flags).
type NFQ struct {
	Revision    uint8
	QueueNum    uint16
	QueuesTotal uint16 // 1 for revision 0
	Flags       uint16
}

// Bypass reports --queue-bypass: with no listener on the queue, the
// packet goes on instead of being dropped.
func (q *NFQ) Bypass() bool {
	switch q.Revision {
	case 2:
		return q.Flags != 0 // nfqueue_tg_v2: if (info->bypass)
	case 3:
		return q.Flags&NFQFlagBypass != 0
	}
	return false
}

// Marshal lays out the target data of q's revision.
func (q *NFQ) Marshal() []byte {
	b := make([]byte, nfqSize(q.Revision))
	le := binary.LittleEndian
	le.PutUint16(b, q.QueueNum)
	if q.Revision >= 1 {
		le.PutUint16(b[2:], q.QueuesTotal)
	}
	if q.Revision >= 2 {
		le.PutUint16(b[4:], q.Flags)
	}
	return b
}

// Target is q as an xt_entry_target, as iptables lays it out.
func (q *NFQ) Target() Target {
	data := q.Marshal()
	size := EntryTargetSize + XTAlign(len(data))
	raw := make([]byte, size)
	binary.LittleEndian.PutUint16(raw, uint16(size))
	putName(raw[extNameOff:extRevisionOff], NFQueueTarget)
	raw[extRevisionOff] = q.Revision
	copy(raw[EntryTargetSize:], data)
	return Target{Name: NFQueueTarget, Revision: q.Revision, Raw: raw, Kind: TargetExt, Info: q}
}

func nfqSize(rev uint8) int {
	return [...]int{nfqSizeV0, nfqSizeV1, nfqSizeV2, nfqSizeV3}[rev]
}

func decodeNFQueue(rev uint8) func([]byte) any {
	return func(b []byte) any {
		le := binary.LittleEndian
		q := &NFQ{Revision: rev, QueueNum: le.Uint16(b), QueuesTotal: 1}
		if rev >= 1 {
			q.QueuesTotal = le.Uint16(b[2:])
		}
		if rev >= 2 {
			q.Flags = le.Uint16(b[4:])
		}
		return q
	}
}

// checkNFQueue is nfqueue_tg_check for revision rev (1 to 3; revision 0
// has no checkentry), then bpfilter's own refusal of what it cannot
// enforce exactly: more than one queue (--queue-balance) picks the queue
// by a hash with a seed random per boot, or by the CPU
// (--queue-cpu-fanout), which a program cannot reproduce as the kernel
// would.
func checkNFQueue(rev uint8) func(*IP, []byte) *Error {
	return func(_ *IP, data []byte) *Error {
		q := decodeNFQueue(rev)(data).(*NFQ)
		// nfqueue_tg_check reads struct xt_NFQ_info_v3 whatever the
		// revision: flags is the v2 bypass field, and past the data of
		// v1 (zeroed padding of XT_ALIGN).
		flags := binary.LittleEndian.Uint16(data[4:])
		if q.QueuesTotal == 0 {
			return errorf(einval, "target \"NFQUEUE\": number of total queues is 0")
		}
		if maxid := uint32(q.QueuesTotal) - 1 + uint32(q.QueueNum); maxid > 0xFFFF {
			return errorf(unix.ERANGE, "target \"NFQUEUE\": number of queues (%d) out of range (got %d)", q.QueuesTotal, maxid)
		}
		if rev == 2 && flags > 1 {
			return errorf(einval, "target \"NFQUEUE\" revision 2: bypass %d", flags)
		}
		if rev == 3 && flags&^nfqFlagMask != 0 {
			return errorf(einval, "target \"NFQUEUE\" revision 3: unknown flags %#x", flags)
		}
		if q.QueuesTotal > 1 {
			how := "--queue-balance (the kernel picks the queue by a hash with a random seed)"
			if rev == 3 && flags&NFQFlagCPUFanout != 0 {
				how = "--queue-cpu-fanout (the kernel picks the queue by the CPU)"
			}
			return errorf(unix.EOPNOTSUPP, "target \"NFQUEUE\": %s over %d queues is not supported by bpfilter",
				how, q.QueuesTotal)
		}
		return nil
	}
}
