//go:build vmguest

package traffic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpfilter/bpfilter/vmtests/guest/gt"
	"golang.org/x/sys/unix"
)

// The stateful differential tests: like differential (diff_test.go), a
// case is a filter table (and maybe a nat table), then steps that drive
// real connections, crafted packets or readings of the kernel's state,
// each giving one line; both backends run the same cases in the same
// topology, and the lines, iptables-legacy -L -v -x -n and
// iptables-legacy-save -c must be the same byte for byte. Between the two
// backends every module of the extensions is unloaded, conntrack with
// them, so that no connection, recent list or nfacct object of the first
// carries over to the second.

// sstep is one step of a case: run's line, which ip_tables' must begin
// with want (unless want is empty: only compared).
type sstep struct {
	name string
	run  func(t *testing.T) string
	want string
}

type scase struct {
	name    string
	policy  map[string]string
	rules   string // filter's chains and rules
	restore string // if set, restored instead of rules and nat (iptables-save format)
	nat     string // nat's rules, when the test loads iptable_nat
	prepare func(t *testing.T)
	steps   []sstep
	// counters: "CHAIN n" (or "CHAIN policy") -> "packets bytes", as
	// ip_tables must show them.
	counters map[string]string
}

// statefulModules are the extensions' modules: loaded for both backends
// (under bpfilter the kernel-side ones run from these same modules), and
// unloaded between them.
var statefulModules = []string{"xt_conntrack", "xt_state", "ipt_REJECT", "nf_reject_ipv4", "xt_LOG",
	"nf_log_syslog", "xt_limit", "xt_addrtype", "xt_recent", "xt_nfacct", "nfnetlink_acct", "xt_mac",
	"xt_pkttype", "xt_length", "xt_hl", "xt_dscp", "xt_ecn", "xt_owner", "xt_mark", "xt_tcpudp",
	"xt_multiport", "xt_comment"}

// resetStateful leaves no table and no extension module behind: nothing
// of one backend's run (conntrack entries, recent lists, nfacct objects,
// limit credits) can reach the other's.
func resetStateful(t *testing.T) {
	t.Helper()
	if gt.Loaded("bpfilter") {
		gt.MustRun(t, "rmmod", "bpfilter")
	}
	if gt.Loaded("iptable_filter") {
		if out, err := gt.Restore(gt.EmptyFilter); err != nil {
			t.Fatalf("emptying the filter table: %v: %s", err, out)
		}
	}
	if gt.Loaded("iptable_nat") {
		if out, err := gt.Restore(tableInput("nat", natChains, nil, "")); err != nil {
			t.Fatalf("emptying nat: %v: %s", err, out)
		}
	}
	for pass := 0; pass < 2; pass++ {
		for _, m := range statefulModules {
			if gt.Loaded(m) {
				_, _ = gt.Run("rmmod", m)
			}
		}
	}
	unloadExtras(t)
	for _, m := range []string{"nf_conntrack", "xt_recent", "nfnetlink_acct", "xt_limit"} {
		if gt.Loaded(m) {
			out, _ := gt.Run("lsmod")
			t.Fatalf("%s stays loaded between the backends: its state would carry over\n%s", m, out)
		}
	}
}

type sobservation struct {
	errs  []string
	lines []string
	list  string
	save  string
	other string
}

func observeStateful(t *testing.T, c scase, withNat bool) sobservation {
	t.Helper()
	var o sobservation
	if c.prepare != nil {
		c.prepare(t)
	}
	restore := func(input string) {
		if out, err := gt.Restore(input); err != nil {
			o.errs = append(o.errs, fmt.Sprintf("%v: %s\n%s", err, out, input))
		}
	}
	switch {
	case c.restore != "":
		restore(c.restore)
	default:
		restore(tableInput("filter", filterChains, c.policy, c.rules))
		if withNat {
			restore(tableInput("nat", natChains, nil, c.nat))
		}
	}
	for _, s := range c.steps {
		o.lines = append(o.lines, s.name+": "+s.run(t))
	}
	o.list, o.save = filterListings()
	if withNat {
		o.other = runOut("iptables-legacy", "-t", "nat", "-L", "-v", "-x", "-n")
	}
	return o
}

// stateful runs cases under ip_tables, then under bpfilter, with the
// extensions' modules and modules loaded under both, and compares them.
func stateful(t *testing.T, modules []string, cases []scase) {
	t.Helper()
	withNat := slices.Contains(modules, "iptable_nat")
	bothBackends(t, cases, func(c scase) string { return c.name },
		func(t *testing.T, b gt.Backend) {
			resetStateful(t)
			useWith(t, b, append(append([]string{}, statefulModules...), modules...))
			t.Cleanup(func() { resetStateful(t) })
		},
		func(t *testing.T, c scase) sobservation { return observeStateful(t, c, withNat) },
		func(*testing.T) {}, compareStateful)
}

func compareStateful(t *testing.T, c scase, want, got sobservation) {
	t.Helper()
	if len(want.errs) > 0 {
		t.Fatalf("ip_tables: restore failed: %s", strings.Join(want.errs, "\n"))
	}
	if len(got.errs) > 0 {
		t.Errorf("bpfilter: restore failed: %s", strings.Join(got.errs, "\n"))
	}
	for i, s := range c.steps {
		if s.want == "" || i >= len(want.lines) {
			continue
		}
		if line := strings.TrimPrefix(want.lines[i], s.name+": "); !strings.HasPrefix(line, s.want) {
			t.Errorf("ip_tables: %s: %s; the case says %s", s.name, line, s.want)
		}
	}
	for k, w := range c.counters {
		f := strings.Fields(k)
		if g := counter(want.list, f[0], f[1]); g != w {
			t.Errorf("ip_tables: %s counts %q; the case says %q\n%s", k, g, w, want.list)
		}
	}
	t.Logf("ip_tables:\n%s", strings.Join(want.lines, "\n"))
	if !slices.Equal(want.lines, got.lines) {
		input := c.restore
		if input == "" {
			input = tableInput("filter", filterChains, c.policy, c.rules)
		}
		t.Errorf("steps differ\nip_tables:\n%s\nbpfilter:\n%s\nrules:\n%s", strings.Join(want.lines, "\n"),
			strings.Join(got.lines, "\n"), input)
	}
	if want.list != got.list {
		t.Errorf("iptables-legacy -t filter -L -v -x -n differs\nip_tables:\n%s\nbpfilter:\n%s", want.list, got.list)
	}
	if want.save != got.save {
		t.Errorf("iptables-legacy-save -c -t filter differs\nip_tables:\n%s\nbpfilter:\n%s", want.save, got.save)
	}
	if want.other != got.other {
		t.Errorf("the nat table's listing differs\nip_tables:\n%s\nbpfilter:\n%s", want.other, got.other)
	}
}

// step makes a step of a function that needs no t.
func step(name, want string, f func() string) sstep {
	return sstep{name: name, want: want, run: func(*testing.T) string { return f() }}
}

// sysctlStep sets a sysctl of the DUT (conntrack's are there only once
// nf_conntrack is loaded, and are reset with it) as a step.
func sysctlStep(name, v string) sstep {
	return sstep{name: name + "=" + v, run: func(t *testing.T) string {
		if err := os.WriteFile("/proc/sys/net/"+name, []byte(v+"\n"), 0o644); err != nil {
			return err.Error()
		}
		return "set"
	}}
}

// sendStep sends crafted packets from a host.
func sendStep(name string, send func() error) sstep {
	return step(name, "sent", func() string {
		if err := send(); err != nil {
			return err.Error()
		}
		time.Sleep(50 * time.Millisecond) // let them cross the DUT before the next step
		return "sent"
	})
}

// kmsgRec is a record of the kernel log with its level.
type kmsgRec struct{ prio, msg string }

// kmsgReader reads /dev/kmsg from its end on, keeping each record's
// priority (which --log-level sets) beside its text; the timestamp is
// dropped.
type kmsgReader struct{ fd int }

func newKmsgReader() (*kmsgReader, error) {
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if _, err := unix.Seek(fd, 0, io.SeekEnd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &kmsgReader{fd: fd}, nil
}

func (k *kmsgReader) read() []kmsgRec {
	var out []kmsgRec
	buf := make([]byte, 8192)
	for {
		n, err := syscall.Read(k.fd, buf)
		if errors.Is(err, syscall.EPIPE) {
			continue
		}
		if err != nil || n <= 0 {
			return out
		}
		rec := string(buf[:n])
		semi := strings.IndexByte(rec, ';')
		if semi < 0 {
			continue
		}
		head, msg := rec[:semi], rec[semi+1:]
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		prio, _, _ := strings.Cut(head, ",")
		out = append(out, kmsgRec{prio: prio, msg: msg})
	}
}

func (k *kmsgReader) close() { unix.Close(k.fd) }

// nfLogRe is a line of nf_log_syslog (LOG): it always names IN= and OUT=.
var nfLogRe = regexp.MustCompile(`IN=\S* OUT=\S* `)

// logLines returns the step that starts reading the kernel log, and the
// one that returns the LOG lines logged since, each as "<prio> text".
func logLines() (start, lines sstep) { return logLinesOf(false) }

// idRe is the IP id in a LOG line.
var idRe = regexp.MustCompile(`\bID=\d+ `)

// logLinesOf is logLines; with anyID, the IP ids are left out: the kernel
// picks a connected socket's first id at random. The ids of what the DUT
// itself sends (IN= empty: OUTPUT) are always left out: the kernel picks
// them per destination from a hash with a random seed, so they differ
// between the lanes whatever the rules.
func logLinesOf(anyID bool) (start, lines sstep) {
	var k *kmsgReader
	start = sstep{name: "kernel log from here", run: func(t *testing.T) string {
		var err error
		if k, err = newKmsgReader(); err != nil {
			return err.Error()
		}
		t.Cleanup(func() { k.close() })
		return "reading"
	}}
	lines = sstep{name: "LOG lines", run: func(t *testing.T) string {
		if k == nil {
			return "no reader"
		}
		time.Sleep(100 * time.Millisecond)
		var out []string
		for _, r := range k.read() {
			if nfLogRe.MatchString(r.msg) {
				msg := r.msg
				if anyID || strings.HasPrefix(nfLogRe.FindString(msg), "IN= ") {
					msg = idRe.ReplaceAllString(msg, "ID=_ ")
				}
				out = append(out, "<"+r.prio+"> "+msg)
			}
		}
		return fmt.Sprintf("%d\n%s", len(out), strings.Join(out, "\n"))
	}}
	return start, lines
}

// recentStep reads /proc/net/xt_recent/name: per address, its TTL, how many
// stamps it holds and the index of the oldest (jiffies left out).
func recentStep(name string) sstep {
	return step("xt_recent "+name, "", func() string {
		b, err := os.ReadFile("/proc/net/xt_recent/" + name)
		if err != nil {
			return err.Error()
		}
		re := regexp.MustCompile(`^src=(\S+) ttl: (\d+) last_seen: \d+ oldest_pkt: (\d+) (.*)$`)
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l == "" {
				continue
			}
			m := re.FindStringSubmatch(l)
			if m == nil {
				out = append(out, "unparsed: "+l)
				continue
			}
			out = append(out, fmt.Sprintf("%s ttl %s oldest %s stamps %d", m[1], m[2], m[3], len(strings.Split(m[4], ","))))
		}
		return strings.Join(out, "; ")
	})
}

// nfnetlink_acct's protocol (include/uapi/linux/netfilter/nfnetlink_acct.h):
// what `nfacct add` and `nfacct get` do, so that the guest needs no tool.
const (
	nfnlSubsysAcct = 7
	nfnlMsgAcctNew = 0
	nfnlMsgAcctGet = 1
	nfacctName     = 1
	nfacctPkts     = 2
	nfacctBytes    = 3
	nfacctUse      = 4
)

// nfacctRequest sends one nfnetlink_acct request in the calling thread's
// namespace and returns the replies' attributes (none for an ack).
func nfacctRequest(typ uint16, name string) (map[uint16][]byte, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	tv := unix.NsecToTimeval(int64(time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}
	a := append([]byte(name), 0)
	al := 4 + len(a)
	attr := make([]byte, (al+3)&^3)
	binary.LittleEndian.PutUint16(attr[0:], uint16(al))
	binary.LittleEndian.PutUint16(attr[2:], nfacctName)
	copy(attr[4:], a)
	flags := uint16(unix.NLM_F_REQUEST | unix.NLM_F_ACK)
	if typ == nfnlMsgAcctNew {
		flags |= unix.NLM_F_CREATE | unix.NLM_F_EXCL
	}
	msg := make([]byte, 20+len(attr))
	binary.LittleEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.LittleEndian.PutUint16(msg[4:], nfnlSubsysAcct<<8|typ)
	binary.LittleEndian.PutUint16(msg[6:], flags)
	binary.LittleEndian.PutUint32(msg[8:], 1)
	msg[16] = unix.AF_UNSPEC
	copy(msg[20:], attr)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	attrs := map[uint16][]byte{}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		for b := buf[:n]; len(b) >= 16; {
			l := int(binary.LittleEndian.Uint32(b))
			if l < 16 || l > len(b) {
				break
			}
			switch t := binary.LittleEndian.Uint16(b[4:]); t {
			case unix.NLMSG_ERROR:
				if e := int32(binary.LittleEndian.Uint32(b[16:])); e != 0 {
					return nil, unix.Errno(-e)
				}
				return attrs, nil
			case nfnlSubsysAcct<<8 | nfnlMsgAcctNew:
				for p := b[20:l]; len(p) >= 4; {
					al := int(binary.LittleEndian.Uint16(p))
					if al < 4 || al > len(p) {
						break
					}
					attrs[binary.LittleEndian.Uint16(p[2:])&0x3fff] = p[4:al]
					p = p[min((al+3)&^3, len(p)):]
				}
			}
			b = b[min((l+3)&^3, len(b)):]
		}
	}
}

// nfacctAdd makes an nfacct object in the DUT, as `nfacct add name` does.
func nfacctAdd(t *testing.T, name string) {
	t.Helper()
	if _, err := nfacctRequest(nfnlMsgAcctNew, name); err != nil {
		t.Fatalf("nfacct add %s: %v", name, err)
	}
}

// nfacctStep reads an nfacct object as `nfacct get name` shows it.
func nfacctStep(name, want string) sstep {
	return step("nfacct "+name, want, func() string {
		a, err := nfacctRequest(nfnlMsgAcctGet, name)
		if err != nil {
			return err.Error()
		}
		if len(a[nfacctPkts]) != 8 || len(a[nfacctBytes]) != 8 || len(a[nfacctUse]) != 4 {
			return fmt.Sprintf("short reply %v", a)
		}
		return fmt.Sprintf("pkts %d bytes %d use %d", binary.BigEndian.Uint64(a[nfacctPkts]),
			binary.BigEndian.Uint64(a[nfacctBytes]), binary.BigEndian.Uint32(a[nfacctUse]))
	})
}
