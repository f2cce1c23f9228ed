// Command bpfilter_umh is the usermode helper of bpfilter.ko. The module
// starts it from a copy of this binary embedded in itself, with fd 0 a pipe
// from the kernel and fd 1 a pipe to the kernel, and forwards every
// iptables get/setsockopt call to it.
package main

import (
	"os"

	"github.com/bpfilter/bpfilter/umh/internal/enforce"
	"github.com/bpfilter/bpfilter/umh/internal/ipt"
	"github.com/bpfilter/bpfilter/umh/internal/klog"
	"github.com/bpfilter/bpfilter/umh/internal/kmodctl"
	"github.com/bpfilter/bpfilter/umh/internal/server"
	"github.com/bpfilter/bpfilter/umh/internal/table"
	"github.com/bpfilter/bpfilter/umh/internal/wire"
)

// stateDir holds what a restarted umh takes over, relative to the working
// directory.
const stateDir = "state"

func main() {
	log, err := klog.Open()
	if err != nil {
		// Nowhere to say so: the kernel gave us no stderr.
		log = klog.Discard()
	}
	log.Infof("started, pid %d", os.Getpid())
	// The module holds the programs, and tells what it holds; the
	// working directory is the usermode driver's private tmpfs, which
	// outlives this process (a umh that dies is started again) and goes
	// with the module: it keeps the tables for a restarted umh.
	ctl, err := kmodctl.Open()
	if err != nil {
		log.Errorf("stopping: %v", err)
		os.Exit(1)
	}
	enf, err := enforce.New(log, stateDir, ctl)
	if err != nil {
		log.Errorf("stopping: %v", err)
		os.Exit(1)
	}
	tables := table.New()
	tables.OnReplace = enf.Install
	tables.LiveCounters = func(netns uint64, _ *ipt.Table) []ipt.Counters { return enf.Counted(netns) }
	tables.OnChange = enf.Changed
	enf.Resume(tables.Restore)
	s := &server.Server{
		Handler: server.HandlerFunc(func(req wire.Request, optval []byte) (int32, []byte, string) {
			mem := table.NewBuffer(optval, req.Optlen)
			status, reason := tables.Sockopt(req.Netns, req.Cmd, req.IsSet != 0, mem)
			return status, mem.Answer(req.IsSet != 0, status), reason
		}),
		NetnsExit: func(netns uint64) {
			tables.Forget(netns)
			enf.NetnsExit(netns)
		},
		Log:    log,
		Health: healthStatus,
	}
	if err := s.Serve(os.Stdin, os.Stdout); err != nil {
		log.Errorf("stopping: %v", err)
		os.Exit(1)
	}
	log.Infof("module closed the pipe, exiting")
}
