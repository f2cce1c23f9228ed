//go:build vmguest

package badinput

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

const (
	garbageWorkers = 4
	garbageCalls   = 1500 // per worker
	garbageBudget  = 3 * time.Minute
	wrSize         = 2 << 20  // the largest buffer-backed optlen
	roSize         = 64 << 20 // a read-only mapping, zeros after its first page
	kernelAddr     = 0xffffffff81000000
)

// Answers a sockopt may give (EPROTONOSUPPORT: GET_REVISION of a known
// extension in a revision the kernel does not have). EIO is not among
// them: the umh answers a request it panicked on with it.
var plausible = []syscall.Errno{0, syscall.EINVAL, syscall.EFAULT, syscall.ENOMEM, syscall.ENOENT,
	syscall.EAGAIN, syscall.ELOOP, syscall.EPROTOTYPE, syscall.EPROTONOSUPPORT, syscall.ENOPROTOOPT, syscall.ERANGE, syscall.E2BIG}

// scratch is a worker's memory for the calls: nothing the kernel or the
// umh writes can land anywhere else.
type scratch struct {
	wr     []byte // writable, ends at an inaccessible page
	wrReg  *region
	ro     *region // read-only; its first page is rewritten per call
	none   *region // one inaccessible page
	lenBox []byte  // getsockopt's optlen, writable
	lenReg *region
}

func newScratch() (*scratch, error) {
	s := &scratch{}
	var err error
	if s.wr, s.wrReg, err = guarded(wrSize); err != nil {
		return nil, err
	}
	if s.ro, err = mapping(roSize, unix.PROT_READ); err != nil {
		return nil, err
	}
	if s.none, err = mapping(pageSize, unix.PROT_NONE); err != nil {
		return nil, err
	}
	if s.lenBox, s.lenReg, err = guarded(4); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *scratch) free() {
	for _, r := range []*region{s.wrReg, s.ro, s.none, s.lenReg} {
		r.free()
	}
}

// fuzzer makes garbage calls, some of them near-valid, from what it knows
// of the installed table.
type fuzzer struct {
	rng   *rand.Rand
	tbl   *table
	blob  []byte // a valid SET_REPLACE blob of the table
	s     *scratch
	fd    int
	stats map[string]int
	bad   []string
}

func (f *fuzzer) pick(n int) int { return f.rng.IntN(n) }

// length picks an optlen: 0, tiny, around each struct's size, random, or
// huge.
func (f *fuzzer) length() int {
	near := func(n int) int { return n + f.pick(5) - 2 }
	switch f.pick(12) {
	case 0:
		return 0
	case 1:
		return 1 + f.pick(8)
	case 2:
		return near(getInfoSize)
	case 3:
		return near(getEntriesSize + int(f.tbl.size))
	case 4:
		return near(replaceSize + int(f.tbl.size))
	case 5:
		return near(countersInfoSize + int(f.tbl.num)*counterSize)
	case 6:
		return near(30) // struct xt_get_revision
	case 7, 8:
		return f.pick(4096)
	case 9:
		return f.pick(wrSize + 1)
	case 10:
		return near(getEntriesSize)
	}
	huge := []int{1 << 24, roSize, 1 << 30, 0x7fffffff, -1, -84, -1 << 31, 0x7ffffff0}
	return huge[f.pick(len(huge))]
}

// fill writes plausible-looking or random content for opt into b.
func (f *fuzzer) fill(b []byte, set bool, opt int) {
	for i := range b {
		b[i] = byte(f.rng.Uint32())
	}
	if f.pick(4) == 0 {
		return // all random
	}
	name := []string{"filter", "filter", "filter", "nat", "", "FILTER", "tcp", "udp", "icmp", "standard", "ERROR", "mark"}[f.pick(12)]
	hdr := make([]byte, tableNameLen)
	copy(hdr, name)
	switch {
	case set && opt == gt.SetReplace && f.pick(2) == 0:
		// The valid blob, mutated, with num_counters that the
		// table does not have: translated, then refused with
		// EAGAIN at the very end at best, never installed.
		blob := slices.Clone(f.blob)
		for n := 1 + f.pick(8); n > 0; n-- {
			blob[f.pick(len(blob))] = byte(f.rng.Uint32())
		}
		if f.pick(4) == 0 {
			le.PutUint32(blob[40:], uint32(len(b)-replaceSize)) // size fits optlen
		}
		le.PutUint32(blob[84:], f.tbl.num+1+uint32(f.pick(3)))
		le.PutUint64(blob[replaceCountersP:], uint64(f.s.none.addr()))
		copy(b, blob)
		return
	case set && opt == gt.SetAddCounters:
		if len(b) >= countersInfoSize {
			copy(b, hdr)
			num := f.tbl.num + uint32(f.pick(3)) - 1
			if f.pick(4) == 0 {
				num = f.rng.Uint32()
			}
			le.PutUint32(b[32:], num)
		}
		return
	case !set && opt == gt.GetEntries:
		if len(b) >= getEntriesSize {
			copy(b, hdr)
			size := f.tbl.size
			if f.pick(3) == 0 {
				size = f.rng.Uint32()
			} else if f.pick(2) == 0 && len(b) >= getEntriesSize {
				size = uint32(len(b) - getEntriesSize)
			}
			le.PutUint32(b[32:], size)
		}
		return
	case !set && (opt == gt.GetRevMatch || opt == gt.GetRevTarget):
		if len(b) >= 30 {
			clear(b[:29])
			copy(b[:29], name)
			b[29] = byte(f.pick(4))
		}
		return
	}
	copy(b, hdr[:min(len(hdr), len(b))])
	if set && opt == gt.SetReplace && len(b) >= replaceSize {
		le.PutUint32(b[84:], f.tbl.num)
		if f.pick(2) == 0 {
			le.PutUint32(b[40:], uint32(len(b)-replaceSize))
		}
		le.PutUint64(b[replaceCountersP:], uint64(f.s.none.addr()))
	}
}

// optval picks where optval points for an optlen of l, fills it, and
// returns a description.
func (f *fuzzer) optval(l int, set bool, opt int) (uintptr, string) {
	switch k := f.pick(20); {
	case k == 0:
		return 0, "NULL"
	case k == 1:
		return f.s.none.addr(), "unmapped"
	case k == 2:
		return kernelAddr, "kernel address"
	case k <= 4:
		// Read-only: a header, then zeros, up to roSize.
		page := f.s.ro.mem[:pageSize]
		unix.Mprotect(page, unix.PROT_READ|unix.PROT_WRITE)
		f.fill(page, set, opt)
		unix.Mprotect(page, unix.PROT_READ)
		return f.s.ro.addr(), "read-only"
	}
	// In the writable buffer, which ends at an inaccessible page: a
	// buffer shorter than optlen faults at its end.
	n := l
	if n < 0 || n > wrSize {
		n = f.pick(4096)
	} else if f.pick(8) == 0 {
		n = f.pick(n + 1) // shorter than optlen
	}
	buf := f.s.wr[wrSize-n:]
	f.fill(buf, set, opt)
	if f.pick(16) == 0 && n > 0 {
		// One byte off: optlen ends one byte into the guard page.
		return addrOf(buf) + 1, "writable, misaligned"
	}
	return addrOf(buf), fmt.Sprintf("writable %d", n)
}

func (f *fuzzer) one() {
	set := f.pick(3) == 0
	var opt int
	if set {
		opt = gt.SetReplace + f.pick(2)
	} else {
		opt = gt.GetInfo + f.pick(4)
	}
	l := f.length()
	ptr, where := f.optval(l, set, opt)
	var e syscall.Errno
	if set {
		e = setsockoptAt(f.fd, opt, ptr, l)
	} else {
		var lenp uintptr
		switch f.pick(16) {
		case 0:
			lenp = 0
		case 1:
			lenp = f.s.none.addr()
		case 2:
			lenp = f.s.ro.addr() // readable, not writable
		default:
			le.PutUint32(f.s.lenBox, uint32(int32(l)))
			lenp = addrOf(f.s.lenBox)
		}
		e = getsockoptAt(f.fd, opt, ptr, lenp)
	}
	kind := "get"
	if set {
		kind = "set"
	}
	f.stats[fmt.Sprintf("%s %d %s", kind, opt, errName(e))]++
	if !slices.Contains(plausible, e) {
		f.bad = append(f.bad, fmt.Sprintf("%ssockopt %d optlen %d optval %s: %s", kind, opt, l, where, errName(e)))
	}
}

// TestUmhSurvivesGarbage: with bpfilter loaded, a burst of garbage
// sockopt calls from several threads at once; every call returns, the
// umh stays the same process, logs no BUG, and the table is intact.
func TestUmhSurvivesGarbage(t *testing.T) {
	defer gt.Use(t, gt.IPTables)
	gt.Use(t, gt.Bpfilter)
	restoreTable(t, knownTable)
	rules := gt.MustRun(t, "iptables-legacy", "-S")
	if rules != knownRules {
		t.Fatalf("iptables-legacy -S:\n%s\nwant:\n%s", rules, knownRules)
	}
	pid := gt.UmhPid(t)
	// Without ip_tables, what bpfilter leaves to it (other tables,
	// extensions it does not know) ends in ENOPROTOOPT rather than in
	// request_module calls for random names: the burst stays on the umh.
	if out, err := gt.Run("rmmod", "ip_tables"); err != nil {
		t.Logf("rmmod ip_tables: %v %s", err, out)
	}

	fd0, err := gt.RawSocket()
	if err != nil {
		t.Fatal(err)
	}
	base, err := getSnap(fd0)
	unix.Close(fd0)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := parseTable(base)
	if err != nil {
		t.Fatal(err)
	}
	k := gt.NewKmsg(t)

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	var (
		mu    sync.Mutex
		stats = map[string]int{}
		bad   []string
		calls int
		wg    sync.WaitGroup
	)
	deadline := time.Now().Add(garbageBudget)
	for w := 0; w < garbageWorkers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			// Each worker on its own thread: the module names the
			// calling thread, whose memory the umh reads.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			fail := func(err error) { mu.Lock(); bad = append(bad, err.Error()); mu.Unlock() }
			s, err := newScratch()
			if err != nil {
				fail(err)
				return
			}
			defer s.free()
			fd, err := gt.RawSocket()
			if err != nil {
				fail(err)
				return
			}
			defer unix.Close(fd)
			f := &fuzzer{rng: rand.New(rand.NewPCG(seed, uint64(w))), tbl: tbl, s: s, fd: fd, stats: map[string]int{},
				blob: tbl.replaceOf(s.none.addr()).bytes()}
			n := 0
			for ; n < garbageCalls && time.Now().Before(deadline); n++ {
				f.one()
				if n%100 == 0 {
					if err := sameUmh(pid); err != nil {
						fail(fmt.Errorf("worker %d, call %d: %w", w, n, err))
						break
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			calls += n
			for k, v := range f.stats {
				stats[k] += v
			}
			bad = append(bad, f.bad...)
		}(w)
	}
	wg.Wait()

	var lines []string
	for k, v := range stats {
		lines = append(lines, fmt.Sprintf("%6d  %s", v, k))
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i][6:] < lines[j][6:] })
	t.Logf("%d calls from %d threads; answers:\n%s", calls, garbageWorkers, strings.Join(lines, "\n"))
	if calls < garbageWorkers*garbageCalls/2 {
		t.Errorf("only %d calls in %v", calls, garbageBudget)
	}
	for _, b := range bad {
		t.Error(b)
	}
	if err := sameUmh(pid); err != nil {
		t.Fatal(err)
	}
	for _, l := range k.Grep(regexp.MustCompile(`^bpfilter_umh: BUG|^bpfilter: (read from|write to) umh failed`)) {
		t.Errorf("kernel log: %s", l)
	}

	// The table is intact and the umh still works.
	if out := gt.MustRun(t, "iptables-legacy", "-S"); out != rules {
		t.Errorf("after the burst, iptables-legacy -S:\n%s\nwant:\n%s", out, rules)
	}
	fd, err := gt.RawSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	after, err := getSnap(fd)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := parseTable(after)
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := mapping(1<<16, unix.PROT_READ|unix.PROT_WRITE)
	if err != nil {
		t.Fatal(err)
	}
	defer ctr.free()
	r := cur.replaceOf(ctr.addr())
	if e, err := send(fd, gt.SetReplace, withData(r.bytes())); err != nil || e != 0 {
		t.Errorf("after the burst, the table's own blob is refused: %s %v", errName(e), err)
	}
	if out := gt.MustRun(t, "iptables-legacy", "-S"); out != rules {
		t.Errorf("after the burst and a replace, iptables-legacy -S:\n%s\nwant:\n%s", out, rules)
	}
	if err := sameUmh(pid); err != nil {
		t.Error(err)
	}
	gt.Ensure(t, gt.Bpfilter)
}
