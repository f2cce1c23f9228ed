//go:build !bpfilter_healthfail

package main

// healthStatus is the answer to the module's health check.
const healthStatus = 0
