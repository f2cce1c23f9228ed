//go:build vmguest

package datapath

const inVM = true
