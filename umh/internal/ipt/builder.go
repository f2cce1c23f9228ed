package ipt

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// Builder lays out an IPT_SO_SET_REPLACE argument the way libiptc's
// TC_COMMIT does (iptcc_compile_table), so that tests and tools can make
// the blobs iptables-legacy makes without running it:
//   - builtin chains in hook order, then user chains sorted by name;
//   - a user chain is an ERROR entry naming it, its rules, and an
//     unconditional RETURN;
//   - a builtin chain is its rules and its policy (the underflow);
//   - a jump's verdict is the offset of the first entry after the target
//     chain's head; a rule without target jumps to the next entry;
//   - the table ends with an ERROR entry named "ERROR";
//   - everything libiptc does not set is zero.
type Builder struct {
	name   string
	valid  uint32
	chains []*builderChain
}

type builderChain struct {
	name           string
	hook           int // -1 for user chains
	policy         int32
	policyCounters Counters
	rules          []RuleSpec
	// set at layout
	head, foot uint32
}

// RuleSpec describes one rule for a Builder.
type RuleSpec struct {
	IP      IP
	Matches []Match
	// Jump is "ACCEPT", "DROP", "QUEUE", "RETURN", the name of a user chain,
	// or "" for a rule without a target. Ignored when Target is set.
	Jump string
	// Goto makes a jump to a user chain a goto (-g): IPT_F_GOTO.
	Goto bool
	// Target, if set, is used as it is (for other targets).
	Target *Target
	// Counters, Comefrom and NFCache are copied into the entry: libiptc
	// sends back what it read from the kernel for existing rules.
	Counters Counters
	Comefrom uint32
	NFCache  uint32
}

// NewBuilder starts a table with the builtin chains of validHooks, empty,
// with ACCEPT policies.
func NewBuilder(name string, validHooks uint32) *Builder {
	b := &Builder{name: name, valid: validHooks}
	for h := 0; h < NumHooks; h++ {
		if validHooks&(1<<h) != 0 {
			b.chains = append(b.chains, &builderChain{name: HookNames[h], hook: h, policy: VerdictAccept})
		}
	}
	return b
}

// NewFilterBuilder is NewBuilder("filter", FilterValidHooks).
func NewFilterBuilder() *Builder { return NewBuilder("filter", FilterValidHooks) }

func (b *Builder) chain(name string) *builderChain {
	for _, c := range b.chains {
		if c.name == name {
			return c
		}
	}
	return nil
}

// SetPolicy sets a builtin chain's policy (VerdictAccept or VerdictDrop)
// and the counters libiptc would send for it.
func (b *Builder) SetPolicy(chain string, verdict int32, c Counters) error {
	ch := b.chain(chain)
	if ch == nil || ch.hook < 0 {
		return fmt.Errorf("no builtin chain %q", chain)
	}
	ch.policy, ch.policyCounters = verdict, c
	return nil
}

// NewChain adds an empty user chain.
func (b *Builder) NewChain(name string) error {
	if b.chain(name) != nil {
		return fmt.Errorf("chain %q exists", name)
	}
	if len(name) >= FunctionMaxNameLen {
		return fmt.Errorf("chain name %q is too long", name)
	}
	b.chains = append(b.chains, &builderChain{name: name, hook: -1})
	return nil
}

// Append adds a rule at the end of a chain.
func (b *Builder) Append(chain string, r RuleSpec) error {
	ch := b.chain(chain)
	if ch == nil {
		return fmt.Errorf("no chain %q", chain)
	}
	ch.rules = append(ch.rules, r)
	return nil
}

func ruleSize(r *RuleSpec) int {
	n := EntrySize + StandardTargetSize
	if r.Target != nil {
		n = EntrySize + len(r.Target.Raw)
	}
	for _, m := range r.Matches {
		n += len(m.Raw)
	}
	return n
}

// Replace lays out the request, with num_counters and the counters pointer
// as given (libiptc sends the old table's number of entries).
func (b *Builder) Replace(numCounters uint32, countersPtr uint64) ([]byte, error) {
	chains := append([]*builderChain(nil), b.chains...)
	sort.SliceStable(chains, func(i, j int) bool {
		ci, cj := chains[i], chains[j]
		if (ci.hook >= 0) != (cj.hook >= 0) {
			return ci.hook >= 0
		}
		if ci.hook >= 0 {
			return ci.hook < cj.hook
		}
		return ci.name < cj.name
	})
	// iptcc_compile_table_prep: offsets.
	var off uint32
	num := uint32(0)
	for _, c := range chains {
		c.head = off
		if c.hook < 0 {
			off += ErrorEntrySize
			num++
		}
		for i := range c.rules {
			off += uint32(ruleSize(&c.rules[i]))
			num++
		}
		c.foot = off
		off += StandardEntrySize
		num++
	}
	size := off + ErrorEntrySize
	num++

	var h ReplaceHeader
	putName(h.Name[:], b.name)
	h.ValidHooks, h.NumEntries, h.Size = b.valid, num, size
	h.NumCounters, h.Counters = numCounters, countersPtr
	blob := make([]byte, 0, ReplaceSize+int(size))
	for _, c := range chains {
		if c.hook >= 0 {
			h.HookEntry[c.hook], h.Underflow[c.hook] = c.head, c.foot
		} else {
			blob = appendError(blob, c.name)
		}
		for i := range c.rules {
			r := &c.rules[i]
			e, err := b.rule(r, uint32(len(blob)))
			if err != nil {
				return nil, fmt.Errorf("chain %s rule %d: %w", c.name, i+1, err)
			}
			blob = append(blob, e...)
		}
		if c.hook >= 0 {
			blob = appendStandard(blob, c.policy)
			c.policyCounters.put(blob[len(blob)-StandardEntrySize+entryCountersOff:])
		} else {
			blob = appendStandard(blob, VerdictReturn)
		}
	}
	blob = appendError(blob, ErrorTarget)
	return append(h.Marshal(), blob...), nil
}

// rule lays out one rule at offset off, as iptcc_compile_rule does.
func (b *Builder) rule(r *RuleSpec, off uint32) ([]byte, error) {
	size := ruleSize(r)
	e := make([]byte, EntrySize, size)
	ip := r.IP
	if r.Goto {
		ip.Flags |= FlagGoto
	}
	ip.put(e)
	to := EntrySize
	for _, m := range r.Matches {
		to += len(m.Raw)
	}
	binary.LittleEndian.PutUint32(e[entryNFCacheOff:], r.NFCache)
	binary.LittleEndian.PutUint16(e[entryTargetOffOff:], uint16(to))
	binary.LittleEndian.PutUint16(e[entryNextOffOff:], uint16(size))
	binary.LittleEndian.PutUint32(e[entryComefromOff:], r.Comefrom)
	r.Counters.put(e[entryCountersOff:])
	for _, m := range r.Matches {
		e = append(e, m.Raw...)
	}
	if r.Target != nil {
		return append(e, r.Target.Raw...), nil
	}
	var v int32
	switch r.Jump {
	case "ACCEPT":
		v = VerdictAccept
	case "DROP":
		v = VerdictDrop
	case "QUEUE":
		v = VerdictQueue
	case "RETURN":
		v = VerdictReturn
	case "":
		v = int32(off) + int32(size) // IPTCC_R_FALLTHROUGH
	default:
		c := b.chain(r.Jump)
		if c == nil || c.hook >= 0 {
			return nil, fmt.Errorf("cannot jump to %q", r.Jump)
		}
		v = int32(c.head + ErrorEntrySize)
	}
	return append(e, NewStandardTarget(v).Raw...), nil
}
