//go:build vmguest

package badinput

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
)

// fillByte is what GET_ENTRIES buffers are filled with, for the
// comparison of what ip_tables leaves as it was.
const fillByte = 0xa5

// outcome is what one case did with one backend.
type outcome struct {
	errno    syscall.Errno
	accepted snap     // the table right after an accepted call
	filled   snap     // the same, read into a buffer not zeroed
	problems []string // anything else that went wrong
}

// run is one backend's pass over the cases.
type run struct {
	base     snap   // the known table, before any case
	filled   snap   // the same, read into a buffer not zeroed
	rules    string // iptables-legacy -S of it
	outcomes []outcome
}

// TestMalformedBlobs sends every case once to ip_tables and once to
// bpfilter, each time starting from knownTable, and compares: the errno,
// and for accepted calls the table they left. After each case the table
// must be byte for byte what it was (an accepted call is undone first),
// and bpfilter's umh must be the same process.
func TestMalformedBlobs(t *testing.T) {
	defer gt.Use(t, gt.IPTables)
	runs := map[gt.Backend]*run{}
	for _, b := range backends {
		runs[b] = runCases(t, b)
	}
	ipt, bpf := runs[gt.IPTables], runs[gt.Bpfilter]

	t.Run("same_starting_table", func(t *testing.T) {
		if ipt.rules != knownRules || bpf.rules != knownRules {
			t.Errorf("iptables-legacy -S of the known table:\nip_tables:\n%s\nbpfilter:\n%s\nwant:\n%s", ipt.rules, bpf.rules, knownRules)
		}
		if !ipt.base.equal(bpf.base) {
			t.Errorf("GET_INFO/GET_ENTRIES of the same table differ between ip_tables and bpfilter: %s", ipt.base.diff(bpf.base))
		}
		if !ipt.filled.equal(bpf.filled) {
			t.Errorf("GET_ENTRIES of the same table into a buffer filled with %#x differs between ip_tables and bpfilter: %s", fillByte, ipt.filled.diff(bpf.filled))
		}
	})

	var summary []string
	for i, c := range cases {
		wi, wb := ipt.outcomes[i], bpf.outcomes[i]
		line := fmt.Sprintf("%-72s ip_tables %-10s bpfilter %s", c.name, errName(wi.errno), errName(wb.errno))
		if wi.errno == 0 && !wi.accepted.equal(ipt.base) {
			line += " (installed a different table)"
		}
		summary = append(summary, line)
		t.Run(strings.NewReplacer(" ", "_", ",", "").Replace(c.name), func(t *testing.T) {
			if wi.errno != c.want {
				t.Errorf("ip_tables answers %s, the case expects %s: it does not test what it says", errName(wi.errno), errName(c.want))
			}
			if wb.errno != wi.errno {
				t.Errorf("bpfilter answers %s (%d), ip_tables %s (%d)", errName(wb.errno), wb.errno, errName(wi.errno), wi.errno)
			}
			for _, p := range wi.problems {
				t.Errorf("ip_tables: %s", p)
			}
			for _, p := range wb.problems {
				t.Errorf("bpfilter: %s", p)
			}
			if wi.errno == 0 && wb.errno == 0 && !c.same {
				if !wi.accepted.equal(wb.accepted) {
					t.Errorf("the table that the accepted call installed differs: %s", wi.accepted.diff(wb.accepted))
				}
				if !wi.filled.equal(wb.filled) {
					t.Errorf("the table that the accepted call installed, read into a buffer filled with %#x, differs: %s", fillByte, wi.filled.diff(wb.filled))
				}
			}
		})
	}
	t.Logf("%d cases:\n%s", len(cases), strings.Join(summary, "\n"))
}

// runCases installs knownTable with b answering and sends every case.
func runCases(t *testing.T, b gt.Backend) *run {
	t.Helper()
	gt.Use(t, b)
	restoreTable(t, knownTable)
	gt.Ensure(t, b)
	pid := 0
	if b == gt.Bpfilter {
		pid = gt.UmhPid(t)
	}
	rules := gt.MustRun(t, "iptables-legacy", "-S")

	fd, err := gt.RawSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// Where a replace puts the old counters.
	ctrArea, err := mapping(1<<16, unix.PROT_READ|unix.PROT_WRITE)
	if err != nil {
		t.Fatal(err)
	}
	defer ctrArea.free()

	base, err := getSnap(fd)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	tbl, err := parseTable(base)
	if err != nil {
		t.Fatalf("%s: the known table: %v", b, err)
	}
	t.Logf("%s: known table: %d entries, %d bytes, hook_entry %v, underflow %v", b, tbl.num, tbl.size, tbl.hookEntry, tbl.underflow)

	// The positive control: unless the unchanged blob is accepted and
	// leaves the table as it was, no negative case means anything.
	if e, err := send(fd, gt.SetReplace, validReplace.build(tbl, ctrArea.addr())); err != nil || e != 0 {
		t.Fatalf("%s: the unchanged blob of the known table is refused: %s %v", b, errName(e), err)
	}
	if s, err := getSnap(fd); err != nil || !s.equal(base) {
		t.Fatalf("%s: the unchanged blob of the known table did not leave it as it was: %v %s", b, err, s.diff(base))
	}

	filled, err := getSnapFill(fd, fillByte)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	r := &run{base: base, filled: filled, rules: rules}
	for _, c := range cases {
		r.outcomes = append(r.outcomes, runCase(fd, b, pid, tbl, ctrArea.addr(), c))
	}
	if b == gt.Bpfilter {
		if err := sameUmh(pid); err != nil {
			t.Error(err)
		}
	}
	if out := gt.MustRun(t, "iptables-legacy", "-S"); out != rules {
		t.Errorf("%s: after the cases, iptables-legacy -S shows\n%s\nwant\n%s", b, out, rules)
	}
	gt.Ensure(t, b)
	return r
}

func runCase(fd int, b gt.Backend, pid int, tbl *table, ctr uintptr, c bcase) outcome {
	var o outcome
	fail := func(format string, args ...any) { o.problems = append(o.problems, fmt.Sprintf(format, args...)) }
	e, err := send(fd, c.opt, c.build(tbl, ctr))
	if err != nil {
		fail("sending: %v", err)
		return o
	}
	o.errno = e
	if b == gt.Bpfilter {
		if err := sameUmh(pid); err != nil {
			fail("%v", err)
		}
	}
	if err := gt.Check(b); err != nil {
		fail("%v", err)
	}
	after, err := getSnap(fd)
	if err != nil {
		fail("reading the table after the call: %v", err)
		return o
	}
	if e == 0 {
		o.accepted = after
		if o.filled, err = getSnapFill(fd, fillByte); err != nil {
			fail("reading the table after the call: %v", err)
		}
		if c.same {
			if !after.equal(tbl.snap) {
				fail("accepted, and the table changed: %s", tbl.snap.diff(after))
			}
		}
		// Put the known table back.
		cur, err := parseTable(after)
		if err != nil {
			fail("the table the accepted call left: %v", err)
			cur = &table{num: le.Uint32(after.info[76:])}
		}
		r := tbl.replaceOf(ctr)
		r.numCounters = cur.num
		if e, err := send(fd, gt.SetReplace, withData(r.bytes())); err != nil || e != 0 {
			fail("putting the known table back: %s %v", errName(e), err)
		}
		if after, err = getSnap(fd); err != nil {
			fail("reading the table put back: %v", err)
			return o
		}
	}
	if !after.equal(tbl.snap) {
		fail("the table is not what it was: %s", tbl.snap.diff(after))
	}
	return o
}
