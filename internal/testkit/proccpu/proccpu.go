// Package proccpu reads how much CPU a process has used, for the
// benchmarks that measure the built agent from outside.
package proccpu

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat.
const clockTicks = 100

// Of returns a process's user+system time (all threads) and when it was
// read.
func Of(pid int) (time.Duration, time.Time, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	now := time.Now()
	if err != nil {
		return 0, now, err
	}
	return parseStat(string(raw), now)
}

func parseStat(s string, now time.Time) (time.Duration, time.Time, error) {
	// Fields after the parenthesised comm, which may hold spaces.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, now, fmt.Errorf("malformed stat %q", s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, now, fmt.Errorf("short stat %q", s)
	}
	// f[0] is field 3 (state): utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, now, fmt.Errorf("stat times %q %q", f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTicks, now, nil
}
