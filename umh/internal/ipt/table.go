package ipt

import "sort"

// Table is a validated table: what ip_tables keeps after a successful
// translate_table. Tables are shared once made (package table hands the
// installed one to its hooks): treat them as read-only.
type Table struct {
	Name       string
	ValidHooks uint32
	// HookEntry and Underflow are the byte offsets of each valid hook's
	// first entry and of its policy; 0xFFFFFFFF for the other hooks, as
	// ip_tables reports them in IPT_SO_GET_INFO.
	HookEntry [NumHooks]uint32
	Underflow [NumHooks]uint32
	// Size is the size of the entries blob in bytes.
	Size uint32
	// Entries are all entries in blob order: rules, policies, user chain
	// heads and the final ERROR entry.
	Entries []*Entry
	// Chains is the chain view of Entries: the builtin chains in hook
	// order, then the user chains in blob order.
	Chains []*Chain
	// StackSize is the number of ERROR entries, which ip_tables uses as
	// the depth of its jump stack (a jump beyond it drops the packet).
	StackSize int

	offsets []uint32 // entry offsets, ascending (for EntryAt)
	chainOf []*Chain // by entry index (for ChainOf)
}

// NumEntries is the number of entries.
func (t *Table) NumEntries() int { return len(t.Entries) }

// EntryAt is the entry starting at byte offset off, or nil.
func (t *Table) EntryAt(off uint32) *Entry {
	i := sort.Search(len(t.offsets), func(i int) bool { return t.offsets[i] >= off })
	if i < len(t.offsets) && t.offsets[i] == off {
		return t.Entries[i]
	}
	return nil
}

// Chain is a chain of the table: a builtin chain (from its hook entry up
// to and including its policy at the underflow) or a user chain (an ERROR
// head naming it, its rules, and normally a final unconditional RETURN).
type Chain struct {
	Name string
	// Hook is the hook of a builtin chain, -1 for a user chain.
	Hook int
	// Head is the ERROR entry that names a user chain; nil for builtins.
	Head *Entry
	// Rules are the chain's rules, without head and policy/return.
	Rules []*Entry
	// Policy is a builtin chain's policy entry, or the final
	// unconditional RETURN of a user chain (nil if it has none).
	Policy *Entry
}

// Builtin reports whether c is a builtin chain.
func (c *Chain) Builtin() bool { return c.Hook >= 0 }

// PolicyVerdict is the verdict of a builtin chain's policy, or of a user
// chain's final RETURN.
func (c *Chain) PolicyVerdict() int32 {
	if c.Policy == nil {
		return VerdictReturn
	}
	return c.Policy.Target.Verdict
}

// Chain is the chain named name, or nil.
func (t *Table) Chain(name string) *Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// ChainOf is the chain that holds entry index i (as head, rule or
// policy), or nil.
func (t *Table) ChainOf(i int) *Chain {
	if i < 0 || i >= len(t.chainOf) {
		return nil
	}
	return t.chainOf[i]
}

// buildChains derives the chain view: chains begin at the valid hooks'
// entries and at ERROR entries other than the last one; each runs to the
// next beginning. It describes any valid table, and matches libiptc's
// layout exactly for the tables libiptc makes.
func (t *Table) buildChains() {
	n := len(t.Entries)
	type start struct {
		idx  int
		hook int
	}
	var starts []start
	for h := 0; h < NumHooks; h++ {
		if t.ValidHooks&(1<<h) != 0 {
			if e := t.EntryAt(t.HookEntry[h]); e != nil {
				starts = append(starts, start{e.Index, h})
			}
		}
	}
	for i, e := range t.Entries {
		if e.Target.Kind == TargetError && i != n-1 {
			starts = append(starts, start{i, -1})
		}
	}
	sort.SliceStable(starts, func(a, b int) bool { return starts[a].idx < starts[b].idx })
	var builtins, users []*Chain
	for k, s := range starts {
		end := n - 1 // the final ERROR entry belongs to no chain
		if k+1 < len(starts) {
			end = starts[k+1].idx
		}
		c := &Chain{Hook: s.hook}
		body := t.Entries[s.idx:max(s.idx, end)]
		if s.hook >= 0 {
			c.Name = HookNames[s.hook]
			if p := t.EntryAt(t.Underflow[s.hook]); p != nil && p.Index >= s.idx && p.Index < s.idx+len(body) {
				c.Rules = body[:p.Index-s.idx]
				c.Policy = p
			} else {
				c.Rules = body
			}
			builtins = append(builtins, c)
			continue
		}
		c.Head = t.Entries[s.idx]
		c.Name = c.Head.Target.ErrorName
		if len(body) > 0 {
			body = body[1:]
		}
		if l := len(body); l > 0 && body[l-1].Unconditional() &&
			body[l-1].Target.Kind == TargetStandard && body[l-1].Target.Verdict == VerdictReturn {
			c.Policy = body[l-1]
			body = body[:l-1]
		}
		c.Rules = body
		users = append(users, c)
	}
	sort.SliceStable(builtins, func(a, b int) bool { return builtins[a].Hook < builtins[b].Hook })
	t.Chains = append(builtins, users...)
	t.chainOf = make([]*Chain, n)
	for _, c := range t.Chains {
		for _, e := range append(append([]*Entry{c.Head}, c.Rules...), c.Policy) {
			if e != nil {
				t.chainOf[e.Index] = c
			}
		}
	}
}
