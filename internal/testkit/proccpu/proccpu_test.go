package proccpu

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	now := time.Now()
	cpu, _, err := parseStat("42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 0 0", now)
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, cpu, "utime 250 + stime 50 ticks")
	_, _, err = parseStat("42 (x) S 1", now)
	assert.ErrorContains(t, err, "short stat")
	_, _, err = parseStat("no comm", now)
	assert.ErrorContains(t, err, "malformed stat")
}

func TestOfSelf(t *testing.T) {
	_, at, err := Of(os.Getpid())
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), at, time.Second)
}
