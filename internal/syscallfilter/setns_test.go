package syscallfilter

import (
	"runtime"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAllowSetns: after AllowSetns, libbeat's default policy lets setns(2)
// through (the agent enters each network namespace with it), and nothing
// else changes.
func TestAllowSetns(t *testing.T) {
	require.NotNil(t, defaultPolicy, "libbeat has a default policy for %s", runtime.GOARCH)
	info, err := arch.GetInfo("")
	require.NoError(t, err)
	before, err := defaultPolicy.Assemble()
	require.NoError(t, err)

	require.NoError(t, AllowSetns())
	after, err := defaultPolicy.Assemble()
	require.NoError(t, err)
	assert.Equal(t, seccomp.ActionAllow, verdict(t, after, info, "setns"), "setns(2) on %s", runtime.GOARCH)
	for name := range info.SyscallNames {
		if name != "setns" {
			assert.Equal(t, verdict(t, before, info, name), verdict(t, after, info, name), name)
		}
	}
}
