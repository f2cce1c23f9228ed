//go:build vmguest

package iptables

// A scenario is a list of iptables-legacy invocations run from a fresh
// filter table; each is run once against bpfilter and once against the
// kernel's ip_tables, and everything they print must be the same.
type step struct {
	cmd   string // iptables-legacy, iptables-legacy-save or iptables-legacy-restore
	args  []string
	stdin string
}

type scenario struct {
	name  string
	steps []step
}

func ipt(args ...string) step { return step{cmd: "iptables-legacy", args: args} }

func restore(input string, args ...string) step {
	return step{cmd: "iptables-legacy-restore", args: args, stdin: input}
}

// save dumps the filter table.
func save(args ...string) step {
	return step{cmd: "iptables-legacy-save", args: append(args, "-t", "filter")}
}

// saveAll is iptables-legacy-save without -t, as netfilter-persistent
// runs it: every table that /proc/net/ip_tables_names names, the filter
// table among them whichever backend holds it.
func saveAll(args ...string) step {
	return step{cmd: "iptables-legacy-save", args: args}
}

var scenarios = []scenario{
	{"seed-002 transcript", []step{
		ipt("-L", "-n"),
		ipt("-A", "INPUT", "-p", "udp", "--dport", "23", "-j", "DROP"),
		ipt("-L", "-n"),
		ipt("-F"),
		ipt("-L", "-n"),
	}},
	{"append and list verbosely", []step{
		ipt("-A", "INPUT", "-s", "10.0.0.0/8", "-j", "ACCEPT"),
		ipt("-A", "INPUT", "-d", "192.168.1.1", "-p", "tcp", "--dport", "22", "-j", "DROP"),
		ipt("-A", "OUTPUT", "-o", "eth+", "-j", "ACCEPT"),
		ipt("-L", "-n", "-v", "-x", "--line-numbers"),
	}},
	{"insert at positions", []step{
		ipt("-A", "INPUT", "-p", "tcp", "-j", "ACCEPT"),
		ipt("-I", "INPUT", "1", "-p", "udp", "-j", "DROP"),
		ipt("-I", "INPUT", "2", "-p", "icmp", "-j", "ACCEPT"),
		ipt("-I", "INPUT", "-s", "1.2.3.4", "-j", "DROP"),
		ipt("-S"),
	}},
	{"insert past the end fails", []step{
		ipt("-I", "INPUT", "5", "-j", "ACCEPT"),
	}},
	{"delete by rule and by number", []step{
		ipt("-A", "FORWARD", "-p", "tcp", "--sport", "80", "-j", "ACCEPT"),
		ipt("-A", "FORWARD", "-p", "udp", "--sport", "53", "-j", "ACCEPT"),
		ipt("-A", "FORWARD", "-j", "DROP"),
		ipt("-D", "FORWARD", "-p", "udp", "--sport", "53", "-j", "ACCEPT"),
		ipt("-D", "FORWARD", "2"),
		ipt("-S", "FORWARD"),
	}},
	{"delete a missing rule fails", []step{
		ipt("-D", "INPUT", "-p", "tcp", "--dport", "1", "-j", "DROP"),
		ipt("-D", "INPUT", "3"),
	}},
	{"replace", []step{
		ipt("-A", "OUTPUT", "-p", "tcp", "--dport", "443", "-j", "ACCEPT"),
		ipt("-A", "OUTPUT", "-p", "tcp", "--dport", "80", "-j", "ACCEPT"),
		ipt("-R", "OUTPUT", "2", "-p", "tcp", "--dport", "8080", "-j", "DROP"),
		ipt("-R", "OUTPUT", "3", "-j", "DROP"),
		ipt("-S"),
	}},
	{"check", []step{
		ipt("-A", "INPUT", "-p", "udp", "--dport", "23", "-j", "DROP"),
		ipt("-C", "INPUT", "-p", "udp", "--dport", "23", "-j", "DROP"),
		ipt("-C", "INPUT", "-p", "udp", "--dport", "24", "-j", "DROP"),
	}},
	{"user chains", []step{
		ipt("-N", "web"),
		ipt("-N", "ssh"),
		ipt("-A", "web", "-p", "tcp", "--dport", "80", "-j", "ACCEPT"),
		ipt("-A", "web", "-j", "RETURN"),
		ipt("-A", "ssh", "-s", "10.1.0.0/16", "-j", "ACCEPT"),
		ipt("-A", "ssh", "-j", "DROP"),
		ipt("-A", "INPUT", "-p", "tcp", "-j", "web"),
		ipt("-A", "INPUT", "-p", "tcp", "--dport", "22", "-g", "ssh"),
		ipt("-S"),
		ipt("-L", "-n", "-v", "--line-numbers"),
	}},
	{"create an existing chain fails", []step{
		ipt("-N", "dup"),
		ipt("-N", "dup"),
		ipt("-N", "INPUT"),
	}},
	{"delete chains", []step{
		ipt("-N", "a"),
		ipt("-N", "b"),
		ipt("-N", "c"),
		ipt("-X", "b"),
		ipt("-S"),
		ipt("-X"),
		ipt("-S"),
	}},
	{"delete a referenced chain fails", []step{
		ipt("-N", "used"),
		ipt("-A", "INPUT", "-j", "used"),
		ipt("-X", "used"),
		ipt("-S"),
	}},
	{"delete a non-empty chain fails", []step{
		ipt("-N", "full"),
		ipt("-A", "full", "-j", "ACCEPT"),
		ipt("-X", "full"),
		ipt("-F", "full"),
		ipt("-X", "full"),
		ipt("-S"),
	}},
	{"jump to a missing chain fails", []step{
		ipt("-A", "INPUT", "-j", "nowhere"),
		ipt("-S"),
	}},
	{"jump loop is refused", []step{
		ipt("-N", "a"),
		ipt("-N", "b"),
		ipt("-A", "a", "-j", "b"),
		ipt("-A", "b", "-j", "a"),
		ipt("-S"),
	}},
	{"rename", []step{
		ipt("-N", "old"),
		ipt("-A", "old", "-j", "ACCEPT"),
		ipt("-A", "INPUT", "-j", "old"),
		ipt("-E", "old", "new"),
		ipt("-S"),
		ipt("-E", "missing", "other"),
	}},
	{"policies", []step{
		ipt("-P", "INPUT", "DROP"),
		ipt("-P", "FORWARD", "DROP"),
		ipt("-P", "OUTPUT", "ACCEPT"),
		ipt("-L", "-n"),
		ipt("-N", "u"),
		ipt("-P", "u", "DROP"),
		ipt("-P", "INPUT", "RETURN"),
	}},
	{"flush one chain and all", []step{
		ipt("-A", "INPUT", "-j", "ACCEPT"),
		ipt("-A", "OUTPUT", "-j", "ACCEPT"),
		ipt("-F", "INPUT"),
		ipt("-S"),
		ipt("-F"),
		ipt("-S"),
	}},
	{"zero counters", []step{
		ipt("-A", "INPUT", "-j", "ACCEPT"),
		restore("*filter\n[5:500] -A INPUT -p tcp -j ACCEPT\nCOMMIT\n", "-c", "--noflush"),
		ipt("-L", "-n", "-v", "-x"),
		ipt("-Z", "INPUT"),
		ipt("-L", "-n", "-v", "-x"),
		ipt("-Z"),
		ipt("-L", "-n", "-v", "-x"),
	}},
	{"list one chain and one rule", []step{
		ipt("-A", "INPUT", "-p", "tcp", "-j", "ACCEPT"),
		ipt("-A", "INPUT", "-p", "udp", "-j", "ACCEPT"),
		ipt("-L", "INPUT", "2", "-n"),
		ipt("-S", "INPUT", "1"),
		ipt("-L", "nochain", "-n"),
	}},
	{"interfaces and wildcards", []step{
		ipt("-A", "INPUT", "-i", "lo", "-j", "ACCEPT"),
		ipt("-A", "INPUT", "-i", "veth+", "-j", "DROP"),
		ipt("-A", "FORWARD", "-i", "eth0", "-o", "eth1", "-j", "ACCEPT"),
		ipt("-A", "FORWARD", "!", "-i", "eth0", "!", "-o", "wg+", "-j", "DROP"),
		ipt("-S"),
	}},
	{"inversions", []step{
		ipt("-A", "INPUT", "!", "-s", "10.0.0.0/8", "!", "-d", "10.0.0.1", "-j", "DROP"),
		ipt("-A", "INPUT", "!", "-p", "tcp", "-j", "ACCEPT"),
		ipt("-A", "INPUT", "-p", "tcp", "!", "--dport", "22", "-j", "DROP"),
		ipt("-A", "INPUT", "-p", "udp", "!", "--sport", "1000:2000", "-j", "DROP"),
		ipt("-S"),
	}},
	{"fragments", []step{
		ipt("-A", "INPUT", "-f", "-j", "DROP"),
		ipt("-A", "INPUT", "!", "-f", "-p", "icmp", "-j", "ACCEPT"),
		ipt("-S"),
	}},
	{"tcp flags and ports", []step{
		ipt("-A", "INPUT", "-p", "tcp", "--tcp-flags", "SYN,ACK", "SYN", "-j", "DROP"),
		ipt("-A", "INPUT", "-p", "tcp", "--syn", "--dport", "1024:65535", "-j", "ACCEPT"),
		ipt("-A", "INPUT", "-p", "tcp", "--sport", "1:1023", "-j", "DROP"),
		ipt("-L", "-n", "-v"),
		ipt("-S"),
	}},
	{"icmp types", []step{
		ipt("-A", "INPUT", "-p", "icmp", "--icmp-type", "echo-request", "-j", "ACCEPT"),
		ipt("-A", "INPUT", "-p", "icmp", "--icmp-type", "3/4", "-j", "ACCEPT"),
		ipt("-A", "INPUT", "-p", "icmp", "!", "--icmp-type", "any", "-j", "DROP"),
		ipt("-S"),
	}},
	{"multiport", []step{
		ipt("-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "22,80,443,8000:8080", "-j", "ACCEPT"),
		ipt("-A", "INPUT", "-p", "udp", "-m", "multiport", "!", "--sports", "53,123", "-j", "DROP"),
		ipt("-A", "INPUT", "-p", "tcp", "-m", "multiport", "--ports", "25", "-j", "DROP"),
		ipt("-S"),
		ipt("-L", "-n"),
	}},
	{"iprange", []step{
		ipt("-A", "INPUT", "-m", "iprange", "--src-range", "10.0.0.1-10.0.0.50", "-j", "DROP"),
		ipt("-A", "INPUT", "-m", "iprange", "!", "--dst-range", "192.168.0.1-192.168.0.9", "-j", "ACCEPT"),
		ipt("-S"),
	}},
	{"comments", []step{
		ipt("-A", "INPUT", "-p", "tcp", "-m", "comment", "--comment", "allow web", "-j", "ACCEPT"),
		ipt("-A", "INPUT", "-m", "comment", "--comment", "x", "-j", "DROP"),
		ipt("-S"),
		ipt("-L", "-n"),
	}},
	{"save and restore", []step{
		restore("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:chain1 - [0:0]\n" +
			"-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m multiport --dports 22,80 -j chain1\n" +
			"-A chain1 -s 10.0.0.0/8 -j ACCEPT\n-A chain1 -j RETURN\nCOMMIT\n"),
		save(),
		saveAll(),
		ipt("-S"),
	}},
	{"save without -t after a restore", []step{
		restore("*filter\n:INPUT DROP [3:180]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [9:540]\n:keep - [0:0]\n"+
			"[4:240] -A INPUT -i lo -j ACCEPT\n[1:60] -A INPUT -p tcp -m tcp --dport 22 -j keep\n"+
			"-A keep -s 10.0.0.0/8 -j ACCEPT\n-A keep -j RETURN\nCOMMIT\n", "-c"),
		saveAll(),
		saveAll("-c"),
		ipt("-F"),
		saveAll(),
	}},
	{"restore replaces, --noflush appends", []step{
		ipt("-A", "INPUT", "-j", "ACCEPT"),
		restore("*filter\n-A OUTPUT -j DROP\nCOMMIT\n", "--noflush"),
		ipt("-S"),
		restore("*filter\n-A FORWARD -j DROP\nCOMMIT\n"),
		ipt("-S"),
	}},
	{"restore with counters", []step{
		restore("*filter\n:INPUT ACCEPT [10:1000]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [3:300]\n"+
			"[7:700] -A INPUT -p tcp -j ACCEPT\n[1:60] -A OUTPUT -j ACCEPT\nCOMMIT\n", "-c"),
		save("-c"),
		saveAll("-c"),
		ipt("-L", "-n", "-v", "-x"),
	}},
	{"bad restore input changes nothing", []step{
		ipt("-A", "INPUT", "-j", "ACCEPT"),
		restore("*filter\n-A INPUT -j nowhere\nCOMMIT\n"),
		restore("*filter\n-A NOCHAIN -j ACCEPT\nCOMMIT\n"),
		ipt("-S"),
	}},
	{"goto and return", []step{
		ipt("-N", "g"),
		ipt("-N", "r"),
		ipt("-A", "r", "-p", "udp", "-j", "RETURN"),
		ipt("-A", "r", "-j", "DROP"),
		ipt("-A", "g", "-j", "r"),
		ipt("-A", "FORWARD", "-p", "udp", "-g", "g"),
		ipt("-A", "FORWARD", "-j", "RETURN"),
		ipt("-S"),
		save(),
	}},
	{"unknown extension", []step{
		ipt("-A", "INPUT", "-m", "nosuchmatch", "-j", "ACCEPT"),
		ipt("-A", "INPUT", "-j", "NOSUCHTARGET"),
		ipt("-S"),
	}},
	{"other tables are left to ip_tables", []step{
		ipt("-t", "raw", "-L", "-n"),
		ipt("-t", "nat", "-A", "PREROUTING", "-j", "ACCEPT"),
	}},
	{"many rules", manyRules(200)},
	// TestNonFatalWakeups' sequence, on a smaller table: a table restored
	// with counters, policies' included, then a rule appended by
	// iptables-legacy-restore --noflush (libiptc reads the table, replaces
	// it, and adds the counters it maps from the old table, which the
	// replace handed back, with SET_ADD_COUNTERS).
	{"restore with counters, then --noflush appends", noflushAppend("--noflush")},
	{"restore with counters, then --noflush -c appends", noflushAppend("--noflush", "-c")},
	{"restore with counters, then --noflush -c appends a counted rule", []step{
		restore(countedTable(20), "-c"),
		restore("*filter\n[6:600] -A INPUT -p udp --dport 9 -j DROP\nCOMMIT\n", "--noflush", "-c"),
		ipt("-L", "-v", "-x", "-n"),
		save("-c"),
	}},
	{"restore with counters, then --noflush -c sets a policy's", []step{
		restore(countedTable(20), "-c"),
		restore("*filter\n:FORWARD DROP [9:900]\n-A INPUT -p udp --dport 9 -j DROP\nCOMMIT\n", "--noflush", "-c"),
		ipt("-L", "-v", "-x", "-n"),
		save("-c"),
	}},
}

// countedTable has n rules in INPUT (and a user chain), rule i with the
// counters [i+1:(i+1)*64], and counters for the policies, for
// iptables-legacy-restore -c: lifecycle.countedTable's table.
func countedTable(n int) string {
	in := "*filter\n:INPUT ACCEPT [3:300]\n:FORWARD DROP [4:400]\n:OUTPUT ACCEPT [5:500]\n:web - [0:0]\n"
	for i := 0; i < n; i++ {
		in += "[" + itoa(i+1) + ":" + itoa((i+1)*64) + "] -A INPUT -s 172.20." + itoa((i/250)%250) + "." + itoa(i%250) +
			"/32 -p udp --dport " + itoa(1000+i%50000) + " -j DROP\n"
	}
	return in + "[7:700] -A INPUT -p tcp -j web\n[8:800] -A web -p tcp --dport 80 -j ACCEPT\nCOMMIT\n"
}

// noflushAppend restores countedTable(20) with -c, then appends a rule to
// INPUT with iptables-legacy-restore and args.
func noflushAppend(args ...string) []step {
	return []step{
		restore(countedTable(20), "-c"),
		ipt("-L", "-v", "-x", "-n"),
		restore("*filter\n-A INPUT -p udp --dport 9 -j DROP\nCOMMIT\n", args...),
		ipt("-L", "-v", "-x", "-n"),
		save("-c"),
	}
}

func manyRules(n int) []step {
	in := "*filter\n"
	for i := 0; i < n; i++ {
		in += "-A INPUT -s 10." + itoa(i/250) + "." + itoa(i%250) + ".0/24 -p tcp --dport " + itoa(1000+i) + " -j DROP\n"
	}
	in += "COMMIT\n"
	return []step{restore(in), ipt("-L", "-n", "--line-numbers"), ipt("-D", "INPUT", "100"), ipt("-S")}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}
