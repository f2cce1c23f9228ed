//go:build bpfilter_healthfail

package main

import "golang.org/x/sys/unix"

// healthStatus fails the module's health check: a test-only build
// (-tags bpfilter_healthfail) that makes insmod fail.
const healthStatus = -int32(unix.EIO)
