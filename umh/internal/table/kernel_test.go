package table

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/bpfilter/bpfilter/umh/internal/ipt/kerneltest"
)

// pair runs each call on bpfilter's Tables and, when the host allows, on
// the running kernel's ip_tables in a private network namespace, and
// expects the same status and the same buffer afterwards.
type pair struct {
	t *testing.T
	k *kerneltest.Kernel // nil: bpfilter only
	s *Tables
}

const testNS = 4026532000

func (p *pair) get(name string, cmd int, buf []byte, optlen int32, want int32) []byte {
	p.t.Helper()
	mem := &fakeMem{buf: append([]byte(nil), buf...), optlen: int(uint32(optlen))}
	status, reason := p.s.Sockopt(testNS, uint32(cmd), false, mem)
	if status != want {
		p.t.Errorf("%s: status %d (%s), want %d", name, status, reason, want)
	}
	if p.k != nil {
		kbuf := append([]byte(nil), buf...)
		ret, errno := p.k.GetLen(cmd, kbuf, optlen)
		kstatus := int32(ret)
		if errno != 0 {
			kstatus = -int32(errno)
		}
		if kstatus != status {
			p.t.Errorf("%s: kernel status %d, bpfilter %d (%s)", name, kstatus, status, reason)
		}
		if !bytes.Equal(kbuf, mem.buf) {
			p.t.Errorf("%s: buffer differs from the kernel's: %s", name, firstDiff(mem.buf, kbuf))
		}
	}
	return mem.buf
}

func (p *pair) set(name string, cmd int, buf []byte, want int32) {
	p.t.Helper()
	mem := newMem(append([]byte(nil), buf...))
	status, reason := p.s.Sockopt(testNS, uint32(cmd), true, mem)
	if status != want {
		p.t.Errorf("%s: status %d (%s), want %d", name, status, reason, want)
	}
	if p.k == nil {
		return
	}
	var errno unix.Errno
	if cmd == ipt.SoSetReplace {
		var old []byte
		old, errno = p.k.Replace(buf)
		if errno == 0 && status == 0 && (len(mem.counters) != 1 || !bytes.Equal(old, mem.counters[0])) {
			p.t.Errorf("%s: old counters %x, kernel %x", name, mem.counters, old)
		}
	} else {
		errno = p.k.Set(cmd, buf)
	}
	if -int32(errno) != status {
		p.t.Errorf("%s: kernel status %d, bpfilter %d (%s)", name, -int32(errno), status, reason)
	}
}

func named(name string, n int) []byte {
	b := make([]byte, n)
	copy(b, name)
	return b
}

func filled(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }

const (
	eINVAL          = -int32(unix.EINVAL)
	eAGAIN          = -int32(unix.EAGAIN)
	eNOPROTOOPT     = -int32(unix.ENOPROTOOPT)
	eFAULT          = -int32(unix.EFAULT)
	eNOENT          = -int32(unix.ENOENT)
	eLOOP           = -int32(unix.ELOOP)
	eNOMEM          = -int32(unix.ENOMEM)
	ePROTONOSUPPORT = -int32(unix.EPROTONOSUPPORT)
)

// replaceBlob is a libiptc-like replace of the filter table: INPUT gets a
// tcp rule with counters in the blob (ignored), a user chain, and a jump.
func replaceBlob(t testing.TB, numCounters uint32) []byte {
	t.Helper()
	b := ipt.NewFilterBuilder()
	if err := b.NewChain("web"); err != nil {
		t.Fatal(err)
	}
	tcp := ipt.NewMatch(&ipt.TCP{SrcPorts: [2]uint16{0, 0xFFFF}, DstPorts: [2]uint16{80, 80}})
	for _, r := range []struct {
		chain string
		spec  ipt.RuleSpec
	}{
		{"INPUT", ipt.RuleSpec{IP: ipt.IP{Proto: ipt.ProtoTCP}, Matches: []ipt.Match{tcp}, Jump: "web", Counters: ipt.Counters{Pcnt: 9, Bcnt: 99}}},
		{"web", ipt.RuleSpec{Jump: "ACCEPT", Comefrom: 0x1234}},
		{"OUTPUT", ipt.RuleSpec{Matches: []ipt.Match{ipt.NewMatch(&ipt.Comment{Text: "hello"})}, Jump: "DROP"}},
	} {
		if err := b.Append(r.chain, r.spec); err != nil {
			t.Fatal(err)
		}
	}
	blob, err := b.Replace(numCounters, 0)
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

// replaceEntries is the number of entries of replaceBlob's table.
const replaceEntries = 9

func TestSockoptAgainstKernel(t *testing.T) {
	p := &pair{t: t, k: kerneltest.Open(t), s: New()}
	runSockoptCases(p)
}

func TestSockoptCases(t *testing.T) {
	runSockoptCases(&pair{t: t, s: New()})
}

// runSockoptCases is a conversation with one fresh namespace, in order.
func runSockoptCases(p *pair) {
	t := p.t
	info := named("filter", ipt.GetInfoSize)
	// get_info
	fresh := p.get("GET_INFO", ipt.SoGetInfo, info, ipt.GetInfoSize, 0)
	if g, _ := ipt.ParseGetInfo(fresh); g.Size != 632 || g.NumEntries != 4 {
		t.Errorf("fresh table: %+v", g)
	}
	p.get("GET_INFO optlen 83", ipt.SoGetInfo, info, ipt.GetInfoSize-1, eINVAL)
	p.get("GET_INFO optlen 85", ipt.SoGetInfo, named("filter", 85), ipt.GetInfoSize+1, eINVAL)
	p.get("GET_INFO optlen -1", ipt.SoGetInfo, info, -1, eINVAL)
	g := append(named("filter\x00garbage", ipt.GetInfoSize-4), filled(4, 0xEE)...)
	p.get("GET_INFO name with garbage after NUL", ipt.SoGetInfo, g, ipt.GetInfoSize, 0)

	// get_entries
	ge := append(ipt.MarshalGetEntries("filter", 632), filled(632, 0xAA)...)
	p.get("GET_ENTRIES fresh", ipt.SoGetEntries, ge, int32(len(ge)), 0)
	p.get("GET_ENTRIES optlen 39", ipt.SoGetEntries, ge[:39], 39, eINVAL)
	p.get("GET_ENTRIES optlen -1", ipt.SoGetEntries, ge, -1, eINVAL)
	p.get("GET_ENTRIES optlen one short", ipt.SoGetEntries, ge, int32(len(ge)-1), eINVAL)
	small := append(ipt.MarshalGetEntries("filter", 600), filled(600, 0xAA)...)
	p.get("GET_ENTRIES wrong size", ipt.SoGetEntries, small, int32(len(small)), eAGAIN)
	p.get("GET_ENTRIES size 0", ipt.SoGetEntries, ipt.MarshalGetEntries("filter", 0), ipt.GetEntriesSize, eAGAIN)

	// get_revision
	rev := func(name string, r uint8) []byte { return ipt.MarshalGetRevision(name, r) }
	p.get("REVISION tcp 0", ipt.SoGetRevisionMatch, rev("tcp", 0), ipt.GetRevisionSize, 0)
	p.get("REVISION tcp 1", ipt.SoGetRevisionMatch, rev("tcp", 1), ipt.GetRevisionSize, ePROTONOSUPPORT)
	p.get("REVISION multiport 1", ipt.SoGetRevisionMatch, rev("multiport", 1), ipt.GetRevisionSize, 0)
	p.get("REVISION multiport 0", ipt.SoGetRevisionMatch, rev("multiport", 0), ipt.GetRevisionSize, ePROTONOSUPPORT)
	p.get("REVISION iprange 1", ipt.SoGetRevisionMatch, rev("iprange", 1), ipt.GetRevisionSize, 0)
	p.get("REVISION icmp 0", ipt.SoGetRevisionMatch, rev("icmp", 0), ipt.GetRevisionSize, 0)
	p.get("REVISION comment 0", ipt.SoGetRevisionMatch, rev("comment", 0), ipt.GetRevisionSize, 0)
	p.get("REVISION comment 2", ipt.SoGetRevisionMatch, rev("comment", 2), ipt.GetRevisionSize, ePROTONOSUPPORT)
	p.get("REVISION target ERROR", ipt.SoGetRevisionTarget, rev("ERROR", 0), ipt.GetRevisionSize, 0)
	p.get("REVISION target standard", ipt.SoGetRevisionTarget, rev("", 0), ipt.GetRevisionSize, 0)
	p.get("REVISION target standard 1", ipt.SoGetRevisionTarget, rev("", 1), ipt.GetRevisionSize, ePROTONOSUPPORT)
	p.get("REVISION optlen 29", ipt.SoGetRevisionMatch, rev("tcp", 0), ipt.GetRevisionSize-1, eINVAL)
	p.get("REVISION optlen 31", ipt.SoGetRevisionMatch, append(rev("tcp", 0), 0), ipt.GetRevisionSize+1, eINVAL)

	// do_replace
	blob := replaceBlob(t, 4)
	p.set("REPLACE optlen 95", ipt.SoSetReplace, blob[:ipt.ReplaceSize-1], eINVAL)
	p.set("REPLACE num_counters 0", ipt.SoSetReplace, replaceBlob(t, 0), eINVAL)
	p.set("REPLACE num_counters 5", ipt.SoSetReplace, replaceBlob(t, 5), eAGAIN)
	p.set("REPLACE num_counters overflow", ipt.SoSetReplace, replaceBlob(t, 1<<27), eNOMEM)
	p.set("REPLACE num_counters beyond xt_counters_alloc", ipt.SoSetReplace, replaceBlob(t, 1<<25+1), eNOMEM)
	p.set("REPLACE valid_hooks lie", ipt.SoSetReplace, liedBlob(t, blob), eINVAL)
	p.set("REPLACE", ipt.SoSetReplace, blob, 0)
	p.set("REPLACE again with the old count", ipt.SoSetReplace, blob, eAGAIN)

	info2 := p.get("GET_INFO after replace", ipt.SoGetInfo, info, ipt.GetInfoSize, 0)
	gi, _ := ipt.ParseGetInfo(info2)
	if gi.NumEntries != replaceEntries {
		t.Fatalf("entries after replace: %d", gi.NumEntries)
	}
	ge = append(ipt.MarshalGetEntries("filter", gi.Size), filled(int(gi.Size), 0x5A)...)
	p.get("GET_ENTRIES after replace", ipt.SoGetEntries, ge, int32(len(ge)), 0)

	// do_add_counters
	c := make([]ipt.Counters, replaceEntries)
	for i := range c {
		c[i] = ipt.Counters{Pcnt: uint64(i + 1), Bcnt: uint64(1000 * (i + 1))}
	}
	ac := ipt.MarshalCountersInfo("filter", c)
	p.set("ADD_COUNTERS optlen 40", ipt.SoSetAddCounters, ac[:ipt.CountersInfoSize], eINVAL)
	p.set("ADD_COUNTERS optlen 41", ipt.SoSetAddCounters, ac[:ipt.CountersInfoSize+1], eINVAL)
	p.set("ADD_COUNTERS one short", ipt.SoSetAddCounters, ac[:len(ac)-ipt.CountersSize], eINVAL)
	p.set("ADD_COUNTERS wrong number", ipt.SoSetAddCounters, ipt.MarshalCountersInfo("filter", c[:3]), eINVAL)
	p.set("ADD_COUNTERS", ipt.SoSetAddCounters, ac, 0)
	p.set("ADD_COUNTERS twice", ipt.SoSetAddCounters, ac, 0)
	p.get("GET_ENTRIES with counters", ipt.SoGetEntries, ge, int32(len(ge)), 0)

	// Back to a fresh-like table: the old counters come back doubled.
	p.set("REPLACE back", ipt.SoSetReplace, initialBlob(replaceEntries), 0)
	p.get("GET_ENTRIES at the end", ipt.SoGetEntries, append(ipt.MarshalGetEntries("filter", 632), filled(632, 0x11)...), 672, 0)

	// Refusals of the validator come through with their errno.
	p.set("REPLACE with a loop", ipt.SoSetReplace, loopBlob(t), eLOOP)
	p.set("REPLACE with an unknown match", ipt.SoSetReplace, unknownMatchBlob(t), eNOENT)
}
