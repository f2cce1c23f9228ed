package ipt

import (
	"bytes"
	"net/netip"
	"strconv"
	"testing"

	"github.com/bpfilter/bpfilter/umh/internal/ipt/kerneltest"
)

// scenario is one rule set: the iptables-legacy commands that make it from
// a fresh filter table in one commit, and the same rule set built with
// Builder. testdata/<name>.hex holds the SET_REPLACE blob iptables-legacy
// sent (counters pointer zeroed). Scripts only ever run through
// kerneltest.Capture, in a private network namespace.
type scenario struct {
	name   string
	script string
	build  func(t testing.TB) []byte
}

func anyPorts() [2]uint16 { return [2]uint16{0, 0xFFFF} }

func mustIP(f func(*IP)) IP {
	var ip IP
	f(&ip)
	return ip
}

func mustReplace(t testing.TB, b *Builder, numCounters uint32) []byte {
	t.Helper()
	blob, err := b.Replace(numCounters, 0)
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var scenarios = []scenario{
	{
		name:   "udp-dport-drop",
		script: "iptables-legacy -w -A INPUT -p udp --dport 23 -j DROP\n",
		build: func(t testing.TB) []byte {
			b := NewFilterBuilder()
			must(t, b.Append("INPUT", RuleSpec{
				IP:      IP{Proto: ProtoUDP},
				Matches: []Match{NewMatch(&UDP{SrcPorts: anyPorts(), DstPorts: [2]uint16{23, 23}})},
				Jump:    "DROP",
			}))
			return mustReplace(t, b, 4)
		},
	},
	{
		name: "user-chains",
		script: `iptables-legacy-restore -w <<'RULES'
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:allow - [0:0]
:log-drop - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 22 -j allow
-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A INPUT -g log-drop
-A allow -j ACCEPT
-A log-drop -p tcp -j RETURN
-A log-drop -j DROP
COMMIT
RULES
`,
		build: func(t testing.TB) []byte {
			b := NewFilterBuilder()
			must(t, b.SetPolicy("INPUT", VerdictDrop, Counters{}))
			must(t, b.NewChain("allow"))
			must(t, b.NewChain("log-drop"))
			must(t, b.Append("INPUT", RuleSpec{IP: mustIP(func(ip *IP) { ip.SetInIface("lo") }), Jump: "ACCEPT"}))
			must(t, b.Append("INPUT", RuleSpec{
				IP: mustIP(func(ip *IP) {
					ip.SetSrc(netip.MustParsePrefix("10.0.0.0/8"))
					ip.Proto = ProtoTCP
				}),
				Matches: []Match{NewMatch(&TCP{SrcPorts: anyPorts(), DstPorts: [2]uint16{22, 22}})},
				Jump:    "allow",
			}))
			must(t, b.Append("INPUT", RuleSpec{
				IP:      IP{Proto: ProtoICMP},
				Matches: []Match{NewMatch(&ICMP{Type: 8, Code: [2]uint8{0, 0xFF}})},
				Jump:    "ACCEPT",
			}))
			must(t, b.Append("INPUT", RuleSpec{Jump: "log-drop", Goto: true}))
			must(t, b.Append("allow", RuleSpec{Jump: "ACCEPT"}))
			must(t, b.Append("log-drop", RuleSpec{IP: IP{Proto: ProtoTCP}, Jump: "RETURN"}))
			must(t, b.Append("log-drop", RuleSpec{Jump: "DROP"}))
			return mustReplace(t, b, 4)
		},
	},
	{
		name: "matches",
		script: `iptables-legacy-restore -w <<'RULES'
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m multiport --dports 80,443,8000:8080 -j ACCEPT
-A INPUT -m iprange --src-range 192.168.1.10-192.168.1.20 -j DROP
-A INPUT -p udp -m udp ! --sport 53 -m comment --comment "not dns" -j DROP
-A INPUT -p tcp
-A FORWARD -p tcp -m tcp --tcp-flags SYN,ACK SYN -j DROP
-A FORWARD -f -j DROP
-A OUTPUT ! -d 192.168.0.0/16 ! -o eth+ -j ACCEPT
COMMIT
RULES
`,
		build: func(t testing.TB) []byte {
			b := NewFilterBuilder()
			must(t, b.SetPolicy("FORWARD", VerdictDrop, Counters{}))
			mp := &Multiport{Flags: MultiportDestination, Count: 4}
			mp.Ports[0], mp.Ports[1], mp.Ports[2], mp.Ports[3] = 80, 443, 8000, 8080
			mp.PFlags[2] = 1
			must(t, b.Append("INPUT", RuleSpec{IP: IP{Proto: ProtoTCP}, Matches: []Match{NewMatch(mp)}, Jump: "ACCEPT"}))
			must(t, b.Append("INPUT", RuleSpec{
				Matches: []Match{NewMatch(&IPRange{
					SrcMin: Inet4(netip.MustParseAddr("192.168.1.10")),
					SrcMax: Inet4(netip.MustParseAddr("192.168.1.20")),
					Flags:  IPRangeSrc,
				})},
				Jump: "DROP",
			}))
			must(t, b.Append("INPUT", RuleSpec{
				IP: IP{Proto: ProtoUDP},
				Matches: []Match{
					NewMatch(&UDP{SrcPorts: [2]uint16{53, 53}, DstPorts: anyPorts(), InvFlags: UDPInvSrcPorts}),
					NewMatch(&Comment{Text: "not dns"}),
				},
				Jump: "DROP",
			}))
			must(t, b.Append("INPUT", RuleSpec{IP: IP{Proto: ProtoTCP}}))
			must(t, b.Append("FORWARD", RuleSpec{
				IP:      IP{Proto: ProtoTCP},
				Matches: []Match{NewMatch(&TCP{SrcPorts: anyPorts(), DstPorts: anyPorts(), FlagMask: 0x12, FlagCmp: 0x02})},
				Jump:    "DROP",
			}))
			must(t, b.Append("FORWARD", RuleSpec{IP: IP{Flags: FlagFrag}, Jump: "DROP"}))
			must(t, b.Append("OUTPUT", RuleSpec{
				IP: mustIP(func(ip *IP) {
					ip.SetDst(netip.MustParsePrefix("192.168.0.0/16"))
					ip.SetOutIface("eth+")
					ip.InvFlags = InvDstIP | InvViaOut
				}),
				Jump: "ACCEPT",
			}))
			return mustReplace(t, b, 4)
		},
	},
	{
		name: "counters",
		script: `iptables-legacy-restore -w -c <<'RULES'
*filter
:INPUT ACCEPT [10:1000]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [3:180]
[5:300] -A INPUT -p tcp -m tcp --dport 80 -j ACCEPT
COMMIT
RULES
`,
		build: func(t testing.TB) []byte {
			b := NewFilterBuilder()
			must(t, b.SetPolicy("INPUT", VerdictAccept, Counters{Pcnt: 10, Bcnt: 1000}))
			must(t, b.SetPolicy("FORWARD", VerdictDrop, Counters{}))
			must(t, b.SetPolicy("OUTPUT", VerdictAccept, Counters{Pcnt: 3, Bcnt: 180}))
			must(t, b.Append("INPUT", RuleSpec{
				IP:       IP{Proto: ProtoTCP},
				Matches:  []Match{NewMatch(&TCP{SrcPorts: anyPorts(), DstPorts: [2]uint16{80, 80}})},
				Jump:     "ACCEPT",
				Counters: Counters{Pcnt: 5, Bcnt: 300},
			}))
			return mustReplace(t, b, 4)
		},
	},
}

// sequence is a series of iptables-legacy commands whose every sockopt call
// testdata/sequence.capture records with the kernel's answers: the oracle
// for GET_INFO and GET_ENTRIES after replaces and counter updates, with
// libiptc sending back the comefrom values the kernel computed. It only
// ever runs through kerneltest.Capture, in a private network namespace.
const sequence = `iptables-legacy -w -N allow
iptables-legacy -w -A INPUT -p tcp --dport 22 -j allow
iptables-legacy -w -A allow -j ACCEPT
iptables-legacy -w -I INPUT 1 -i lo -j ACCEPT
iptables-legacy -w -A OUTPUT -p udp -m multiport --dports 53,123 -g allow
iptables-legacy -w -Z
iptables-legacy -w -P FORWARD DROP
iptables-legacy -w -L -n -v -x >/dev/null
iptables-legacy -w -D INPUT 2
iptables-legacy -w -D OUTPUT 1
iptables-legacy -w -F allow
iptables-legacy -w -X allow
iptables-legacy-restore -w -c <<'RULES'
*filter
:INPUT ACCEPT [10:1000]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [3:180]
:chain - [0:0]
[5:300] -A INPUT -p tcp -m tcp --dport 80 -j ACCEPT
[7:700] -A INPUT -j chain
[1:100] -A chain -j RETURN
COMMIT
RULES
iptables-legacy -w -A FORWARD -m comment --comment forwarded -j ACCEPT
iptables-legacy -w -Z INPUT
iptables-legacy-save -c >/dev/null
`

// TestLibiptcBlobs checks that Builder makes what iptables-legacy makes,
// against the testdata; -update first rewrites the testdata from fresh
// captures.
func TestLibiptcBlobs(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			file := sc.name + ".hex"
			if *update {
				replaces := kerneltest.Replaces(kerneltest.Capture(t, sc.script))
				if len(replaces) != 1 {
					t.Fatalf("%d replaces captured, want 1", len(replaces))
				}
				writeHex(t, file, "IPT_SO_SET_REPLACE sent by iptables-legacy v1.8.9 (counters pointer zeroed) for:\n"+sc.script, zeroCountersPtr(replaces[0]))
			}
			want := readHex(t, file)
			got := sc.build(t)
			if !bytes.Equal(got, want) {
				t.Fatalf("Builder differs from iptables-legacy:\n%s", diffHex(got, want))
			}
		})
	}
	if *update {
		writeCapture(t, "sequence.capture", sequence, kerneltest.Capture(t, sequence))
	}
}

// TestCaptureNow compares fresh captures with the testdata, so that a
// change of iptables-legacy shows.
func TestCaptureNow(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	for _, sc := range scenarios {
		replaces := kerneltest.Replaces(kerneltest.Capture(t, sc.script))
		if len(replaces) != 1 {
			t.Fatalf("%s: %d replaces captured, want 1", sc.name, len(replaces))
		}
		if got, want := zeroCountersPtr(replaces[0]), readHex(t, sc.name+".hex"); !bytes.Equal(got, want) {
			t.Errorf("%s: capture differs from testdata:\n%s", sc.name, diffHex(got, want))
		}
	}
}

// diffHex shows where two blobs first differ.
func diffHex(got, want []byte) string {
	n := min(len(got), len(want))
	i := 0
	for i < n && got[i] == want[i] {
		i++
	}
	lo := max(0, i-16) &^ 15
	return "lengths " + strconv.Itoa(len(got)) + " / " + strconv.Itoa(len(want)) +
		", first difference at " + strconv.Itoa(i) +
		"\ngot:  " + hexRange(got, lo, lo+64) + "\nwant: " + hexRange(want, lo, lo+64)
}

func hexRange(b []byte, lo, hi int) string {
	if lo > len(b) {
		return ""
	}
	const digits = "0123456789abcdef"
	out := []byte(strconv.Itoa(lo) + ":")
	for i, c := range b[lo:min(hi, len(b))] {
		if i%8 == 0 {
			out = append(out, ' ')
		}
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
