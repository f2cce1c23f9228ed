//go:build linux

package nettest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// nfnetlink_queue's protocol (include/uapi/linux/netfilter/nfnetlink_queue.h),
// the little of it that a listener giving every packet one verdict needs.
const (
	nfnlSubsysQueue = 3
	nfqnlMsgPacket  = 0
	nfqnlMsgVerdict = 1
	nfqnlMsgConfig  = 2

	nfqaPacketHdr  = 1
	nfqaVerdictHdr = 2
	nfqaCfgCmd     = 1
	nfqaCfgParams  = 2

	nfqnlCfgCmdBind   = 1
	nfqnlCfgCmdUnbind = 2
	nfqnlCopyMeta     = 1

	nfDrop   = 0
	nfAccept = 1
)

// NFQueue is a listener on one nfnetlink queue of the calling thread's
// network namespace: it gives every packet queued there the same
// verdict, and counts them.
type NFQueue struct {
	fd     int
	num    uint16
	accept bool
	n      atomic.Int64
	stop   atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
}

// ListenNFQueue binds queue num and answers each of its packets with
// NF_ACCEPT (accept) or NF_DROP. Close unbinds it.
func ListenNFQueue(num uint16, accept bool) (*NFQueue, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("nfqueue socket: %w", err)
	}
	q := &NFQueue{fd: fd, num: num, accept: accept}
	if err := q.setup(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	q.wg.Add(1)
	go q.loop()
	return q, nil
}

func (q *NFQueue) setup() error {
	if err := unix.Bind(q.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("nfqueue bind: %w", err)
	}
	if err := unix.SetsockoptInt(q.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		return err
	}
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	if err := unix.SetsockoptTimeval(q.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	cmd := []byte{nfqnlCfgCmdBind, 0, 0, unix.AF_INET}
	if err := q.request(nfqnlMsgConfig, attr(nfqaCfgCmd, cmd)); err != nil {
		return fmt.Errorf("nfqueue bind queue %d: %w", q.num, err)
	}
	params := make([]byte, 5)
	binary.BigEndian.PutUint32(params, 0xffff)
	params[4] = nfqnlCopyMeta
	if err := q.request(nfqnlMsgConfig, attr(nfqaCfgParams, params)); err != nil {
		return fmt.Errorf("nfqueue params of queue %d: %w", q.num, err)
	}
	return nil
}

// attr is a netlink attribute, padded.
func attr(typ uint16, data []byte) []byte {
	l := 4 + len(data)
	b := make([]byte, (l+3)&^3)
	binary.LittleEndian.PutUint16(b[0:], uint16(l))
	binary.LittleEndian.PutUint16(b[2:], typ)
	copy(b[4:], data)
	return b
}

// message is an nfnetlink message of the queue subsystem for q's queue.
func (q *NFQueue) message(typ uint16, flags uint16, attrs []byte) []byte {
	b := make([]byte, 16+4+len(attrs))
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)))
	binary.LittleEndian.PutUint16(b[4:], nfnlSubsysQueue<<8|typ)
	binary.LittleEndian.PutUint16(b[6:], unix.NLM_F_REQUEST|flags)
	b[16] = unix.AF_UNSPEC
	binary.BigEndian.PutUint16(b[18:], q.num)
	copy(b[20:], attrs)
	return b
}

// request sends a message asking for an ack and waits for it.
func (q *NFQueue) request(typ uint16, attrs []byte) error {
	if err := unix.Sendto(q.fd, q.message(typ, unix.NLM_F_ACK, attrs), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	// Packets queued before the ack (at Close) are skipped, unanswered:
	// the kernel drops them when the queue is unbound.
	buf := make([]byte, 1<<16)
	for tries := 0; tries < 40; tries++ {
		n, _, err := unix.Recvfrom(q.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n < 20 || binary.LittleEndian.Uint16(buf[4:]) != unix.NLMSG_ERROR {
			continue
		}
		if e := int32(binary.LittleEndian.Uint32(buf[16:])); e != 0 {
			return unix.Errno(-e)
		}
		return nil
	}
	return errors.New("no ack")
}

func (q *NFQueue) fail(err error) {
	q.mu.Lock()
	if q.err == nil {
		q.err = err
	}
	q.mu.Unlock()
}

func (q *NFQueue) loop() {
	defer q.wg.Done()
	buf := make([]byte, 1<<16)
	for !q.stop.Load() {
		n, _, err := unix.Recvfrom(q.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			q.fail(fmt.Errorf("nfqueue receive: %w", err))
			return
		}
		for b := buf[:n]; len(b) >= 16; {
			l := int(binary.LittleEndian.Uint32(b))
			if l < 16 || l > len(b) {
				break
			}
			if binary.LittleEndian.Uint16(b[4:]) == nfnlSubsysQueue<<8|nfqnlMsgPacket && l >= 20 {
				if err := q.verdict(b[20:l]); err != nil {
					q.fail(err)
				}
			}
			b = b[(l+3)&^3:]
		}
	}
}

// verdict answers the packet whose attributes are attrs.
func (q *NFQueue) verdict(attrs []byte) error {
	for len(attrs) >= 4 {
		l := int(binary.LittleEndian.Uint16(attrs))
		typ := binary.LittleEndian.Uint16(attrs[2:]) & 0x3fff
		if l < 4 || l > len(attrs) {
			break
		}
		if typ == nfqaPacketHdr && l >= 8 {
			id := binary.BigEndian.Uint32(attrs[4:])
			v := make([]byte, 8)
			verdict := uint32(nfDrop)
			if q.accept {
				verdict = nfAccept
			}
			binary.BigEndian.PutUint32(v[0:], verdict)
			binary.BigEndian.PutUint32(v[4:], id)
			q.n.Add(1)
			return unix.Sendto(q.fd, q.message(nfqnlMsgVerdict, 0, attr(nfqaVerdictHdr, v)), 0,
				&unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		}
		attrs = attrs[(l+3)&^3:]
	}
	return errors.New("nfqueue: a packet without NFQA_PACKET_HDR")
}

// Count is how many packets q has answered.
func (q *NFQueue) Count() int { return int(q.n.Load()) }

// Close unbinds the queue and returns the first error the listener met.
func (q *NFQueue) Close() error {
	q.stop.Store(true)
	q.wg.Wait()
	cmd := []byte{nfqnlCfgCmdUnbind, 0, 0, unix.AF_INET}
	err := q.request(nfqnlMsgConfig, attr(nfqaCfgCmd, cmd))
	unix.Close(q.fd)
	q.mu.Lock()
	defer q.mu.Unlock()
	return errors.Join(q.err, err)
}
