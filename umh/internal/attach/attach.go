// Package attach hangs the programs of a compiled table (package codegen)
// on the interfaces of one network namespace, and swaps them atomically
// when the table changes.
//
// # Where packets meet the programs
//
// Each interface of the namespace, lo included, gets a clsact qdisc (unless
// it has one) and two direct-action cls_bpf filters for IPv4 (protocol
// ETH_P_IP, priority Priority, handle 1), one on ingress and one on egress.
// Their programs are fixed dispatchers, loaded once per Attacher, that pick
// the hook and tail-call the table's program for it:
//
//   - ingress: bpf_fib_lookup on the packet's addresses (with the FIB
//     rules, so that the local table is seen). NOT_FWDED (a local,
//     broadcast or multicast route) or FWD_DISABLED (the device does not
//     forward, so the stack can only deliver the packet or drop it) mean
//     local delivery: INPUT, with the device as input interface (codegen's
//     InputTC). Anything else is forwarded or dropped by the stack and
//     passes: FORWARD is judged at egress.
//   - egress: __sk_buff.ingress_ifindex (skb->skb_iif) is 0 for packets
//     made by this host: OUTPUT (OutputTC). Otherwise the packet came in
//     on a device and is forwarded: FORWARD, with the device as output and
//     the ingress device as input interface (codegen's ForwardTC).
//
// A locally generated packet for a local address leaves through lo's
// egress (OUTPUT, -o lo) and comes back in through lo's ingress (INPUT,
// -i lo), as with ip_tables.
//
// # Atomic replacement
//
// The dispatchers tail-call through one BPF_MAP_TYPE_PROG_ARRAY holding two
// generations of hook programs (slot gen*4 + hook) and read the current
// generation from a one-element array. Install writes the new table's
// programs into the generation not in use, then flips the generation with
// one map update: a packet meets either every program of the old table or
// every program of the new one, across all hooks, never none. The old
// generation's slots keep the old programs (and so their maps) alive until
// the next Install overwrites them or Close.
//
// # Interfaces
//
// Install fills the table's ifnames map (codegen.MapIfnames) from the
// namespace's links. Sync attaches to interfaces that appeared since and
// updates the names; the caller calls it when links change.
//
// # Namespace lifetime
//
// An Attacher holds nothing of its namespace between calls: each call
// opens the namespace (Opener), makes a netlink socket in it, and closes
// both before it returns. A namespace with bpfilter's filters therefore
// goes away as it would without them (its veths with it).
//
// # Outliving the process
//
// The filters keep the dispatchers alive without the Attacher, but a prog
// array is emptied by the kernel when its last user reference goes (an fd
// or a bpffs pin: prog_array_map_clear), which would let every packet
// through once the process died. So the prog array is pinned (New's pin
// path) until Close or Release; a new process takes everything over by id
// (State, Adopt).
package attach

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/bpfilter/bpfilter/umh/internal/codegen"
	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Priority is the priority of bpfilter's cls_bpf filters (lower runs
// first). A filter of another kind at the same priority and protocol makes
// attaching fail rather than share its slot.
const Priority = 0x0bf1

// Filter names, as `tc filter show` lists them.
const (
	FilterIngress = "bpfilter_ingress"
	FilterEgress  = "bpfilter_egress"
)

const filterHandle = 1

// Opener opens the network namespace an Attacher works in, for one call:
// the Attacher closes the file before the call returns.
type Opener func() (*os.File, error)

// Attacher attaches the programs of one table at a time to every interface
// of one network namespace. Its methods may be called from any goroutine.
type Attacher struct {
	mu       sync.Mutex
	open     Opener
	pin      string // where the prog array is pinned, or ""
	d        *dispatch
	gen      int // generation in use, -1 before the first Install
	objs     *codegen.Objects
	links    map[int]*linkState // attached interfaces, by ifindex
	attached bool               // dispatchers are on the interfaces
	closed   bool
}

type linkState struct {
	name     string
	ownQdisc bool // we created its clsact qdisc
	ingress  bool // our filters are on it
	egress   bool
}

// New prepares an Attacher for the namespace that open opens, with its
// prog array pinned at pin (a path in a bpffs; "" pins nothing, and the
// table stops being enforced when this process goes). A file left at pin
// by an earlier process is replaced. Nothing is attached before Install.
func New(open Opener, pin string) (*Attacher, error) {
	d, err := loadDispatch()
	if err != nil {
		return nil, err
	}
	if pin != "" {
		if err := os.Remove(pin); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.close()
			return nil, fmt.Errorf("attach: stale pin: %w", err)
		}
		if err := d.progs.Pin(pin); err != nil {
			d.close()
			return nil, fmt.Errorf("attach: pin the prog array: %w", err)
		}
	}
	return &Attacher{open: open, pin: pin, d: d, gen: -1, links: map[int]*linkState{}}, nil
}

// handle is a netlink socket in the Attacher's namespace; close it after
// the call.
func (a *Attacher) handle() (*netlink.Handle, error) {
	f, err := a.open()
	if err != nil {
		return nil, fmt.Errorf("attach: open netns: %w", err)
	}
	defer f.Close()
	h, err := netlink.NewHandleAt(netns.NsHandle(f.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("attach: netlink socket in netns: %w", err)
	}
	return h, nil
}

// Install makes objs the enforced table. The first Install attaches the
// dispatchers to every interface; later ones swap the programs with one
// map update. objs must stay open while it is installed (until the next
// Install returns, or Close); its programs for INPUT, FORWARD and OUTPUT
// are used, a missing one lets that hook's packets through.
func (a *Attacher) Install(objs *codegen.Objects) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errors.New("attach: install after close")
	}
	h, err := a.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("attach: list links: %w", err)
	}
	for _, l := range links {
		if err := objs.SetIfname(uint32(l.Attrs().Index), l.Attrs().Name); err != nil {
			return fmt.Errorf("attach: %w", err)
		}
	}
	next := 0
	if a.gen == 0 {
		next = 1
	}
	for _, hs := range hookSlots {
		key := uint32(next*slotsPerGen + hs.slot)
		if p := objs.Program(hs.hook); p != nil {
			if err := a.d.progs.Put(key, p); err != nil {
				return fmt.Errorf("attach: prog array slot %d: %w", key, err)
			}
		} else if err := a.d.progs.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("attach: clear prog array slot %d: %w", key, err)
		}
	}
	if err := a.d.gen.Put(uint32(0), uint32(next)); err != nil {
		return fmt.Errorf("attach: switch generation: %w", err)
	}
	a.gen, a.objs = next, objs
	if !a.attached {
		if err := a.attachAll(h, links); err != nil {
			return err
		}
		a.attached = true
	}
	return nil
}

// attachAll attaches to every link, or to none.
func (a *Attacher) attachAll(h *netlink.Handle, links []netlink.Link) error {
	for _, l := range links {
		if err := a.attachLink(h, l); err != nil {
			a.detachAll(h)
			return err
		}
	}
	return nil
}

// Sync attaches to the interfaces that appeared since Install, updates
// renamed ones in the ifnames map and forgets those that are gone. It
// returns the errors of the interfaces it could not attach to.
func (a *Attacher) Sync() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || !a.attached {
		return nil
	}
	h, err := a.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("attach: list links: %w", err)
	}
	seen := map[int]bool{}
	var errs []error
	for _, l := range links {
		at := l.Attrs()
		seen[at.Index] = true
		if err := a.objs.SetIfname(uint32(at.Index), at.Name); err != nil {
			errs = append(errs, err)
		}
		if st, ok := a.links[at.Index]; ok {
			st.name = at.Name
			continue
		}
		if err := a.attachLink(h, l); err != nil {
			errs = append(errs, err)
		}
	}
	for idx := range a.links {
		if !seen[idx] {
			delete(a.links, idx) // its filters and qdisc went with it
			if err := codegen.DeleteIfname(a.objs.Ifnames, uint32(idx)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Links are the names of the interfaces the dispatchers are attached to.
func (a *Attacher) Links() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, st := range a.links {
		out = append(out, st.name)
	}
	return out
}

func filterOn(link netlink.Link, parent uint32, name string, prog *ebpf.Program) *netlink.BpfFilter {
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: link.Attrs().Index,
			Parent:    parent,
			Handle:    filterHandle,
			Priority:  Priority,
			Protocol:  unix.ETH_P_IP,
		},
		Name:         name,
		DirectAction: true,
	}
	if prog != nil {
		f.Fd = prog.FD()
	}
	return f
}

func clsact(link netlink.Link) *netlink.GenericQdisc {
	return &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: link.Attrs().Index,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
}

// attachLink puts a clsact qdisc (if the link has none) and our two
// filters on link; on failure it undoes what it did.
func (a *Attacher) attachLink(h *netlink.Handle, link netlink.Link) error {
	at := link.Attrs()
	qds, err := h.QdiscList(link)
	if err != nil {
		return fmt.Errorf("attach: %s: list qdiscs: %w", at.Name, err)
	}
	st := &linkState{name: at.Name}
	have := false
	for _, q := range qds {
		if q.Attrs().Parent != netlink.HANDLE_CLSACT && q.Attrs().Parent != netlink.HANDLE_INGRESS {
			continue
		}
		if q.Type() == "ingress" {
			return fmt.Errorf("attach: %s has an ingress qdisc, which excludes clsact", at.Name)
		}
		if q.Type() == "clsact" {
			have = true
		}
	}
	if !have {
		if err := h.QdiscAdd(clsact(link)); err != nil {
			return fmt.Errorf("attach: %s: add clsact qdisc: %w", at.Name, err)
		}
		st.ownQdisc = true
	}
	a.links[at.Index] = st
	// Replace, not add: a filter of ours that an earlier umh left (and
	// that could not be taken over) is overwritten rather than in the way.
	if err := h.FilterReplace(filterOn(link, netlink.HANDLE_MIN_INGRESS, FilterIngress, a.d.ingress)); err != nil {
		a.detachLink(h, at.Index, st)
		return fmt.Errorf("attach: %s: add ingress filter: %w", at.Name, err)
	}
	st.ingress = true
	if err := h.FilterReplace(filterOn(link, netlink.HANDLE_MIN_EGRESS, FilterEgress, a.d.egress)); err != nil {
		a.detachLink(h, at.Index, st)
		return fmt.Errorf("attach: %s: add egress filter: %w", at.Name, err)
	}
	st.egress = true
	return nil
}

// gone reports errors that mean the link (and with it our filters and
// qdisc) no longer exists.
func gone(err error) bool {
	return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL)
}

// detachLink removes our filters from the link and the clsact qdisc if we
// created it.
func (a *Attacher) detachLink(h *netlink.Handle, idx int, st *linkState) error {
	var errs []error
	link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: idx, Name: st.name}}
	if st.ingress {
		if err := h.FilterDel(filterOn(link, netlink.HANDLE_MIN_INGRESS, FilterIngress, nil)); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("attach: %s: delete ingress filter: %w", st.name, err))
		}
		st.ingress = false
	}
	if st.egress {
		if err := h.FilterDel(filterOn(link, netlink.HANDLE_MIN_EGRESS, FilterEgress, nil)); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("attach: %s: delete egress filter: %w", st.name, err))
		}
		st.egress = false
	}
	if st.ownQdisc {
		if err := h.QdiscDel(clsact(link)); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("attach: %s: delete clsact qdisc: %w", st.name, err))
		}
		st.ownQdisc = false
	}
	delete(a.links, idx)
	return errors.Join(errs...)
}

func (a *Attacher) detachAll(h *netlink.Handle) error {
	var errs []error
	for idx, st := range a.links {
		errs = append(errs, a.detachLink(h, idx, st))
	}
	a.attached = false
	return errors.Join(errs...)
}

// Close detaches the filters from every interface, removes the clsact
// qdiscs it created (not those it found) and releases the dispatchers. The
// installed Objects stay the caller's. If the namespace cannot be opened
// (it is gone, or going), Close only releases, as Release.
func (a *Attacher) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	var err error
	if a.attached {
		h, herr := a.handle()
		if herr != nil {
			err = herr
		} else {
			err = a.detachAll(h)
			h.Close()
		}
	}
	return errors.Join(err, a.releaseLocked())
}

// Release lets go of the dispatchers without touching the interfaces, for
// a namespace that is gone: the hook programs are taken out of the prog
// array first, so that a filter that outlives the namespace on a device
// moved elsewhere passes every packet instead of applying a stale table.
func (a *Attacher) Release() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	return a.releaseLocked()
}

func (a *Attacher) releaseLocked() error {
	var errs []error
	for k := uint32(0); k < generations*slotsPerGen; k++ {
		if err := a.d.progs.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("attach: clear prog array slot %d: %w", k, err))
		}
	}
	if a.pin != "" {
		if err := os.Remove(a.pin); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("attach: unpin: %w", err))
		}
	}
	a.closed = true
	a.attached = false
	a.d.close()
	a.objs = nil
	return errors.Join(errs...)
}

// Abandon lets go of the Attacher's file descriptors and nothing else, as
// a process that dies does: the filters, the pinned prog array and what it
// holds stay for Adopt. For tests of a takeover.
func (a *Attacher) Abandon() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.closed = true
	a.d.close()
	a.objs = nil
}
