// Package klog writes the usermode helper's log to the kernel log through
// /dev/kmsg, each line prefixed with "bpfilter_umh: ". The umh has no
// stderr (the kernel does not set up fd 2), so the kernel log is the only
// place where an admin can see what it did.
//
// The log has two kinds of lines. Notable lines (Errorf, Warnf, Infof: the
// umh starting and stopping, a change it refused and why, its own
// failures) are always written. Trace lines (Debugf: one per forwarded
// call, and other detail for developers) are written only while tracing
// is on (SetTrace; the module's trace parameter switches it per request).
//
// Unless the kernel runs with printk.devkmsg=on, it allows each open file
// of /dev/kmsg a burst of 10 lines per 5 seconds and drops the rest
// (devkmsg_write, DEFAULT_RATELIMIT), saying how many only when the file
// is closed. So Open opens /dev/kmsg twice: trace lines, however many,
// use up only their own file's budget and never push out a notable line.
package klog

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
)

// Prefix starts every line the umh logs.
const Prefix = "bpfilter_umh: "

// Syslog levels, as /dev/kmsg takes them in a "<N>" header.
const (
	levelErr   = 3
	levelWarn  = 4
	levelInfo  = 6
	levelDebug = 7
)

// Logger writes single lines, one write per line, as /dev/kmsg requires.
type Logger struct {
	mu      sync.Mutex
	notable io.Writer // Errorf, Warnf, Infof
	trace   io.Writer // Debugf, while tracing
	tracing atomic.Bool
}

// Open returns a Logger on /dev/kmsg, with a file of its own for trace
// lines, or the error of opening it.
func Open() (*Logger, error) {
	var fs [2]*os.File
	for i := range fs {
		f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
		if err != nil {
			if fs[0] != nil {
				fs[0].Close()
			}
			return nil, fmt.Errorf("open /dev/kmsg: %w", err)
		}
		fs[i] = f
	}
	return NewSplit(fs[0], fs[1]), nil
}

// New returns a Logger writing all its kmsg records to w.
func New(w io.Writer) *Logger {
	return NewSplit(w, w)
}

// NewSplit returns a Logger writing notable records to notable and trace
// records to trace.
func NewSplit(notable, trace io.Writer) *Logger {
	return &Logger{notable: notable, trace: trace}
}

// Discard is a Logger that drops everything.
func Discard() *Logger {
	return New(io.Discard)
}

// SetTrace switches trace lines (Debugf) on or off.
func (l *Logger) SetTrace(on bool) { l.tracing.Store(on) }

// Tracing tells whether trace lines are written.
func (l *Logger) Tracing() bool { return l.tracing.Load() }

func (l *Logger) log(w io.Writer, level int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(msg, "\n"), "\n") {
		// A failed write has nowhere to be reported: ignore it.
		_, _ = fmt.Fprintf(w, "<%d>%s%s\n", level, Prefix, line)
	}
}

// Errorf logs a notable line at KERN_ERR.
func (l *Logger) Errorf(format string, args ...any) { l.log(l.notable, levelErr, format, args...) }

// Warnf logs a notable line at KERN_WARNING.
func (l *Logger) Warnf(format string, args ...any) { l.log(l.notable, levelWarn, format, args...) }

// Infof logs a notable line at KERN_INFO.
func (l *Logger) Infof(format string, args ...any) { l.log(l.notable, levelInfo, format, args...) }

// Debugf logs a trace line at KERN_DEBUG, if tracing is on.
func (l *Logger) Debugf(format string, args ...any) {
	if l.Tracing() {
		l.log(l.trace, levelDebug, format, args...)
	}
}
