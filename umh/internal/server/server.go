// Package server runs the request loop of the usermode helper: read a
// request from the module, answer it, write the reply, until the module
// closes the pipe.
package server

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/bpfilter/bpfilter/umh/internal/klog"
	"github.com/bpfilter/bpfilter/umh/internal/wire"
)

// Handler answers one forwarded sockopt request, whose payload is the
// caller's optval. status is the reply: 0 or a negative errno; answer is
// the reply's payload (see kmod/msgfmt.h: a get's new optval, a replace's
// old counters). reason, if not empty, says why the call was refused or
// handed on (-ENOPROTOOPT), or warns about a call that succeeded.
type Handler interface {
	Handle(req wire.Request, payload []byte) (status int32, answer []byte, reason string)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(req wire.Request, payload []byte) (status int32, answer []byte, reason string)

// Handle calls f.
func (f HandlerFunc) Handle(req wire.Request, payload []byte) (int32, []byte, string) {
	return f(req, payload)
}

// Server answers the module's requests.
//
// What it logs: the notable lines always (a refused change and why, a
// warning about one made, its own failures); one trace line per request
// only when the request asks for it (wire.FlagTrace, which the module sets
// while its trace parameter is on). Ordinary calls are many (every
// iptables command makes several) and the kernel rate-limits what one
// process writes to /dev/kmsg: by default they leave no line at all.
type Server struct {
	Handler Handler
	Log     *klog.Logger
	// Health is the answer to the health check: 0 unless the umh was
	// built to fail it (for tests).
	Health int32
	// NetnsExit, if set, is told that a network namespace is gone (the
	// module has already dropped its hooks and programs).
	NetnsExit func(netns uint64)
}

// Serve answers requests from r on w until r reaches EOF between two
// requests, which is a clean end (nil). A short or garbled request, or a
// failed write, ends the loop with an error: the module then stops this
// umh, and restarts one on the next sockopt call.
//
// A panic is not recovered: a umh that panics crashes, and the module
// starts a new one, which takes over from the programs the module holds
// and the state kept for it. Carrying on could leave a lock held or a
// table half changed.
func (s *Server) Serve(r io.Reader, w io.Writer) error {
	for {
		req, payload, err := wire.ReadRequest(r)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		status, answer := s.answer(req, payload)
		if err := wire.WriteReply(w, status, answer); err != nil {
			return err
		}
	}
}

func (s *Server) answer(req wire.Request, payload []byte) (int32, []byte) {
	// Whatever is logged while this request is answered is traced if it
	// asks to be.
	s.Log.SetTrace(req.Flags&wire.FlagTrace != 0)
	if req.Cmd == wire.CmdHealth && req.IsSet == 0 {
		s.Log.Debugf("health check from pid %d: %d", req.Pid, s.Health)
		return s.Health, nil
	}
	if req.Cmd == wire.CmdNetnsExit && req.IsSet == 1 {
		cookies, err := wire.Cookies(payload)
		if err != nil {
			s.Log.Errorf("%v", err)
			return -int32(unix.EINVAL), nil
		}
		for _, c := range cookies {
			s.Log.Debugf("netns %d is gone", c)
			if s.NetnsExit != nil {
				s.NetnsExit(c)
			}
		}
		return 0, nil
	}
	if req.Cmd < wire.FirstSockopt {
		s.Log.Errorf("unknown control command %d", req.Cmd)
		return -int32(unix.EINVAL), nil
	}
	status, answer, reason := s.Handler.Handle(req, payload)
	switch {
	case reason == "":
		s.Log.Debugf("%s: %d", describe(req), status)
	case notable(req, status):
		s.Log.Warnf("%s", reason)
		s.Log.Debugf("%s: %d", describe(req), status)
	default:
		s.Log.Debugf("%s: %d (%s)", describe(req), status, reason)
	}
	return status, answer
}

// notable tells whether the reason given for a call is logged even
// without tracing: a change (setsockopt) that was refused, or a warning
// about a call that succeeded. A get that fails, and a call handed on to
// ip_tables (-ENOPROTOOPT), are ordinary: iptables asks for revisions
// that may not exist, retries IPT_SO_GET_ENTRIES when the table changed
// under it, and asks about tables that ip_tables serves.
func notable(req wire.Request, status int32) bool {
	return status == 0 || (req.IsSet != 0 && status != -int32(unix.ENOPROTOOPT))
}

func describe(req wire.Request) string {
	op := "get"
	if req.IsSet != 0 {
		op = "set"
	}
	return fmt.Sprintf("%ssockopt %d len %d pid %d netns %d", op, req.Cmd, req.Optlen, req.Pid, req.Netns)
}
