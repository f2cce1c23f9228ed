package ipt

import (
	"bytes"
	"fmt"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/cvalues"
	"github.com/bpfilter/bpfilter/umh/internal/ipt/kerneltest"
)

// kernelExtScript makes, from a fresh filter table, rules with every
// kernel-hosted extension as iptables-legacy 1.8.9 builds them, then reads
// them back (iptables-legacy-save: GET_INFO, GET_ENTRIES).
// testdata/kernel-exts.capture holds its sockopt calls: the revision probes
// libxtables makes with the kernel's answers, the SET_REPLACE blob, and
// what the kernel's GET_ENTRIES returned. It only ever runs through
// kerneltest.Capture, in a private network namespace (nfacct's object
// lives there too).
const kernelExtScript = `nfacct add pkts
iptables-legacy-restore -w <<'RULES'
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -j REJECT --reject-with tcp-reset
-A INPUT -j REJECT
-A INPUT -m limit --limit 5/min --limit-burst 7 -j LOG --log-prefix "in: " --log-level 4 --log-uid
-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT
-A INPUT -m recent --name ssh --set --rsource
-A INPUT -m recent --name ssh --update --seconds 60 --hitcount 4 --mask 255.255.255.0 -j DROP
-A INPUT -m mark --mark 0x1/0xff -j ACCEPT
-A INPUT -m nfacct --nfacct-name pkts
-A INPUT -m mac --mac-source 00:11:22:33:44:55 -j DROP
-A INPUT -m pkttype --pkt-type broadcast -j DROP
-A INPUT -m length --length 100:200 -j DROP
-A INPUT -m ttl --ttl-gt 5 -j ACCEPT
-A INPUT -m tos --tos 0x10/0x3f -j ACCEPT
-A INPUT -m dscp --dscp 10 -j ACCEPT
-A INPUT -p tcp -m ecn --ecn-tcp-cwr -j ACCEPT
-A FORWARD -m mac --mac-source 00:11:22:33:44:56 -j REJECT --reject-with icmp-host-prohibited
-A OUTPUT -m owner --uid-owner 0 --gid-owner 0-10 -j ACCEPT
-A OUTPUT -m owner --socket-exists -j LOG
COMMIT
RULES
iptables-legacy-save >/dev/null
`

// kext is what one kernel-hosted extension of the captured table must
// decode to: rule number rule of chain, its match number match (-1: the
// target).
type kext struct {
	chain       string
	rule, match int
	name        string
	rev         uint8
	fam         family
	size, user  int // XT_ALIGN(size) data bytes; usersize, else size
}

var kexts = []kext{
	{"INPUT", 0, -1, "REJECT", 0, familyIPv4, 4, 4},
	{"INPUT", 1, -1, "REJECT", 0, familyIPv4, 4, 4},
	{"INPUT", 2, 0, "limit", 0, familyUnspec, 40, 8},
	{"INPUT", 2, -1, "LOG", 0, familyIPv4, 32, 32},
	{"INPUT", 3, 0, "addrtype", 1, familyIPv4, 8, 8},
	{"INPUT", 4, 0, "recent", 1, familyIPv4, 228, 228},
	{"INPUT", 5, 0, "recent", 1, familyIPv4, 228, 228},
	{"INPUT", 6, 0, "mark", 1, familyUnspec, 12, 12},
	{"INPUT", 7, 0, "nfacct", 1, familyUnspec, 40, 32},
	{"INPUT", 8, 0, "mac", 0, familyIPv4, 12, 12},
	{"INPUT", 9, 0, "pkttype", 0, familyUnspec, 8, 8},
	{"INPUT", 10, 0, "length", 0, familyIPv4, 6, 6},
	{"INPUT", 11, 0, "ttl", 0, familyIPv4, 2, 2},
	{"INPUT", 12, 0, "tos", 1, familyIPv4, 3, 3},
	{"INPUT", 13, 0, "dscp", 0, familyIPv4, 2, 2},
	{"INPUT", 14, 0, "ecn", 0, familyIPv4, 4, 4},
	{"FORWARD", 0, 0, "mac", 0, familyIPv4, 12, 12},
	{"FORWARD", 0, -1, "REJECT", 0, familyIPv4, 4, 4},
	{"OUTPUT", 0, 0, "owner", 1, familyIPv4, 20, 20},
	{"OUTPUT", 1, 0, "owner", 1, familyIPv4, 20, 20},
	{"OUTPUT", 1, -1, "LOG", 0, familyIPv4, 32, 32},
}

func (k kext) String() string {
	what := fmt.Sprintf("match %d", k.match)
	if k.match < 0 {
		what = "target"
	}
	return fmt.Sprintf("%s rule %d %s %s.%d", k.chain, k.rule, what, k.name, k.rev)
}

// raw is the xt_entry_match/target of k in t.
func (k kext) raw(t *Table) []byte {
	e := t.Chain(k.chain).Rules[k.rule]
	if k.match < 0 {
		return e.Target.Raw
	}
	return e.Matches[k.match].Raw
}

// kernelExtCapture is testdata/kernel-exts.capture (fresh with -update).
func kernelExtCapture(t testing.TB) []kerneltest.Record {
	t.Helper()
	if *update {
		if _, err := exec.LookPath("nfacct"); err != nil {
			t.Skipf("-update needs nfacct: %v", err)
		}
		writeCapture(t, "kernel-exts.capture", kernelExtScript, kerneltest.Capture(t, kernelExtScript))
	}
	return readCapture(t, "kernel-exts.capture")
}

// capturedKernelExtTable is the table of the captured SET_REPLACE, and the
// blob.
func capturedKernelExtTable(t testing.TB) (*Table, []byte) {
	t.Helper()
	replaces := kerneltest.Replaces(kernelExtCapture(t))
	if len(replaces) != 1 {
		t.Fatalf("%d replaces captured, want 1", len(replaces))
	}
	r, err := Decode(replaces[0])
	if err != nil {
		t.Fatalf("iptables-legacy's blob refused: %v", err)
	}
	return r.Table, replaces[0]
}

// TestKernelExtDecode: iptables-legacy's blob is accepted, and every
// kernel-hosted extension in it decodes to its *KernelExt.
func TestKernelExtDecode(t *testing.T) {
	tb, _ := capturedKernelExtTable(t)
	seen := map[string]bool{}
	for _, k := range kexts {
		e := tb.Chain(k.chain).Rules[k.rule]
		var info any
		var name string
		var rev uint8
		if k.match < 0 {
			if e.Target.Kind != TargetKernel {
				t.Errorf("%v: kind %d, want TargetKernel", k, e.Target.Kind)
			}
			info, name, rev = e.Target.Info, e.Target.Name, e.Target.Revision
		} else {
			m := &e.Matches[k.match]
			info, name, rev = m.Info, m.Name, m.Revision
		}
		x, ok := info.(*KernelExt)
		if !ok {
			t.Errorf("%v: info %T, want *KernelExt", k, info)
			continue
		}
		want := KernelExt{Name: k.name, Revision: k.rev, Target: k.match < 0, UserSize: k.user}
		if x.Name != want.Name || x.Revision != want.Revision || x.Target != want.Target || x.UserSize != want.UserSize ||
			name != k.name || rev != k.rev {
			t.Errorf("%v: decoded %s.%d target %v usersize %d", k, x.Name, x.Revision, x.Target, x.UserSize)
		}
		raw := k.raw(tb)
		if len(x.Data) != XTAlign(k.size) || !bytes.Equal(x.Data, raw[EntryMatchSize:]) {
			t.Errorf("%v: data %x, want the caller's %x (%d bytes)", k, x.Data, raw[EntryMatchSize:], XTAlign(k.size))
		}
		if len(x.Data) > 0 && &x.Data[0] == &raw[EntryMatchSize] {
			t.Errorf("%v: Data aliases the blob", k)
		}
		seen[k.name] = true
	}
	for _, name := range []string{"REJECT", "LOG", "limit", "addrtype", "recent", "mark", "nfacct", "mac",
		"pkttype", "length", "ttl", "tos", "dscp", "ecn", "owner"} {
		if !seen[name] {
			t.Errorf("%s is not covered", name)
		}
	}
}

// TestKernelExtEntries: bpfilter's GET_ENTRIES of the captured table is,
// byte for byte, what the kernel returned to iptables-legacy-save: the
// usersize bytes of limit's and nfacct's data and zeros after.
func TestKernelExtEntries(t *testing.T) {
	tb, _ := capturedKernelExtTable(t)
	recs := kernelExtCapture(t)
	n, replaced := 0, false
	for i := 0; i+1 < len(recs); i++ {
		in, out := recs[i], recs[i+1]
		if in.Kind == kerneltest.Set && in.Opt == SoSetReplace {
			replaced = true
		}
		if !replaced || in.Kind != kerneltest.GetIn || in.Opt != SoGetEntries || out.Kind != kerneltest.GetOut {
			continue // the GET_ENTRIES before the replace read the empty table
		}
		if out.Ret != 0 || len(out.Data) != GetEntriesSize+int(tb.Size) {
			t.Fatalf("GET_ENTRIES record %d: ret %d, %d bytes", i, out.Ret, len(out.Data))
		}
		got := append([]byte(nil), in.Data[GetEntriesSize:]...)
		var counters []Counters
		for _, e := range tb.Entries { // the kernel's counters, for the counters' bytes only
			counters = append(counters, decodeCounters(out.Data[GetEntriesSize+int(e.Offset)+entryCountersOff:]))
		}
		if err := tb.WriteEntries(got, counters); err != nil {
			t.Fatal(err)
		}
		if want := out.Data[GetEntriesSize:]; !bytes.Equal(got, want) {
			t.Fatalf("GET_ENTRIES differs from the kernel's:\n%s", diffHex(got, want))
		}
		n++
	}
	if n == 0 {
		t.Fatal("no GET_ENTRIES in the capture")
	}
	// The captured blob carries zeros beyond usersize: check that they are
	// the kernel's zeros, not the caller's, with state bytes set.
	for _, k := range kexts {
		if k.user == XTAlign(k.size) {
			continue
		}
		raw := append([]byte(nil), k.raw(tb)...)
		for i := EntryMatchSize + k.user; i < len(raw); i++ {
			raw[i] = 0xA5
		}
		x, _ := findExtension(k.match < 0, k.name, k.rev)
		d := bytes.Repeat([]byte{0x5A}, len(raw))
		extToUser(d, raw, x)
		want := append(append([]byte(nil), d[:EntryMatchSize+k.user]...), make([]byte, len(raw)-EntryMatchSize-k.user)...)
		if !bytes.Equal(d, want) || !bytes.Equal(d[EntryMatchSize:EntryMatchSize+k.user], raw[EntryMatchSize:EntryMatchSize+k.user]) {
			t.Errorf("%v: rendered %x", k, d)
		}
	}
}

// TestKernelExtRevisions: GET_REVISION_MATCH/TARGET answer as the kernel
// answered libxtables' probes in the capture, and as 6.1 registers the
// extensions.
func TestKernelExtRevisions(t *testing.T) {
	recs := kernelExtCapture(t)
	probes := 0
	for i := 0; i+1 < len(recs); i++ {
		in, out := recs[i], recs[i+1]
		if in.Kind != kerneltest.GetIn || (in.Opt != SoGetRevisionMatch && in.Opt != SoGetRevisionTarget) {
			continue
		}
		name, rev, err := ParseGetRevision(in.Data)
		if err != nil {
			t.Fatal(err)
		}
		target := in.Opt == SoGetRevisionTarget
		best, errno := FindRevision(name, rev, target)
		if errno == unix.ENOENT {
			t.Errorf("%s %q revision %d: unknown to bpfilter (kernel: ret %d errno %v)", kindName(target), name, rev, out.Ret, out.Errno)
			continue
		}
		if errno != out.Errno || out.Ret > 0 && best != int(out.Ret) {
			t.Errorf("%s %q revision %d: %d %v, kernel %d %v", kindName(target), name, rev, best, errno, out.Ret, out.Errno)
		}
		probes++
	}
	if probes < 10 {
		t.Fatalf("only %d revision probes in the capture", probes)
	}
	// Linux 6.1's registrations: the highest revision, and EPROTONOSUPPORT
	// for a revision the name lacks (iptables 1.8.9 asks for the highest
	// it knows, then lower ones).
	for _, tt := range []struct {
		name   string
		target bool
		revs   []uint8 // those that exist
	}{
		{"REJECT", true, []uint8{0}},
		{"LOG", true, []uint8{0}},
		{"limit", false, []uint8{0}},
		{"addrtype", false, []uint8{0, 1}},
		{"recent", false, []uint8{0, 1}},
		{"mark", false, []uint8{1}},
		{"nfacct", false, []uint8{0, 1}},
		{"mac", false, []uint8{0}},
		{"pkttype", false, []uint8{0}},
		{"length", false, []uint8{0}},
		{"ttl", false, []uint8{0}},
		{"dscp", false, []uint8{0}},
		{"tos", false, []uint8{1}},
		{"ecn", false, []uint8{0}},
		{"owner", false, []uint8{1}},
	} {
		top := tt.revs[len(tt.revs)-1]
		for rev := uint8(0); rev <= 3; rev++ {
			best, errno := FindRevision(tt.name, rev, tt.target)
			if bytes.IndexByte(tt.revs, rev) >= 0 {
				if errno != 0 || best != int(top) {
					t.Errorf("%q revision %d: %d %v, want %d", tt.name, rev, best, errno, top)
				}
			} else if errno != unix.EPROTONOSUPPORT {
				t.Errorf("%q revision %d: %d %v, want EPROTONOSUPPORT", tt.name, rev, best, errno)
			}
		}
		if _, errno := FindRevision(tt.name, 0, !tt.target); errno != unix.ENOENT {
			t.Errorf("%q as a %s: %v, want ENOENT", tt.name, kindName(!tt.target), errno)
		}
	}
	// MARK (the target) stays ip_tables'.
	if _, errno := FindRevision("MARK", 2, true); errno != unix.ENOENT {
		t.Errorf("MARK: %v", errno)
	}
}

// kextCase is a blob with kernel-hosted extensions and the errno of
// bpfilter's validation; kernel is ip_tables' errno when it differs: a
// refusal by the extension's checkentry, which bpfilter.ko reports when it
// checks the extensions (kernelext.go: errno order).
type kextCase struct {
	name          string
	blob          func(t testing.TB) []byte
	errno         unix.Errno
	kernelDiffers bool
	kernel        unix.Errno
}

// resized is raw (an xt_entry_match/target) with n data bytes: cut, or
// padded with zeros; the size field follows.
func resized(raw []byte, n int) []byte {
	b := append([]byte(nil), raw[:EntryMatchSize]...)
	b = append(b, raw[EntryMatchSize:min(len(raw), EntryMatchSize+n)]...)
	b = append(b, make([]byte, EntryMatchSize+n-len(b))...)
	put16(b, 0, uint16(len(b)))
	return b
}

func withRevision(raw []byte, rev uint8) []byte {
	b := append([]byte(nil), raw...)
	b[extRevisionOff] = rev
	return b
}

// ruleOf is the captured rule of k with k's extension's raw replaced by
// raw (nil: kept), as a RuleSpec that can go anywhere.
func ruleOf(tb *Table, k kext, raw []byte) RuleSpec {
	e := tb.Chain(k.chain).Rules[k.rule]
	r := RuleSpec{IP: e.IP}
	for i, m := range e.Matches {
		if i == k.match && raw != nil {
			m = Match{Name: m.Name, Revision: raw[extRevisionOff], Raw: raw}
		}
		r.Matches = append(r.Matches, Match{Name: m.Name, Revision: m.Revision, Raw: append([]byte(nil), m.Raw...)})
	}
	switch {
	case k.match < 0 && raw != nil:
		r.Target = &Target{Name: e.Target.Name, Raw: raw}
	case e.Target.Kind == TargetStandard:
		r.Jump = VerdictName(e.Target.Verdict) // "" for a rule without target: falls through
	default:
		r.Target = &Target{Name: e.Target.Name, Raw: append([]byte(nil), e.Target.Raw...)}
	}
	return r
}

// kextBlob is a filter table holding rule r in chain (a builtin chain, or
// user chain "u", jumped to from jumpFrom unless that is "").
func kextBlob(chain, jumpFrom string, r RuleSpec) func(t testing.TB) []byte {
	return func(t testing.TB) []byte {
		b := NewFilterBuilder()
		if chain == "u" {
			must(t, b.NewChain("u"))
			if jumpFrom != "" {
				must(t, b.Append(jumpFrom, RuleSpec{Jump: "u"}))
			}
		}
		must(t, b.Append(chain, r))
		return mustReplace(t, b, 4)
	}
}

// kextCases are made from the captured rules: for each extension, the rule
// as iptables built it, wrong sizes and an unknown revision; then the hook
// restrictions, and checkentry refusals that are the kernel's.
func kextCases(t testing.TB) []kextCase {
	tb, _ := capturedKernelExtTable(t)
	var cs []kextCase
	done := map[string]bool{}
	for _, k := range kexts {
		key := fmt.Sprintf("%s.%d", k.name, k.rev)
		if done[key] {
			continue
		}
		done[key] = true
		raw := k.raw(tb)
		var kernelAsIs unix.Errno
		if k.name == "nfacct" {
			kernelAsIs = unix.ENOENT // nfacct_mt_checkentry: no object "pkts" in that namespace
		}
		badRev := unix.ENOENT // the name in the NFPROTO_IPV4 list: the UNSPEC search says ENOENT
		if k.fam == familyUnspec {
			badRev = unix.EPROTOTYPE
		}
		cs = append(cs,
			kextCase{name: key + " as iptables builds it", blob: kextBlob(k.chain, "", ruleOf(tb, k, nil)),
				kernelDiffers: kernelAsIs != 0, kernel: kernelAsIs},
			kextCase{name: key + " 8 bytes too long", errno: unix.EINVAL,
				blob: kextBlob(k.chain, "", ruleOf(tb, k, resized(raw, XTAlign(k.size)+8)))},
			kextCase{name: key + " 8 bytes too short", errno: unix.EINVAL,
				blob: kextBlob(k.chain, "", ruleOf(tb, k, resized(raw, XTAlign(k.size)-8)))},
			kextCase{name: key + " revision 9", errno: badRev,
				blob: kextBlob(k.chain, "", ruleOf(tb, k, withRevision(raw, 9)))},
		)
		if XTAlign(k.size) != k.size {
			// Unaligned data: the size check is on XT_ALIGN(size).
			cs = append(cs, kextCase{name: key + " unaligned size", errno: unix.EINVAL,
				blob: kextBlob(k.chain, "", ruleOf(tb, k, resized(raw, k.size)))})
		}
	}
	find := func(name string) kext {
		for _, k := range kexts {
			if k.name == name {
				return k
			}
		}
		panic(name)
	}
	mac, owner, reject, ecn, limit, logk := find("mac"), find("owner"), find("REJECT"), find("ecn"), find("limit"), find("LOG")
	rejectIP := func(proto uint16) RuleSpec {
		r := ruleOf(tb, reject, nil) // tcp-reset
		r.IP.Proto = proto
		return r
	}
	limitData := func(f func(d []byte)) []byte {
		raw := append([]byte(nil), limit.raw(tb)...)
		f(raw[EntryMatchSize:])
		return raw
	}
	logData := func(f func(d []byte)) []byte {
		raw := append([]byte(nil), logk.raw(tb)...)
		f(raw[EntryTargetSize:])
		return raw
	}
	cs = append(cs,
		// .hooks, checked by the umh as xt_check_match does, on the
		// entry's comefrom.
		kextCase{name: "mac in OUTPUT", errno: unix.EINVAL, blob: kextBlob("OUTPUT", "", ruleOf(tb, mac, nil))},
		kextCase{name: "mac in a chain OUTPUT jumps to", errno: unix.EINVAL, blob: kextBlob("u", "OUTPUT", ruleOf(tb, mac, nil))},
		kextCase{name: "mac in a chain INPUT jumps to", blob: kextBlob("u", "INPUT", ruleOf(tb, mac, nil))},
		kextCase{name: "mac in an unreachable chain", blob: kextBlob("u", "", ruleOf(tb, mac, nil))},
		kextCase{name: "owner in INPUT", errno: unix.EINVAL, blob: kextBlob("INPUT", "", ruleOf(tb, owner, nil))},
		kextCase{name: "owner in FORWARD", errno: unix.EINVAL, blob: kextBlob("FORWARD", "", ruleOf(tb, owner, nil))},
		kextCase{name: "owner in a chain FORWARD jumps to", errno: unix.EINVAL, blob: kextBlob("u", "FORWARD", ruleOf(tb, owner, nil))},
		kextCase{name: "REJECT in OUTPUT", blob: kextBlob("OUTPUT", "", ruleOf(tb, reject, nil))},
		// No kernel-hosted extension has a .proto: the protocol rules
		// are their checkentry's, in the kernel.
		kextCase{name: "REJECT tcp-reset with -p udp", blob: kextBlob("INPUT", "", rejectIP(ProtoUDP)),
			kernelDiffers: true, kernel: unix.EINVAL}, // reject_tg_check
		kextCase{name: "REJECT tcp-reset with ! -p tcp", kernelDiffers: true, kernel: unix.EINVAL,
			blob: kextBlob("INPUT", "", func() RuleSpec { r := rejectIP(ProtoTCP); r.IP.InvFlags |= InvProto; return r }())},
		kextCase{name: "ecn --ecn-tcp-cwr without -p tcp", kernelDiffers: true, kernel: unix.EINVAL, // ecn_mt_check4
			blob: kextBlob("INPUT", "", func() RuleSpec { r := ruleOf(tb, ecn, nil); r.IP.Proto = 0; return r }())},
		kextCase{name: "limit burst 0", kernelDiffers: true, kernel: unix.ERANGE, // limit_mt_check
			blob: kextBlob("INPUT", "", ruleOf(tb, limit, limitData(func(d []byte) { put32(d, 4, 0) })))},
		kextCase{name: "limit with state bytes set", // past usersize: the kernel overwrites them
			blob: kextBlob("INPUT", "", ruleOf(tb, limit, limitData(func(d []byte) {
				copy(d[8:], bytes.Repeat([]byte{0xA5}, 32))
			})))},
		kextCase{name: "LOG level 8", kernelDiffers: true, kernel: unix.EINVAL, // log_tg_check
			blob: kextBlob("INPUT", "", ruleOf(tb, logk, logData(func(d []byte) { d[0] = 8 })))},
		kextCase{name: "LOG prefix without NUL", kernelDiffers: true, kernel: unix.EINVAL,
			blob: kextBlob("INPUT", "", ruleOf(tb, logk, logData(func(d []byte) { copy(d[2:], bytes.Repeat([]byte{'p'}, 30)) })))},
		// Revisions iptables 1.8.9 does not send to a 6.1 kernel.
		kextCase{name: "addrtype.0", blob: kextBlob("INPUT", "", RuleSpec{Matches: []Match{rawMatch("addrtype", 0, make([]byte, 16))}})},
		kextCase{name: "addrtype.0 at revision 1's size", errno: unix.EINVAL,
			blob: kextBlob("INPUT", "", RuleSpec{Matches: []Match{rawMatch("addrtype", 0, make([]byte, 8))}})},
		kextCase{name: "recent.0 without a name", kernelDiffers: true, kernel: unix.EINVAL, // recent_mt_check: xt_check_proc_name
			blob: kextBlob("INPUT", "", RuleSpec{Matches: []Match{rawMatch("recent", 0, make([]byte, 216))}})},
		kextCase{name: "nfacct.1 without an object", kernelDiffers: true, kernel: unix.ENOENT,
			blob: kextBlob("INPUT", "", RuleSpec{Matches: []Match{rawMatch("nfacct", 1, make([]byte, 40))}})},
		kextCase{name: "tos.0 (gone since 2.6.x)", errno: unix.ENOENT,
			blob: kextBlob("INPUT", "", RuleSpec{Matches: []Match{rawMatch("tos", 0, make([]byte, 8))}})},
		kextCase{name: "mark.0", errno: unix.EPROTOTYPE, // 6.1 has revision 1 only, in NFPROTO_UNSPEC
			blob: kextBlob("INPUT", "", RuleSpec{Matches: []Match{rawMatch("mark", 0, make([]byte, 8))}})},
		kextCase{name: "target MARK stays refused", errno: unix.ENOENT, kernelDiffers: true,
			blob: kextBlob("INPUT", "", RuleSpec{Target: rawTarget("MARK", 2, make([]byte, 8))})},
		// The errno order: ip_tables stops at the first checkentry that
		// fails (REJECT's, EINVAL); bpfilter's own checks run over the
		// whole blob first and find the unknown match (ENOENT), and the
		// module would only then run REJECT's checkentry.
		kextCase{name: "checkentry error before an unknown match", errno: unix.ENOENT, kernelDiffers: true, kernel: unix.EINVAL,
			blob: func(t testing.TB) []byte {
				b := NewFilterBuilder()
				must(t, b.Append("INPUT", rejectIP(ProtoUDP)))
				must(t, b.Append("INPUT", RuleSpec{Matches: []Match{rawMatch("nosuchmatch", 0, make([]byte, 8))}, Jump: "DROP"}))
				return mustReplace(t, b, 4)
			}},
	)
	return cs
}

func TestKernelExtErrno(t *testing.T) {
	for _, c := range kextCases(t) {
		t.Run(c.name, func(t *testing.T) {
			r, err := Decode(c.blob(t))
			if got := ErrnoOf(err); got != c.errno {
				t.Fatalf("errno %v (%v), want %v", got, err, c.errno)
			}
			if err != nil {
				t.Logf("%v", err)
				return
			}
			// Whatever the data, every kernel-hosted extension decodes.
			for _, e := range r.Table.Entries {
				for _, m := range e.Matches {
					if m.ext.kernel {
						if _, ok := m.Info.(*KernelExt); !ok {
							t.Errorf("%s: info %T", m.Name, m.Info)
						}
					}
				}
			}
		})
	}
}

// TestKernelExtErrnoKernel sends the same blobs to the running kernel's
// ip_tables (in a private network namespace), which runs the extensions'
// checkentry: it gives bpfilter's errno, or the checkentry's where the
// case says so.
func TestKernelExtErrnoKernel(t *testing.T) {
	k := kerneltest.Open(t)
	for _, c := range kextCases(t) {
		t.Run(c.name, func(t *testing.T) {
			want := c.errno
			if c.kernelDiffers {
				want = c.kernel
			}
			kk := k
			if want == 0 {
				kk = kerneltest.Open(t) // a success changes the table
			}
			if _, got := kk.Replace(c.blob(t)); got != want {
				t.Fatalf("kernel: errno %v, want %v", got, want)
			}
		})
	}
}

// TestKernelExtEntriesKernel: after replacing a table whose kernel-hosted
// extensions carry junk past their usersize and in their alignment
// padding, the kernel's GET_ENTRIES and bpfilter's are the same bytes.
func TestKernelExtEntriesKernel(t *testing.T) {
	tb, _ := capturedKernelExtTable(t)
	b := NewFilterBuilder()
	for _, k := range kexts {
		if k.name == "nfacct" {
			continue // its object does not exist in a fresh namespace
		}
		raw := append([]byte(nil), k.raw(tb)...)
		if k.name == "limit" {
			for i := EntryMatchSize + k.user; i < len(raw); i++ {
				raw[i] = 0xA5
			}
		}
		if k.name == "length" || k.name == "ttl" || k.name == "mark" {
			raw[len(raw)-1] = 0xA5 // XT_ALIGN padding
		}
		must(t, b.Append(k.chain, ruleOf(tb, k, raw)))
	}
	blob := mustReplace(t, b, 4)
	r, err := Decode(blob)
	if err != nil {
		t.Fatal(err)
	}
	kk := kerneltest.Open(t)
	if _, errno := kk.Replace(blob); errno != 0 {
		t.Fatalf("kernel refused: %v", errno)
	}
	buf := append(MarshalGetEntries("filter", r.Table.Size), make([]byte, r.Table.Size)...)
	if _, errno := kk.Get(SoGetEntries, buf); errno != 0 {
		t.Fatalf("kernel GET_ENTRIES: %v", errno)
	}
	got := r.Table.KernelEntries(nil)
	if want := buf[GetEntriesSize:]; !bytes.Equal(got, want) {
		t.Fatalf("GET_ENTRIES differs from the kernel's:\n%s", diffHex(got, want))
	}
}

// TestKernelExtLayoutPinnedToC pins the sizes and usersizes to the C
// headers.
func TestKernelExtLayoutPinnedToC(t *testing.T) {
	pins := []struct {
		c     string
		goVal int
	}{
		{"sizeof(struct xt_log_info)", logInfoSize},
		{"sizeof(struct ipt_reject_info)", rejectInfoSize},
		{"sizeof(struct xt_rateinfo)", rateInfoSize},
		{"offsetof(struct xt_rateinfo, prev)", rateInfoUser},
		{"sizeof(struct xt_addrtype_info)", addrtypeSizeV0},
		{"sizeof(struct xt_addrtype_info_v1)", addrtypeSizeV1},
		{"sizeof(struct xt_recent_mtinfo)", recentSizeV0},
		{"sizeof(struct xt_recent_mtinfo_v1)", recentSizeV1},
		{"sizeof(struct xt_mark_mtinfo1)", markMtSize},
		{"sizeof(struct xt_nfacct_match_info)", nfacctSizeV0},
		{"offsetof(struct xt_nfacct_match_info, nfacct)", nfacctUserV0},
		{"sizeof(struct xt_nfacct_match_info_v1)", nfacctSizeV1},
		{"offsetof(struct xt_nfacct_match_info_v1, nfacct)", nfacctUserV1},
		{"sizeof(struct xt_mac_info)", macInfoSize},
		{"sizeof(struct xt_pkttype_info)", pkttypeInfoSize},
		{"sizeof(struct xt_length_info)", lengthInfoSize},
		{"sizeof(struct ipt_ttl_info)", ttlInfoSize},
		{"sizeof(struct xt_dscp_info)", dscpInfoSize},
		{"sizeof(struct xt_tos_match_info)", tosMatchInfoSize},
		{"sizeof(struct xt_ecn_info)", ecnInfoSize},
		{"sizeof(struct xt_owner_match_info)", ownerInfoSize},
	}
	var es []cvalues.Expr
	for i, p := range pins {
		es = append(es, cvalues.Expr{Name: fmt.Sprint("v", i), C: p.c})
	}
	c := cvalues.Eval(t, []string{
		"<linux/netfilter_ipv4/ip_tables.h>",
		"<linux/netfilter/xt_LOG.h>",
		"<linux/netfilter_ipv4/ipt_REJECT.h>",
		"<linux/netfilter/xt_limit.h>",
		"<linux/netfilter/xt_addrtype.h>",
		"<linux/netfilter/xt_recent.h>",
		"<linux/netfilter/xt_mark.h>",
		"<linux/netfilter/nfnetlink_acct.h>",
		"<linux/netfilter/xt_nfacct.h>",
		"<linux/netfilter/xt_mac.h>",
		"<linux/netfilter/xt_pkttype.h>",
		"<linux/netfilter/xt_length.h>",
		"<linux/netfilter_ipv4/ipt_ttl.h>",
		"<linux/netfilter/xt_dscp.h>",
		"<linux/netfilter/xt_ecn.h>",
		"<linux/netfilter/xt_owner.h>",
	}, es)
	for i, p := range pins {
		if got, ok := c[fmt.Sprint("v", i)]; !ok || got != int64(p.goVal) {
			t.Errorf("%s: C says %d, Go says %d", p.c, got, p.goVal)
		}
	}
	// Every kext registration is the one in ext.go.
	for _, k := range kexts {
		x, err := findExtension(k.match < 0, k.name, k.rev)
		if err != nil || !x.kernel || x.size != k.size || x.family != k.fam {
			t.Errorf("%v: registered %+v (%v)", k, x, err)
		}
	}
}
