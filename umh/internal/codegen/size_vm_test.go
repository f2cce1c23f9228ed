//go:build vmguest

package codegen

const inVM = true
