// Package klog writes the usermode helper's log to the kernel log through
// /dev/kmsg, each line prefixed with "bpfilter_umh: ". The umh has no
// stderr (the kernel does not set up fd 2), so the kernel log is the only
// place where an admin can see what it did.
package klog

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
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
	mu sync.Mutex
	w  io.Writer
}

// Open returns a Logger on /dev/kmsg, or the error of opening it.
func Open() (*Logger, error) {
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/kmsg: %w", err)
	}
	return New(f), nil
}

// New returns a Logger writing kmsg records to w.
func New(w io.Writer) *Logger {
	return &Logger{w: w}
}

// Discard is a Logger that drops everything.
func Discard() *Logger {
	return New(io.Discard)
}

func (l *Logger) log(level int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(msg, "\n"), "\n") {
		// A failed write has nowhere to be reported: ignore it.
		_, _ = fmt.Fprintf(l.w, "<%d>%s%s\n", level, Prefix, line)
	}
}

// Errorf logs at KERN_ERR.
func (l *Logger) Errorf(format string, args ...any) { l.log(levelErr, format, args...) }

// Warnf logs at KERN_WARNING.
func (l *Logger) Warnf(format string, args ...any) { l.log(levelWarn, format, args...) }

// Infof logs at KERN_INFO.
func (l *Logger) Infof(format string, args ...any) { l.log(levelInfo, format, args...) }

// Debugf logs at KERN_DEBUG.
func (l *Logger) Debugf(format string, args ...any) { l.log(levelDebug, format, args...) }
