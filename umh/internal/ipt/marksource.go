package ipt

import "sort"

// onPath is the comefrom bit mark_source_chains uses for "on the current
// path" (1 << NF_INET_NUMHOOKS).
const onPath = 1 << NumHooks

// markSourceChains is mark_source_chains: from each valid hook's entry,
// walk the rules as packets would (falling through, following jumps,
// returning from user chains) and record in comefrom the hooks that reach
// each entry. A loop, a jump to an offset that is not an entry start, or a
// walk off the end of the table fails with ELOOP. It returns the comefrom
// value of every entry, which ip_tables keeps and GET_ENTRIES returns.
//
// ip_tables keeps the walk's back pointers in the entries' packet counters;
// here they are an array by entry index. The walk is the same step by step,
// so the same blobs pass and the same comefrom values result.
func markSourceChains(blob []byte, entries []*Entry, offsets []uint32, hookEntry *[NumHooks]uint32, valid uint32) ([]uint32, error) {
	n := len(entries)
	size := uint64(len(blob))
	comefrom := make([]uint32, n)
	back := make([]uint32, n)
	index := func(pos uint64) int {
		i := sort.Search(len(offsets), func(i int) bool { return uint64(offsets[i]) >= pos })
		if i < len(offsets) && uint64(offsets[i]) == pos {
			return i
		}
		return -1
	}
	// The walk visits each entry a bounded number of times per hook (a
	// first visit, a return to it, a visit after a jumper resumes); the
	// budget only guards against a mistake turning into a hang.
	budget := 8*n + 64
	for hook := 0; hook < NumHooks; hook++ {
		if valid&(1<<hook) == 0 {
			continue
		}
		pos := uint64(hookEntry[hook])
		ei := index(pos)
		if ei < 0 {
			return nil, errorf(eloop, "hook %s: entry %d is not an entry start", HookNames[hook], pos)
		}
		back[ei] = uint32(pos)
		for steps := 0; ; steps++ {
			if steps > budget {
				return nil, errorf(eloop, "hook %s: chain walk does not terminate", HookNames[hook])
			}
			e := entries[ei]
			visited := comefrom[ei]&(1<<hook) != 0
			if comefrom[ei]&onPath != 0 {
				return nil, errorf(eloop, "loop through the rule at %d, from hook %s", pos, HookNames[hook])
			}
			comefrom[ei] |= 1<<hook | onPath

			t := &e.Target
			if visited || e.Unconditional() && t.Kind == TargetStandard && t.Verdict < 0 {
				// Return: backtrack through the last jump.
				var oldpos uint64
				done := false
				for k := 0; ; k++ {
					if k > budget {
						return nil, errorf(eloop, "hook %s: backtracking does not terminate", HookNames[hook])
					}
					comefrom[ei] ^= onPath
					oldpos = pos
					pos = uint64(back[ei])
					back[ei] = 0
					if pos == oldpos {
						done = true
						break
					}
					if ei = index(pos); ei < 0 {
						return nil, errorf(eloop, "hook %s: bad back pointer %d", HookNames[hook], pos)
					}
					if oldpos != pos+uint64(entries[ei].NextOffset) {
						break
					}
				}
				if done {
					break
				}
				// Move along one.
				next := pos + uint64(entries[ei].NextOffset)
				if next >= size {
					return nil, errorf(eloop, "hook %s: the rule at %d falls off the end of the table", HookNames[hook], pos)
				}
				if ei = index(next); ei < 0 {
					return nil, errorf(eloop, "hook %s: no entry at %d", HookNames[hook], next)
				}
				back[ei] = uint32(pos)
				pos = next
				continue
			}
			var newpos uint64
			if t.Kind == TargetStandard && t.Verdict >= 0 {
				// A jump: chase it.
				newpos = uint64(t.Verdict)
				if index(newpos) < 0 {
					return nil, errorf(eloop, "rule at %d jumps to %d, which is not the start of an entry", pos, newpos)
				}
			} else {
				// A fall through.
				newpos = pos + uint64(e.NextOffset)
				if newpos >= size {
					return nil, errorf(eloop, "hook %s: the rule at %d falls off the end of the table", HookNames[hook], pos)
				}
			}
			ei = index(newpos)
			if ei < 0 {
				return nil, errorf(eloop, "hook %s: no entry at %d", HookNames[hook], newpos)
			}
			back[ei] = uint32(pos)
			pos = newpos
		}
	}
	return comefrom, nil
}
