//go:build !vmguest

package datapath

// inVM: the tests run in the emulated test kernel, where they are slower.
const inVM = false
