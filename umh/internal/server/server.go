// Package server runs the request loop of the usermode helper: read a
// request from the module, answer it, write the reply, until the module
// closes the pipe.
package server

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/klog"
	"github.com/bpfilter/bpfilter/umh/internal/wire"
)

// Handler answers one forwarded sockopt request. The result is the reply
// status: 0 or a negative errno.
type Handler interface {
	Handle(req wire.Request) int32
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(req wire.Request) int32

// Handle calls f.
func (f HandlerFunc) Handle(req wire.Request) int32 { return f(req) }

// Server answers the module's requests.
type Server struct {
	Handler Handler
	Log     *klog.Logger
	// Health is the answer to the health check: 0 unless the umh was
	// built to fail it (for tests).
	Health int32
	// NetnsExit, if set, is told that a network namespace is gone.
	NetnsExit func(netns uint32)
	// Netdev, if set, is told that a network namespace has a new or
	// renamed interface.
	Netdev func(netns uint32)
	// Shutdown, if set, undoes everything the umh did to the kernel: the
	// module is about to go. Its error is logged and answered as -EIO.
	Shutdown func() error
}

// Serve answers requests from r on w until r reaches EOF between two
// requests, which is a clean end (nil). A short or garbled request, or a
// failed write, ends the loop with an error: the module then stops this
// umh, and restarts one on the next sockopt call.
func (s *Server) Serve(r io.Reader, w io.Writer) error {
	for {
		req, err := wire.ReadRequest(r)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		status := s.answer(req)
		if err := wire.WriteReply(w, wire.Reply{Status: status}); err != nil {
			return err
		}
	}
}

func (s *Server) answer(req wire.Request) (status int32) {
	defer func() {
		if r := recover(); r != nil {
			s.Log.Errorf("BUG: %s failed: %v\n%s", describe(req), r, debug.Stack())
			status = -int32(unix.EIO)
		}
	}()
	if req.Cmd == wire.CmdHealth && req.IsSet == 0 {
		s.Log.Debugf("health check from pid %d: %d", req.Pid, s.Health)
		return s.Health
	}
	if req.Cmd == wire.CmdNetnsExit && req.IsSet == 1 {
		s.Log.Debugf("netns %d is gone", req.Netns)
		if s.NetnsExit != nil {
			s.NetnsExit(req.Netns)
		}
		return 0
	}
	if req.Cmd == wire.CmdNetdev && req.IsSet == 1 {
		if s.Netdev != nil {
			s.Netdev(req.Netns)
		}
		return 0
	}
	if req.Cmd == wire.CmdShutdown && req.IsSet == 1 {
		s.Log.Infof("module unloading: removing all programs")
		if s.Shutdown != nil {
			if err := s.Shutdown(); err != nil {
				s.Log.Errorf("shutdown: %v", err)
				return -int32(unix.EIO)
			}
		}
		return 0
	}
	if req.Cmd < wire.FirstSockopt {
		s.Log.Errorf("unknown control command %d", req.Cmd)
		return -int32(unix.EINVAL)
	}
	status = s.Handler.Handle(req)
	s.Log.Debugf("%s: %d", describe(req), status)
	return status
}

func describe(req wire.Request) string {
	op := "get"
	if req.IsSet != 0 {
		op = "set"
	}
	return fmt.Sprintf("%ssockopt %d len %d pid %d netns %d", op, req.Cmd, req.Len, req.Pid, req.Netns)
}
