package enforce

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// BPFFS is the bpffs that holds the pins of the prog arrays (see package
// attach: without a pin, the kernel empties a prog array when the process
// that made it dies). A system that booted with systemd has it mounted;
// otherwise the umh mounts one there, and unmounts it at shutdown.
const BPFFS = "/sys/fs/bpf"

// pinSubdir is bpfilter's directory in the bpffs.
const pinSubdir = "bpfilter"

// mountedMarker, in the state directory, says that a umh mounted the
// bpffs (so that the one that shuts down unmounts it).
const mountedMarker = "mounted-bpffs"

// pins is bpfilter's directory in a bpffs.
type pins struct {
	root, dir string
	marker    string // file whose existence says we mounted root
}

func preparePins(root, stateDir string) (*pins, error) {
	p := &pins{root: root, dir: filepath.Join(root, pinSubdir), marker: filepath.Join(stateDir, mountedMarker)}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return nil, fmt.Errorf("enforce: %s: %w", root, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", root, "bpf", 0, "mode=0700"); err != nil {
			return nil, fmt.Errorf("enforce: mount a bpffs at %s: %w", root, err)
		}
		if err := os.WriteFile(p.marker, nil, 0o600); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return nil, fmt.Errorf("enforce: %w", err)
	}
	return p, nil
}

func (p *pins) path(netns uint32) string {
	return filepath.Join(p.dir, fmt.Sprintf("netns%d_progs", netns))
}

// remove takes bpfilter's directory away, and the bpffs if a umh mounted
// it and nothing else is in it.
func (p *pins) remove() error {
	if err := os.Remove(p.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("enforce: %w", err)
	}
	if _, err := os.Stat(p.marker); err != nil {
		return nil // not ours
	}
	des, err := os.ReadDir(p.root)
	if err != nil {
		return fmt.Errorf("enforce: %w", err)
	}
	for _, de := range des {
		// A kernel with CONFIG_BPF_PRELOAD shows its iterators in
		// every bpffs; anything else is someone's pin.
		if n := de.Name(); n != "maps.debug" && n != "progs.debug" {
			return fmt.Errorf("enforce: %s holds other pins (%s): left mounted", p.root, n)
		}
	}
	if err := unix.Unmount(p.root, 0); err != nil {
		return fmt.Errorf("enforce: unmount %s: %w", p.root, err)
	}
	return os.Remove(p.marker)
}
