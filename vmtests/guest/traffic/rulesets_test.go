//go:build vmguest

package traffic

import (
	"fmt"
	"strings"
)

// ruleSet is a filter table (iptables-legacy-restore input) and what
// ip_tables must do with some of the probes: the reference run has to
// show that the rules bite, or a probe that never arrives for some other
// reason could make both backends agree for nothing.
type ruleSet struct {
	name   string
	policy map[string]string // builtin chain -> policy; ACCEPT if absent
	rules  string            // ":chain - [0:0]" lines and -A rules
	pass   []string          // probes that must arrive ("*": all of them)
	drop   []string          // probes that must not ("*": none may)
}

// restore is rs as iptables-legacy-restore input.
func (rs ruleSet) restore() string {
	var b strings.Builder
	b.WriteString("*filter\n")
	for _, c := range []string{"INPUT", "FORWARD", "OUTPUT"} {
		p := rs.policy[c]
		if p == "" {
			p = "ACCEPT"
		}
		fmt.Fprintf(&b, ":%s %s [0:0]\n", c, p)
	}
	for _, l := range strings.Split(strings.TrimSpace(rs.rules), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			b.WriteString(l + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

var all = []string{"*"}

var drop3 = map[string]string{"INPUT": "DROP", "FORWARD": "DROP", "OUTPUT": "DROP"}

var ruleSets = []ruleSet{
	// Baselines: every probe can arrive, and none passes a closed door.
	{name: "accept everything", pass: all},
	{name: "drop policies", policy: drop3, drop: all},

	// Policies and plain targets.
	{name: "seed 002", rules: `-A INPUT -p udp --dport 23 -j DROP`,
		drop: []string{"in-udp23", "lo-udp23"},
		pass: []string{"in-udp24", "fwd-udp23", "out-udp23", "fwd-frag-udp"}},
	{name: "input policy drop, ssh accepted", policy: map[string]string{"INPUT": "DROP"},
		rules: `-A INPUT -p tcp --dport 22 -j ACCEPT`,
		pass:  []string{"in-tcp22-syn", "lo-tcp22-syn", "fwd-udp23", "out-udp23"},
		drop:  []string{"in-udp24", "in-tcp80-syn", "lo-udp23", "in-icmp-echo"}},
	{name: "forward policy drop, udp accepted", policy: map[string]string{"FORWARD": "DROP"},
		rules: `-A FORWARD -p udp -j ACCEPT`,
		pass:  []string{"fwd-udp23", "fwd-frag-udp", "fwd-udp-truncated", "in-tcp80-syn"},
		drop:  []string{"fwd-tcp22-syn", "fwd-icmp-echo", "fwd-p253-remote", "fwd-frag1-tcp"}},
	{name: "output policy drop, icmp accepted", policy: map[string]string{"OUTPUT": "DROP"},
		rules: `-A OUTPUT -p icmp -j ACCEPT`,
		pass:  []string{"out-icmp-echo-server2", "out-icmp-portunreach", "lo-icmp-echo-dut2", "in-udp23"},
		drop:  []string{"out-udp23", "out-tcp22-syn", "lo-udp23", "lo-tcp22-syn", "out-frag-udp"}},
	{name: "policies drop, accept rules", policy: map[string]string{"FORWARD": "DROP", "OUTPUT": "DROP"},
		rules: `
-A FORWARD -d 10.2.0.2 -j ACCEPT
-A OUTPUT -p tcp -j ACCEPT`,
		pass: []string{"fwd-udp23", "fwd-icmp-echo", "out-tcp22-syn", "lo-tcp22-syn", "in-udp23"},
		drop: []string{"fwd-tcp80-syn-remote", "fwd-tcp443-rstack-server2", "out-udp23", "lo-udp23"}},
	{name: "first match wins", rules: `
-A INPUT -p udp --dport 24 -j ACCEPT
-A INPUT -p udp --dport 20:30 -j DROP
-A INPUT -s 10.77.1.1 -j ACCEPT
-A INPUT -j DROP`,
		pass: []string{"in-udp24", "in-tcp22-syn", "in-icmp-echo"},
		drop: []string{"in-udp23", "in-tcp80-syn", "lo-udp23", "lo-tcp22-syn"}},

	// Addresses and masks.
	{name: "source host", rules: `
-A INPUT -s 10.77.1.1 -j DROP
-A FORWARD -s 10.77.1.1/32 -j DROP`,
		drop: []string{"in-udp23", "fwd-udp23", "fwd-frag-udp"},
		pass: []string{"in-tcp80-syn", "fwd-udp24", "out-udp24-srcA"}},
	{name: "source /16", rules: `-A FORWARD -s 10.77.0.0/16 -j DROP`,
		drop: []string{"fwd-udp23", "fwd-udp2000-remote"},
		pass: []string{"fwd-udp24", "fwd-tcp80-syn-remote", "in-udp23"}},
	{name: "source /25", rules: `-A INPUT -s 10.77.1.128/25 -j DROP`,
		drop: []string{"in-udp1500", "in-tcp80-syn"},
		pass: []string{"in-udp23", "in-udp53"}},
	{name: "not source", rules: `-A INPUT ! -s 10.77.1.0/24 -j DROP`,
		drop: []string{"in-udp53", "in-tcp443-ack", "lo-udp23"},
		pass: []string{"in-udp23", "in-udp1500"}},
	{name: "destination", rules: `
-A INPUT -d 10.1.0.9 -j DROP
-A FORWARD -d 10.3.0.0/16 -j DROP`,
		drop: []string{"in-udp3000-dut2", "in-icmp-reply-dut2", "lo-icmp-echo-dut2", "fwd-udp2000-remote", "fwd-tcp80-syn-remote"},
		pass: []string{"in-udp23", "fwd-udp23", "lo-udp23"}},
	{name: "destination /31", rules: `-A FORWARD -d 10.2.0.2/31 -j DROP`,
		drop: []string{"fwd-udp23", "fwd-tcp443-rstack-server2"},
		pass: []string{"fwd-tcp80-syn-remote", "fwd-p253-remote"}},
	{name: "not destination", rules: `-A OUTPUT ! -d 10.2.0.2 -j DROP`,
		drop: []string{"out-udp53-remote", "out-icmp-echo-server2", "lo-udp23"},
		pass: []string{"out-udp23", "out-tcp22-syn", "out-frag-udp"}},

	// Interfaces.
	{name: "in interface", rules: `-A INPUT -i veth-c0 -j DROP`,
		drop: []string{"in-udp23", "in-icmp-echo"},
		pass: []string{"lo-udp23", "fwd-udp23"}},
	{name: "in interface lo", rules: `-A INPUT -i lo -j DROP`,
		drop: []string{"lo-udp23", "lo-tcp22-syn"},
		pass: []string{"in-udp23", "out-udp23"}},
	{name: "in interface wildcard", rules: `
-A FORWARD -i veth+ -p tcp -j DROP
-A INPUT -i vet+ -p udp -j DROP`,
		drop: []string{"fwd-tcp22-syn", "in-udp23"},
		pass: []string{"fwd-udp23", "lo-udp23", "in-tcp22-syn"}},
	{name: "not in interface", rules: `-A INPUT ! -i veth-c0 -j DROP`,
		drop: []string{"lo-udp23", "lo-icmp-echo-dut2"},
		pass: []string{"in-udp23"}},
	{name: "out interface", rules: `
-A OUTPUT -o veth-s0 -p udp -j DROP
-A OUTPUT -o lo -p icmp -j DROP`,
		drop: []string{"out-udp23", "out-frag-udp", "lo-icmp-echo-dut2"},
		pass: []string{"out-tcp22-syn", "lo-udp23", "fwd-udp23"}},
	{name: "in and out wildcards", rules: `-A FORWARD -i veth-c+ -o veth-s+ -p tcp -j DROP`,
		drop: []string{"fwd-tcp22-syn", "fwd-frag1-tcp"},
		pass: []string{"fwd-udp23", "out-tcp22-syn"}},
	{name: "not out wildcard", rules: `
-A FORWARD ! -o eth+ -j DROP
-A OUTPUT ! -o veth-s+ -j DROP`,
		drop: []string{"fwd-udp23", "fwd-icmp-echo", "lo-udp23"},
		pass: []string{"out-udp23", "in-udp23"}},

	// Protocols and fragments.
	{name: "protocol udp", rules: `
-A INPUT -p udp -j DROP
-A FORWARD -p udp -j DROP
-A OUTPUT -p udp -j DROP`,
		drop: []string{"in-udp23", "fwd-frag-udp", "fwd-udp-truncated", "out-udp24", "lo-udp23"},
		pass: []string{"in-tcp22-syn", "fwd-icmp-echo", "out-icmp-echo-server2", "lo-tcp22-syn"}},
	{name: "not protocol tcp", rules: `-A INPUT ! -p tcp -j DROP`,
		drop: []string{"in-udp23", "in-icmp-echo", "in-p253"},
		pass: []string{"in-tcp22-syn", "lo-tcp22-syn"}},
	{name: "protocol icmp, not icmp", rules: `
-A FORWARD -p icmp -j DROP
-A OUTPUT ! -p icmp -j DROP`,
		drop: []string{"fwd-icmp-echo", "out-udp23", "lo-udp23"},
		pass: []string{"fwd-udp23", "out-icmp-echo-server2", "lo-icmp-echo-dut2"}},
	{name: "protocol number", rules: `
-A INPUT -p 253 -j DROP
-A FORWARD -p 253 -j DROP`,
		drop: []string{"in-p253", "fwd-p253-remote"},
		pass: []string{"in-udp23", "fwd-udp23"}},
	{name: "fragments", rules: `
-A FORWARD -f -j DROP
-A OUTPUT -f -j DROP`,
		drop: []string{"fwd-frag-udp", "fwd-frag1-tcp", "out-frag-udp"},
		pass: []string{"fwd-firstfrag-udp23", "fwd-udp23", "out-udp23"}},
	{name: "not fragments", rules: `-A FORWARD ! -f -p udp -j DROP`,
		drop: []string{"fwd-udp23", "fwd-firstfrag-udp23", "fwd-udp-truncated"},
		pass: []string{"fwd-frag-udp", "fwd-tcp22-syn"}},

	// UDP and TCP ports.
	{name: "udp source port", rules: `
-A INPUT -p udp --sport 53 -j DROP
-A OUTPUT -p udp --sport 53 -j DROP`,
		drop: []string{"in-udp53", "out-udp53-remote"},
		pass: []string{"in-udp23", "out-udp23"}},
	{name: "udp destination port range", rules: `
-A INPUT -p udp --dport 1000:2999 -j DROP
-A FORWARD -p udp --dport 1000:2999 -j DROP`,
		drop: []string{"in-udp1500", "fwd-udp2000-remote", "fwd-udp-truncated"},
		pass: []string{"in-udp3000-dut2", "fwd-udp23", "fwd-frag-udp", "fwd-firstfrag-udp23"}},
	{name: "not udp destination port", rules: `-A INPUT -p udp ! --dport 23 -j DROP`,
		drop: []string{"in-udp24", "in-udp53"},
		pass: []string{"in-udp23", "lo-udp23"}},
	{name: "not udp source port range", rules: `-A INPUT -p udp ! --sport 5000:5100 -j DROP`,
		drop: []string{"in-udp53", "in-udp3000-dut2"},
		pass: []string{"in-udp23", "in-udp1500"}},
	{name: "tcp ports", rules: `
-A INPUT -p tcp --dport 22 -j DROP
-A FORWARD -p tcp --sport 40000 -j DROP`,
		drop: []string{"in-tcp22-syn", "lo-tcp22-syn", "fwd-tcp22-syn", "fwd-frag1-tcp"},
		pass: []string{"in-tcp80-syn", "fwd-tcp80-syn-remote", "fwd-udp23"}},
	{name: "not tcp destination port range", rules: `-A INPUT -p tcp ! --dport 1:1023 -j DROP`,
		drop: []string{"in-tcp8080-xmas", "in-tcp-synack-from22"},
		pass: []string{"in-tcp22-syn", "in-tcp443-ack"}},

	// TCP flags.
	{name: "syn", rules: `
-A INPUT -p tcp --syn -j DROP
-A FORWARD -p tcp --syn -j DROP`,
		drop: []string{"in-tcp22-syn", "in-tcp80-syn", "fwd-tcp22-syn"},
		pass: []string{"in-tcp443-ack", "in-tcp-synack-from22", "fwd-tcp443-rstack-server2"}},
	{name: "not syn", rules: `-A INPUT -p tcp ! --syn -j DROP`,
		drop: []string{"in-tcp443-ack", "in-tcp-synack-from22", "in-tcp8080-xmas"},
		pass: []string{"in-tcp22-syn", "lo-tcp22-syn"}},
	{name: "tcp flags syn,ack", rules: `-A INPUT -p tcp --tcp-flags SYN,ACK SYN,ACK -j DROP`,
		drop: []string{"in-tcp-synack-from22"},
		pass: []string{"in-tcp22-syn", "in-tcp443-ack"}},
	{name: "tcp flags all", rules: `-A INPUT -p tcp --tcp-flags ALL FIN,PSH,URG -j DROP`,
		drop: []string{"in-tcp8080-xmas"},
		pass: []string{"in-tcp22-syn", "in-tcp443-ack"}},
	{name: "not tcp flags", rules: `-A FORWARD -p tcp ! --tcp-flags RST RST -j DROP`,
		drop: []string{"fwd-tcp22-syn", "fwd-tcp1500-finack"},
		pass: []string{"fwd-tcp443-rstack-server2", "fwd-udp23"}},

	// ICMP types and codes.
	{name: "icmp type by name", rules: `
-A INPUT -p icmp --icmp-type echo-request -j DROP
-A OUTPUT -p icmp --icmp-type echo-request -j DROP`,
		drop: []string{"in-icmp-echo", "out-icmp-echo-server2", "lo-icmp-echo-dut2"},
		pass: []string{"in-icmp-portunreach", "in-icmp-reply-dut2", "out-icmp-portunreach"}},
	{name: "icmp type and code", rules: `
-A INPUT -p icmp --icmp-type 3/3 -j DROP
-A FORWARD -p icmp --icmp-type 3 -j DROP`,
		drop: []string{"in-icmp-portunreach", "fwd-icmp-hostunreach-server2"},
		pass: []string{"in-icmp-echo", "fwd-icmp-echo", "fwd-icmp-timex-remote"}},
	{name: "not icmp type", rules: `-A FORWARD -p icmp ! --icmp-type 8 -j DROP`,
		drop: []string{"fwd-icmp-timex-remote", "fwd-icmp-hostunreach-server2"},
		pass: []string{"fwd-icmp-echo", "fwd-udp23"}},
	{name: "icmp names with codes", rules: `
-A FORWARD -p icmp --icmp-type time-exceeded -j DROP
-A OUTPUT -p icmp --icmp-type port-unreachable -j DROP
-A INPUT -p icmp ! --icmp-type host-unreachable -j DROP`,
		drop: []string{"fwd-icmp-timex-remote", "out-icmp-portunreach", "in-icmp-echo", "in-icmp-portunreach"},
		pass: []string{"fwd-icmp-echo", "out-icmp-echo-server2", "in-udp23"}},

	// multiport.
	{name: "multiport dports", rules: `-A INPUT -p tcp -m multiport --dports 22,80,443 -j DROP`,
		drop: []string{"in-tcp22-syn", "in-tcp80-syn", "in-tcp443-ack"},
		pass: []string{"in-tcp8080-xmas", "in-tcp-synack-from22"}},
	{name: "multiport sports", rules: `
-A INPUT -p udp -m multiport --sports 53,5050 -j DROP
-A FORWARD -p udp -m multiport --sports 5353 -j DROP`,
		drop: []string{"in-udp53", "in-udp1500", "fwd-udp2000-remote"},
		pass: []string{"in-udp23", "fwd-udp23"}},
	{name: "multiport ports and ranges", rules: `
-A FORWARD -p udp -m multiport --ports 23,1000:2999 -j DROP
-A INPUT -p tcp -m multiport --ports 22 -j DROP`,
		drop: []string{"fwd-udp23", "fwd-udp2000-remote", "fwd-firstfrag-udp23", "in-tcp22-syn", "in-tcp-synack-from22"},
		pass: []string{"fwd-udp24", "fwd-frag-udp", "fwd-udp-truncated", "in-tcp80-syn"}},
	{name: "not multiport", rules: `-A INPUT -p udp -m multiport ! --dports 23,24,53 -j DROP`,
		drop: []string{"in-udp1500", "in-udp3000-dut2"},
		pass: []string{"in-udp23", "in-udp24", "in-udp53"}},

	// iprange.
	{name: "iprange source", rules: `
-A INPUT -m iprange --src-range 10.77.1.1-10.77.1.150 -j DROP
-A FORWARD -m iprange --src-range 10.77.1.1-10.77.1.150 -j DROP`,
		drop: []string{"in-udp23", "fwd-udp23"},
		pass: []string{"in-udp1500", "fwd-udp24", "fwd-udp2000-remote"}},
	{name: "iprange destination, not", rules: `
-A FORWARD -m iprange --dst-range 10.2.0.3-10.3.0.255 -j DROP
-A OUTPUT -m iprange ! --dst-range 10.2.0.0-10.2.0.2 -j DROP`,
		drop: []string{"fwd-tcp443-rstack-server2", "fwd-udp2000-remote", "out-icmp-echo-server2", "out-udp53-remote", "lo-udp23"},
		pass: []string{"fwd-udp23", "out-udp23"}},
	{name: "iprange not source and destination", rules: `-A INPUT -m iprange ! --src-range 10.77.0.0-10.77.255.255 --dst-range 10.1.0.1-10.1.0.1 -j DROP`,
		drop: []string{"in-udp53", "in-tcp443-ack", "lo-udp23"},
		pass: []string{"in-udp23", "lo-icmp-echo-dut2", "in-icmp-reply-dut2"}},

	// comment.
	{name: "comment", rules: `
-A INPUT -p udp --dport 23 -m comment --comment "no telnet" -j DROP
-A FORWARD -m comment --comment "count only"`,
		drop: []string{"in-udp23"},
		pass: []string{"in-udp24", "fwd-udp23"}},

	// User chains: jump, goto, RETURN.
	{name: "user chain", rules: `
:udpin - [0:0]
-A INPUT -p udp -j udpin
-A udpin -p udp --dport 23 -j DROP
-A udpin -s 10.78.0.0/16 -j DROP`,
		drop: []string{"in-udp23", "in-udp53"},
		pass: []string{"in-udp24", "in-tcp443-ack"}},
	{name: "user chain return", rules: `
:filt - [0:0]
-A FORWARD -j filt
-A FORWARD -p icmp -j DROP
-A filt -s 10.78.0.0/16 -j RETURN
-A filt -p udp -j DROP`,
		drop: []string{"fwd-udp23", "fwd-icmp-echo", "fwd-icmp-timex-remote"},
		pass: []string{"fwd-udp24", "fwd-tcp22-syn"}},
	{name: "goto, then return to the policy", rules: `
:g - [0:0]
-A INPUT -p udp -g g
-A INPUT -p udp -j DROP
-A g -p udp --dport 23 -j DROP
-A g -j RETURN`,
		drop: []string{"in-udp23", "lo-udp23"},
		pass: []string{"in-udp24", "in-udp53"}},
	{name: "jump returns to the next rule", rules: `
:g - [0:0]
-A INPUT -p udp -j g
-A INPUT -p udp -j DROP
-A g -p udp --dport 23 -j DROP
-A g -j RETURN`,
		drop: []string{"in-udp23", "in-udp24"},
		pass: []string{"in-tcp22-syn"}},
	{name: "nested chains", policy: map[string]string{}, rules: `
:c1 - [0:0]
:c2 - [0:0]
-A OUTPUT -j c1
-A OUTPUT -j DROP
-A c1 -p tcp -j c2
-A c1 -p udp --dport 23 -j DROP
-A c1 -j ACCEPT
-A c2 -p tcp --dport 22 -j DROP
-A c2 -j RETURN`,
		drop: []string{"out-tcp22-syn", "out-udp23", "lo-tcp22-syn"},
		pass: []string{"out-tcp80-ack-remote", "out-udp24", "out-icmp-echo-server2"}},
	{name: "goto from a user chain", rules: `
:a - [0:0]
:b - [0:0]
-A FORWARD -j a
-A FORWARD -p udp --sport 5353 -j DROP
-A a -p udp -g b
-A b -p udp --dport 24 -j RETURN
-A b -j DROP`,
		drop: []string{"fwd-udp23", "fwd-udp2000-remote"},
		pass: []string{"fwd-udp24", "fwd-tcp22-syn"}},
	{name: "policy drop, user chain accepts", policy: map[string]string{"INPUT": "DROP"}, rules: `
:allow - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -j allow
-A allow -p icmp --icmp-type echo-request -j ACCEPT
-A allow -s 10.78.0.5 -j ACCEPT`,
		pass: []string{"lo-udp23", "in-icmp-echo", "in-udp53", "in-tcp443-ack"},
		drop: []string{"in-udp23", "in-tcp22-syn", "in-icmp-reply-dut2"}},

	// Every ipt_ip field and a match in one rule.
	{name: "all fields at once", rules: `-A FORWARD -s 10.77.0.0/16 -d 10.2.0.2/32 -i veth-c0 -o veth-s0 -p udp -m udp --sport 5000 --dport 23 -m comment --comment all -j DROP`,
		drop: []string{"fwd-udp23", "fwd-firstfrag-udp23"},
		pass: []string{"fwd-udp24", "fwd-frag-udp", "out-udp23"}},
}
