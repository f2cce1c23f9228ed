//go:build vmguest

package enforce

// What is in the kernel: BPF objects by id; and counters as
// iptables-legacy -L -v -x -n prints them.

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// objects are the BPF objects in the kernel, "prog 12" -> a description.
type objects map[string]string

// bpfObjects enumerates every BPF program, map, BTF object and link in
// the kernel by id, and opens each to read its name.
func bpfObjects(t testing.TB) objects {
	t.Helper()
	objs := objects{}
	for id, err := ebpf.ProgramGetNextID(0); ; id, err = ebpf.ProgramGetNextID(id) {
		if errors.Is(err, os.ErrNotExist) {
			break
		} else if err != nil {
			t.Fatalf("next program id: %v", err)
		}
		p, err := ebpf.NewProgramFromID(id)
		if errors.Is(err, os.ErrNotExist) {
			continue // freed in between
		} else if err != nil {
			t.Fatalf("program %d: %v", id, err)
		}
		desc := "?"
		if info, err := p.Info(); err == nil {
			desc = fmt.Sprintf("%s %q", info.Type, info.Name)
		}
		p.Close()
		objs[fmt.Sprintf("prog %d", id)] = desc
	}
	for id, err := ebpf.MapGetNextID(0); ; id, err = ebpf.MapGetNextID(id) {
		if errors.Is(err, os.ErrNotExist) {
			break
		} else if err != nil {
			t.Fatalf("next map id: %v", err)
		}
		m, err := ebpf.NewMapFromID(id)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			t.Fatalf("map %d: %v", id, err)
		}
		desc := "?"
		if info, err := m.Info(); err == nil {
			desc = fmt.Sprintf("%s %q", info.Type, info.Name)
		}
		m.Close()
		objs[fmt.Sprintf("map %d", id)] = desc
	}
	var bi btf.HandleIterator
	for bi.Next() {
		desc := "?"
		if info, err := bi.Handle.Info(); err == nil {
			desc = fmt.Sprintf("%q kernel=%v", info.Name, info.IsKernel)
		}
		objs[fmt.Sprintf("btf %d", bi.ID)] = desc
	}
	if err := bi.Err(); err != nil {
		t.Fatalf("BTF objects: %v", err)
	}
	var li link.Iterator
	for li.Next() {
		desc := "?"
		if info, err := li.Link.Info(); err == nil {
			desc = fmt.Sprintf("type %d prog %d", info.Type, info.Program)
		}
		objs[fmt.Sprintf("link %d", li.ID)] = desc
	}
	if err := li.Err(); err != nil {
		t.Fatalf("BPF links: %v", err)
	}
	return objs
}

// minus is what o has and before has not, sorted.
func (o objects) minus(before objects) []string {
	var out []string
	for k, v := range o {
		if _, ok := before[k]; !ok {
			out = append(out, k+" "+v)
		}
	}
	slices.Sort(out)
	return out
}

// count is how many of o are of kind ("prog", "map", ...).
func (o objects) count(kind string) int {
	n := 0
	for k := range o {
		if strings.HasPrefix(k, kind+" ") {
			n++
		}
	}
	return n
}

// stableObjects waits until the set of BPF objects stops changing (objects
// of an earlier test may still be on their way out) and returns it.
func stableObjects(t testing.TB) objects {
	t.Helper()
	prev := bpfObjects(t)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		cur := bpfObjects(t)
		if len(cur.minus(prev)) == 0 && len(prev.minus(cur)) == 0 {
			return cur
		}
		prev = cur
	}
	t.Fatalf("the BPF objects of the kernel keep changing: %v", prev)
	return nil
}

// counter is a packet and byte count of iptables -L -v -x.
type counter struct{ pkts, bytes uint64 }

func (c counter) String() string { return fmt.Sprintf("%d packets, %d bytes", c.pkts, c.bytes) }

// listing is iptables-legacy -L -v -x -n, parsed: each chain's policy
// counters (built-in chains) and rule counters in order.
type listing struct {
	policy map[string]counter
	rules  map[string][]counter
}

func parseListing(t testing.TB, out string) listing {
	t.Helper()
	l := listing{policy: map[string]counter{}, rules: map[string][]counter{}}
	chain := ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "Chain":
			chain = f[1]
			l.rules[chain] = nil
			// Chain INPUT (policy ACCEPT 5 packets, 640 bytes)
			if len(f) >= 8 && f[2] == "(policy" {
				p, err1 := strconv.ParseUint(f[4], 10, 64)
				b, err2 := strconv.ParseUint(f[6], 10, 64)
				if err1 != nil || err2 != nil {
					t.Fatalf("policy line %q", line)
				}
				l.policy[chain] = counter{p, b}
			}
		case f[0] == "pkts":
		default:
			p, err1 := strconv.ParseUint(f[0], 10, 64)
			b, err2 := strconv.ParseUint(f[1], 10, 64)
			if err1 != nil || err2 != nil || chain == "" {
				t.Fatalf("rule line %q", line)
			}
			l.rules[chain] = append(l.rules[chain], counter{p, b})
		}
	}
	return l
}

// rule is the counter of chain's rule i (0-based; negative counts from
// the end).
func (l listing) rule(t testing.TB, chain string, i int) counter {
	t.Helper()
	rs := l.rules[chain]
	if i < 0 {
		i += len(rs)
	}
	if i < 0 || i >= len(rs) {
		t.Fatalf("chain %s has %d rules, no rule %d", chain, len(rs), i)
	}
	return rs[i]
}

// wantCounter reports on t unless got counts pkts datagrams of ipLen.
func wantCounter(t testing.TB, what string, got counter, pkts uint64) {
	t.Helper()
	if want := (counter{pkts, pkts * ipLen}); got != want {
		t.Errorf("%s: counters %v, want %v", what, got, want)
	}
}

// firstDiff describes where two long outputs first differ.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d: %q against %q", i+1, al[i], bl[i])
		}
	}
	return fmt.Sprintf("%d lines against %d", len(al), len(bl))
}
