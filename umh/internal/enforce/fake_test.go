package enforce

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/datapath"
	"github.com/bpfilter/bpfilter/umh/internal/kmodctl"
)

// needBPF skips unprivileged runs and fails if root cannot load BPF.
func needBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs; skipped as an unprivileged user")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("BPF unavailable: %v", err)
	}
}

// fakeKmod is the module as far as the Enforcer sees it: it checks what
// SET_PROGS checks and holds references to the programs (clones), so that
// they outlive an abandoned Enforcer as they outlive a dead umh.
type fakeKmod struct {
	mu   sync.Mutex
	held map[uint64]*fakeSet
	gone map[uint64]bool // namespaces that no longer exist: ESRCH
	fail error           // returned by the next SetProgs
	sets int             // successful SetProgs calls
	// badIDs makes Held report program ids that do not exist (the
	// programs cannot be adopted).
	badIDs bool
}

type fakeSet struct {
	gen   uint64
	progs [kmodctl.NumHooks]*ebpf.Program
	ctx   *ebpf.Map
}

func newFake(t *testing.T) *fakeKmod {
	f := &fakeKmod{held: map[uint64]*fakeSet{}, gone: map[uint64]bool{}}
	t.Cleanup(func() {
		for _, s := range f.held {
			s.close()
		}
	})
	return f
}

func (s *fakeSet) close() {
	for _, p := range s.progs {
		if p != nil {
			p.Close()
		}
	}
	if s.ctx != nil {
		s.ctx.Close()
	}
}

func (f *fakeKmod) SetProgs(netns, gen uint64, progs [kmodctl.NumHooks]*ebpf.Program, ctx *ebpf.Map, set kmodctl.Set) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail; err != nil {
		f.fail = nil
		return fmt.Errorf("fake: %w", err)
	}
	if f.gone[netns] {
		return fmt.Errorf("fake: set programs of netns %d: %w", netns, unix.ESRCH)
	}
	none := ctx == nil
	for _, p := range progs {
		none = none && p == nil
	}
	if none {
		if s := f.held[netns]; s != nil {
			s.close()
			delete(f.held, netns)
		}
		f.sets++
		return nil
	}
	if ctx == nil {
		return fmt.Errorf("fake: no ctx: %w", unix.EINVAL)
	}
	if info, err := ctx.Info(); err != nil || info.ValueSize != datapath.CtxSize || info.MaxEntries < 1 || ctx.Type() != ebpf.PerCPUArray {
		return fmt.Errorf("fake: bad ctx: %w", unix.EINVAL)
	}
	s := &fakeSet{gen: gen}
	for i, p := range progs {
		if p == nil {
			// kmod's get_held: every hook has a program, or none.
			s.close()
			return fmt.Errorf("fake: no program at hook %d: %w", i, unix.EINVAL)
		}
		if p.Type() != ebpf.SchedCLS {
			s.close()
			return fmt.Errorf("fake: program type %v: %w", p.Type(), unix.EINVAL)
		}
		c, err := p.Clone()
		if err != nil {
			s.close()
			return err
		}
		s.progs[i] = c
	}
	c, err := ctx.Clone()
	if err != nil {
		s.close()
		return err
	}
	s.ctx = c
	if old := f.held[netns]; old != nil {
		old.close()
	}
	f.held[netns] = s
	f.sets++
	return nil
}

func (f *fakeKmod) Held() ([]kmodctl.Held, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []kmodctl.Held
	for netns, s := range f.held {
		h := kmodctl.Held{Netns: netns, Gen: s.gen}
		for i, p := range s.progs {
			if p == nil {
				continue
			}
			info, err := p.Info()
			if err != nil {
				return nil, err
			}
			id, _ := info.ID()
			h.ProgID[i] = uint32(id)
			if f.badIDs {
				h.ProgID[i] = 1<<31 - 1 - uint32(i)
			}
		}
		info, err := s.ctx.Info()
		if err != nil {
			return nil, err
		}
		id, _ := info.ID()
		h.CtxID = uint32(id)
		out = append(out, h)
	}
	return out, nil
}

// exit drops what the module holds of netns, as its pernet exit does,
// and makes it gone.
func (f *fakeKmod) exit(netns uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.held[netns]; s != nil {
		s.close()
		delete(f.held, netns)
	}
	f.gone[netns] = true
}

func (f *fakeKmod) gen(netns uint64) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.held[netns]; s != nil {
		return s.gen
	}
	return 0
}

// run runs the held INPUT program of netns on a packet, as the module
// would at NF_INET_LOCAL_IN; it returns the netfilter verdict.
func (f *fakeKmod) run(t *testing.T, netns uint64, frame []byte) uint32 {
	t.Helper()
	f.mu.Lock()
	s := f.held[netns]
	f.mu.Unlock()
	if s == nil || s.progs[kmodctl.HookInput] == nil {
		t.Fatalf("netns %d: no INPUT program held", netns)
	}
	ret, err := s.progs[kmodctl.HookInput].Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatal(err)
	}
	return ret
}
