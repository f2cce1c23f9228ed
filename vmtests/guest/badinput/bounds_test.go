//go:build vmguest

package badinput

import (
	"bytes"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// maxLen is the module's bound on optlen (kmod/main.c BPFILTER_MAX_LEN):
// x_tables' XT_MAX_TABLE_SIZE plus a replace's header. Past it the module
// refuses before it allocates anything.
const maxLen = 512<<20 + replaceSize

// countedTable puts knownTable in place with counters 1/100, 2/200, ...
// on its entries and returns what GET_INFO and GET_ENTRIES show of it.
func countedTable(t *testing.T, fd int) (snap, *table) {
	t.Helper()
	restoreTable(t, knownTable)
	s, err := getSnap(fd)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := parseTable(s)
	if err != nil {
		t.Fatal(err)
	}
	b := countersInfo("filter", tbl.num, int(tbl.num))
	for i := 0; i < int(tbl.num); i++ {
		le.PutUint64(b[countersInfoSize+i*counterSize:], uint64(i+1))
		le.PutUint64(b[countersInfoSize+i*counterSize+8:], uint64(100*(i+1)))
	}
	if e, err := send(fd, gt.SetAddCounters, withData(b)); err != nil || e != 0 {
		t.Fatalf("ADD_COUNTERS: %s %v", errName(e), err)
	}
	if s, err = getSnap(fd); err != nil {
		t.Fatal(err)
	}
	if tbl, err = parseTable(s); err != nil {
		t.Fatal(err)
	}
	return s, tbl
}

// bigCall is one sockopt call with an optlen past the module's bound, its
// optval in a mapping as large as optlen (not backed until touched), so
// that ip_tables can read as much of it as it wants.
type bigCall struct {
	name   string
	get    bool
	opt    int
	optlen int
	// fill writes the call's header at the start of optval.
	fill func(b []byte, tbl *table)
}

var bigCalls = []bigCall{
	{"SET_REPLACE: the table's own blob, optlen past the bound", false, gt.SetReplace, maxLen + 1,
		func(b []byte, tbl *table) { copy(b, tbl.replaceOf(0).bytes()) }},
	{"SET_REPLACE: the table's own blob, optlen INT_MAX", false, gt.SetReplace, 0x7fffffff,
		func(b []byte, tbl *table) { copy(b, tbl.replaceOf(0).bytes()) }},
	{"SET_REPLACE: size to match optlen past the bound", false, gt.SetReplace, maxLen + 1,
		func(b []byte, tbl *table) {
			r := tbl.replaceOf(0)
			r.size = maxLen + 1 - replaceSize
			copy(b, r.bytes())
		}},
	{"SET_ADD_COUNTERS: the table's num_counters, optlen past the bound", false, gt.SetAddCounters, maxLen + 1,
		func(b []byte, tbl *table) { copy(b, countersInfo("filter", tbl.num, 0)) }},
	{"SET_ADD_COUNTERS: num_counters to match optlen past the bound", false, gt.SetAddCounters,
		countersInfoSize + (maxLen+counterSize-1)/counterSize*counterSize,
		func(b []byte, tbl *table) {
			copy(b, countersInfo("filter", uint32((maxLen+counterSize-1)/counterSize), 0))
		}},
	{"GET_INFO: optlen past the bound", true, gt.GetInfo, maxLen + 1,
		func(b []byte, tbl *table) { putName(b, "filter") }},
	{"GET_ENTRIES: the table's size, optlen past the bound", true, gt.GetEntries, maxLen + 1,
		func(b []byte, tbl *table) { putName(b, "filter"); le.PutUint32(b[32:], tbl.size) }},
	{"GET_ENTRIES: size to match optlen past the bound", true, gt.GetEntries, maxLen + 1,
		func(b []byte, tbl *table) { putName(b, "filter"); le.PutUint32(b[32:], maxLen+1-getEntriesSize) }},
	{"GET_ENTRIES: size to match optlen INT_MAX", true, gt.GetEntries, 0x7fffffff,
		func(b []byte, tbl *table) { putName(b, "filter"); le.PutUint32(b[32:], 0x7fffffff-getEntriesSize) }},
}

// TestOversizeRequests: a SET_REPLACE, ADD_COUNTERS, GET_INFO or
// GET_ENTRIES whose optlen is past what any table can need. Each gets the
// errno ip_tables gives for the same call in the same VM, and a refused
// call changes nothing: the table and its counters stay as they were, and
// bpfilter's umh stays the same process.
func TestOversizeRequests(t *testing.T) {
	defer gt.Use(t, gt.IPTables)
	got := map[gt.Backend][]syscall.Errno{}
	for _, b := range backends {
		t.Run(b.String(), func(t *testing.T) {
			gt.Use(t, b)
			fd, err := gt.RawSocket()
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			pid := 0
			if b == gt.Bpfilter {
				pid = gt.UmhPid(t)
			}
			lenBox, lenReg, err := guarded(4)
			if err != nil {
				t.Fatal(err)
			}
			defer lenReg.free()
			for _, c := range bigCalls {
				base, tbl := countedTable(t, fd)
				mem, err := mapping(c.optlen, unix.PROT_READ|unix.PROT_WRITE)
				if err != nil {
					t.Fatal(err)
				}
				c.fill(mem.mem, tbl)
				start := time.Now()
				var e syscall.Errno
				if c.get {
					le.PutUint32(lenBox, uint32(c.optlen))
					e = getsockoptAt(fd, c.opt, mem.addr(), addrOf(lenBox))
				} else {
					e = setsockoptAt(fd, c.opt, mem.addr(), c.optlen)
				}
				took := time.Since(start)
				mem.free()
				got[b] = append(got[b], e)
				t.Logf("%s (optlen %d): %s in %v", c.name, c.optlen, errName(e), took.Round(time.Millisecond))
				if b == gt.Bpfilter {
					if err := sameUmh(pid); err != nil {
						t.Errorf("%s: %v", c.name, err)
					}
				}
				if err := gt.Check(b); err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				after, err := getSnap(fd)
				if err != nil {
					t.Fatalf("%s: reading the table after: %v", c.name, err)
				}
				if e != 0 && !after.equal(base) {
					t.Errorf("%s: refused with %s, and the table or its counters changed: %s", c.name, errName(e), base.diff(after))
				}
			}
		})
	}
	ipt, bpf := got[gt.IPTables], got[gt.Bpfilter]
	if len(ipt) != len(bigCalls) || len(bpf) != len(bigCalls) {
		t.Fatalf("answers: ip_tables %d, bpfilter %d, of %d calls", len(ipt), len(bpf), len(bigCalls))
	}
	var lines []string
	for i, c := range bigCalls {
		lines = append(lines, fmt.Sprintf("%-66s ip_tables %-8s bpfilter %s", c.name, errName(ipt[i]), errName(bpf[i])))
		if ipt[i] != bpf[i] {
			t.Errorf("%s (optlen %d): bpfilter answers %s, ip_tables %s", c.name, c.optlen, errName(bpf[i]), errName(ipt[i]))
		}
	}
	t.Logf("oversize calls:\n%s", strings.Join(lines, "\n"))
}

// counterWarnRe is the warning of a replace whose old counters could not
// be copied to the caller: ip_tables' (net_warn_ratelimited under its
// pr_fmt: "ip_tables: iptables: ...") and bpfilter's ("bpfilter: ...").
var counterWarnRe = regexp.MustCompile(`^(ip_tables: iptables|bpfilter): counters copy to user failed while replacing table$`)

// TestCountersPointerUnmapped: a SET_REPLACE whose counters pointer points
// into unmapped memory is accepted as ip_tables accepts it (the new table
// is in place when the old counters are copied out): 0, with a warning in
// the kernel log, the new table installed, and nothing written anywhere
// else: not the blob, not the page right before the counters.
func TestCountersPointerUnmapped(t *testing.T) {
	defer gt.Use(t, gt.IPTables)
	const newRules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
		"-A INPUT -s 10.9.9.9/32 -j DROP\nCOMMIT\n"
	installed := map[gt.Backend]snap{}
	for _, b := range backends {
		t.Run(b.String(), func(t *testing.T) {
			gt.Use(t, b)
			fd, err := gt.RawSocket()
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			pid := 0
			if b == gt.Bpfilter {
				pid = gt.UmhPid(t)
			}
			// The blob to install: newRules' own, taken from the
			// table, then knownTable put back with counters.
			restoreTable(t, newRules)
			s, err := getSnap(fd)
			if err != nil {
				t.Fatal(err)
			}
			next, err := parseTable(s)
			if err != nil {
				t.Fatal(err)
			}
			_, cur := countedTable(t, fd)

			// A readable, writable page, then an inaccessible one
			// where the counters are to go.
			canary, reg, err := guarded(pageSize)
			if err != nil {
				t.Fatal(err)
			}
			defer reg.free()
			for i := range canary {
				canary[i] = 0x5a
			}
			ctr := addrOf(canary) + uintptr(pageSize)
			r := next.replaceOf(ctr)
			r.numCounters = cur.num
			blob := r.bytes()
			buf, breg, err := guarded(len(blob))
			if err != nil {
				t.Fatal(err)
			}
			defer breg.free()
			copy(buf, blob)

			k := gt.NewKmsg(t)
			e := setsockoptAt(fd, gt.SetReplace, addrOf(buf), len(buf))
			if e != 0 {
				t.Fatalf("SET_REPLACE with the counters pointer unmapped: %s, want 0", errName(e))
			}
			k.Wait(t, counterWarnRe, 5*time.Second)
			if !bytes.Equal(buf, blob) {
				t.Errorf("the blob was written to")
			}
			if i := bytes.IndexFunc(canary, func(r rune) bool { return r != 0x5a }); i >= 0 {
				t.Errorf("the page before the counters was written to at byte %d", i)
			}
			after, err := getSnap(fd)
			if err != nil {
				t.Fatal(err)
			}
			installed[b] = after
			if got := gt.MustRun(t, "iptables-legacy", "-S"); !strings.Contains(got, "-A INPUT -s 10.9.9.9/32 -j DROP\n") {
				t.Errorf("the new table is not in place: iptables-legacy -S:\n%s", got)
			}
			if b == gt.Bpfilter {
				if err := sameUmh(pid); err != nil {
					t.Error(err)
				}
			}
			gt.Ensure(t, b)
		})
	}
	if a, b := installed[gt.IPTables], installed[gt.Bpfilter]; a.info != nil && b.info != nil && !a.equal(b) {
		t.Errorf("the table installed differs between ip_tables and bpfilter: %s", a.diff(b))
	}
}

// progsSize is struct bpfilter_progs of kmod/msgfmt.h, heldSize struct
// bpfilter_held.
const (
	soSetProgs = 0x6270 // BPFILTER_SO_SET_PROGS
	soGetHeld  = 0x6270 // BPFILTER_SO_GET_HELD
	progsSize  = 8 + 8 + 4*3 + 4
	heldSize   = 8 + 8 + 4*3 + 4
)

// TestPrivateSockopts: the umh's own sockopts (BPFILTER_SO_SET_PROGS and
// BPFILTER_SO_GET_HELD at IPPROTO_IP) refuse anyone but the running umh
// with EPERM, root included, and change nothing: a SET_PROGS that would
// drop the initial namespace's programs leaves them in force (an OUTPUT
// rule still drops: the sender gets EPERM), GET_HELD writes nothing, and
// the table and the umh stay.
func TestPrivateSockopts(t *testing.T) {
	defer gt.Use(t, gt.IPTables)
	gt.Use(t, gt.Bpfilter)
	pid := gt.UmhPid(t)
	restoreTable(t, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"+
		"-A OUTPUT -d 127.0.0.1/32 -p udp -m udp --dport 9 -j DROP\nCOMMIT\n")
	rules := gt.MustRun(t, "iptables-legacy", "-S")
	dropped := func() syscall.Errno {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		err = unix.Sendto(fd, []byte("x"), 0, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}})
		return syscall.Errno(gt.ErrnoOf(err))
	}
	if e := dropped(); e != syscall.EPERM {
		t.Fatalf("UDP to 127.0.0.1:9 with an OUTPUT drop rule: %s, want EPERM", errName(e))
	}
	cookie, err := gt.NetnsCookie()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := gt.RawSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)

	progs := make([]byte, progsSize)
	le.PutUint64(progs[0:], cookie)
	le.PutUint64(progs[8:], 1)
	for i := 0; i < 4; i++ {
		le.PutUint32(progs[16+4*i:], 0xffffffff) // -1: no programs
	}
	if err := gt.Setsockopt(fd, soSetProgs, progs); !isErrno(err, syscall.EPERM) {
		t.Errorf("BPFILTER_SO_SET_PROGS as root, not the umh: %v, want EPERM", err)
	}
	held := bytes.Repeat([]byte{0xa5}, 16*heldSize)
	n, err := gt.Getsockopt(fd, soGetHeld, held)
	if !isErrno(err, syscall.EPERM) {
		t.Errorf("BPFILTER_SO_GET_HELD as root, not the umh: %v (length %d), want EPERM", err, n)
	}
	if bytes.Count(held, []byte{0xa5}) != len(held) {
		t.Errorf("BPFILTER_SO_GET_HELD wrote to the caller's buffer")
	}
	// The same from a thread of uid 65534 (no capabilities) on a socket
	// that root opened.
	unpriv := make(chan [2]error, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine, and
		// its uid with it.
		runtime.LockOSThread()
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, 65534, 65534, 65534); e != 0 {
			unpriv <- [2]error{fmt.Errorf("setresuid: %w", e), nil}
			return
		}
		h := bytes.Repeat([]byte{0xa5}, 16*heldSize)
		_, gerr := gt.Getsockopt(fd, soGetHeld, h)
		if bytes.Count(h, []byte{0xa5}) != len(h) {
			gerr = fmt.Errorf("%v, and it wrote to the buffer", gerr)
		}
		unpriv <- [2]error{gt.Setsockopt(fd, soSetProgs, progs), gerr}
	}()
	res := <-unpriv
	if !isErrno(res[0], syscall.EPERM) {
		t.Errorf("BPFILTER_SO_SET_PROGS as uid 65534: %v, want EPERM", res[0])
	}
	if !isErrno(res[1], syscall.EPERM) {
		t.Errorf("BPFILTER_SO_GET_HELD as uid 65534: %v, want EPERM", res[1])
	}

	if e := dropped(); e != syscall.EPERM {
		t.Errorf("after the refused SET_PROGS, UDP to 127.0.0.1:9: %s, want EPERM (the programs are gone)", errName(e))
	}
	if got := gt.MustRun(t, "iptables-legacy", "-S"); got != rules {
		t.Errorf("after the refused calls, iptables-legacy -S:\n%s\nwant:\n%s", got, rules)
	}
	if err := sameUmh(pid); err != nil {
		t.Error(err)
	}
	gt.Ensure(t, gt.Bpfilter)
}

func isErrno(err error, e syscall.Errno) bool {
	return gt.ErrnoOf(err) == int(e)
}
