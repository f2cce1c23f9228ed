//go:build !vmguest

package codegen

// inVM: the tests run in the emulated test kernel, where they are slower.
const inVM = false
