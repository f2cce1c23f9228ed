package attach

import (
	"errors"
	"fmt"

	"github.com/bpfilter/bpfilter/umh/internal/codegen"
	"github.com/cilium/ebpf"
)

// State is what a new process needs to take over an Attacher's work: the
// ids of the dispatchers and their maps (kept alive by the filters that
// use them, not by the process) and the interfaces they are on.
type State struct {
	Ingress, Egress ebpf.ProgramID
	Progs, Gen      ebpf.MapID
	Pin             string // where the prog array is pinned
	Links           []LinkState
}

// LinkState is one interface with the dispatchers on it.
type LinkState struct {
	Index    int
	Name     string
	OwnQdisc bool // the clsact qdisc is bpfilter's: detaching removes it
}

// State describes the Attacher for Adopt. It is only meaningful while
// the dispatchers are attached.
func (a *Attacher) State() (State, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := State{Pin: a.pin}
	var err error
	if st.Ingress, err = progID(a.d.ingress); err != nil {
		return st, err
	}
	if st.Egress, err = progID(a.d.egress); err != nil {
		return st, err
	}
	if st.Progs, err = mapID(a.d.progs); err != nil {
		return st, err
	}
	if st.Gen, err = mapID(a.d.gen); err != nil {
		return st, err
	}
	for idx, l := range a.links {
		st.Links = append(st.Links, LinkState{Index: idx, Name: l.name, OwnQdisc: l.ownQdisc})
	}
	return st, nil
}

func progID(p *ebpf.Program) (ebpf.ProgramID, error) {
	info, err := p.Info()
	if err != nil {
		return 0, fmt.Errorf("attach: program info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return 0, errors.New("attach: the kernel gives no program ids")
	}
	return id, nil
}

func mapID(m *ebpf.Map) (ebpf.MapID, error) {
	info, err := m.Info()
	if err != nil {
		return 0, fmt.Errorf("attach: map info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return 0, errors.New("attach: the kernel gives no map ids")
	}
	return id, nil
}

// Adopt takes over the dispatchers that st describes, as a process that
// did not create them (after the umh restarted). It fails if any of them
// is gone or is not what st says: then they are not bpfilter's any more.
// Call Resume with the installed programs before Sync or Install.
func Adopt(open Opener, st State) (*Attacher, error) {
	d := &dispatch{}
	ok := false
	defer func() {
		if !ok {
			d.close()
		}
	}()
	var err error
	if d.ingress, err = adoptProg(st.Ingress, progIn); err != nil {
		return nil, err
	}
	if d.egress, err = adoptProg(st.Egress, progOut); err != nil {
		return nil, err
	}
	if d.progs, err = adoptMap(st.Progs, mapProgs, ebpf.ProgramArray); err != nil {
		return nil, err
	}
	if d.gen, err = adoptMap(st.Gen, mapGen, ebpf.Array); err != nil {
		return nil, err
	}
	var gen uint32
	if err := d.gen.Lookup(uint32(0), &gen); err != nil {
		return nil, fmt.Errorf("attach: adopt: read generation: %w", err)
	}
	a := &Attacher{open: open, pin: st.Pin, d: d, gen: int(gen), links: map[int]*linkState{}, attached: true}
	for _, l := range st.Links {
		a.links[l.Index] = &linkState{name: l.Name, ownQdisc: l.OwnQdisc, ingress: true, egress: true}
	}
	ok = true
	return a, nil
}

func adoptProg(id ebpf.ProgramID, name string) (*ebpf.Program, error) {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return nil, fmt.Errorf("attach: adopt program %d (%s): %w", id, name, err)
	}
	info, err := p.Info()
	if err != nil || info.Name != kernelName(name) {
		p.Close()
		return nil, fmt.Errorf("attach: adopt: program %d is not %s", id, name)
	}
	return p, nil
}

func adoptMap(id ebpf.MapID, name string, typ ebpf.MapType) (*ebpf.Map, error) {
	m, err := ebpf.NewMapFromID(id)
	if err != nil {
		return nil, fmt.Errorf("attach: adopt map %d (%s): %w", id, name, err)
	}
	info, err := m.Info()
	if err != nil || info.Name != kernelName(name) || info.Type != typ {
		m.Close()
		return nil, fmt.Errorf("attach: adopt: map %d is not %s", id, name)
	}
	return m, nil
}

// kernelName is name as the kernel keeps it (BPF_OBJ_NAME_LEN, with its
// NUL).
func kernelName(name string) string {
	if len(name) > 15 {
		return name[:15]
	}
	return name
}

// Programs opens the hook programs of the generation in use, by hook.
func (a *Attacher) Programs() (map[int]*ebpf.Program, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[int]*ebpf.Program{}
	if a.gen < 0 {
		return out, nil
	}
	for _, hs := range hookSlots {
		var id uint32
		err := a.d.progs.Lookup(uint32(a.gen*slotsPerGen+hs.slot), &id)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("attach: prog array slot %d: %w", a.gen*slotsPerGen+hs.slot, err)
		}
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("attach: program %d of hook %d: %w", id, hs.hook, err)
		}
		out[hs.hook] = p
	}
	return out, nil
}

func closeAll(ps map[int]*ebpf.Program) {
	for _, p := range ps {
		p.Close()
	}
}

// Resume names the Objects that are installed in an adopted Attacher (made
// from the programs that Programs returned): Sync fills their ifnames.
func (a *Attacher) Resume(objs *codegen.Objects) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.objs = objs
}
