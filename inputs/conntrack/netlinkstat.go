package conntrack

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// netlinkDrops returns the Drops column of the socket with inode ino in
// /proc/net/netlink: how many messages the kernel could not queue to it.
// It counts every lost event, where ENOBUFS is reported once per overrun.
func netlinkDrops(path string, ino uint64) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	drops, ok, err := parseNetlinkDrops(f, ino)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if !ok {
		return 0, fmt.Errorf("%s: no socket with inode %d", path, ino)
	}
	return drops, nil
}

// parseNetlinkDrops reads /proc/net/netlink's text (a header line naming
// the columns, then one line per socket) and returns the Drops of the
// socket whose Inode is ino. Columns are found by name, so a kernel that
// adds one does not shift what is read.
func parseNetlinkDrops(r io.Reader, ino uint64) (drops uint64, found bool, err error) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return 0, false, err
		}
		return 0, false, fmt.Errorf("empty file")
	}
	dropsCol, inodeCol := -1, -1
	header := strings.Fields(sc.Text())
	for i, name := range header {
		switch name {
		case "Drops":
			dropsCol = i
		case "Inode":
			inodeCol = i
		}
	}
	if dropsCol < 0 || inodeCol < 0 {
		return 0, false, fmt.Errorf("header %q has no Drops and Inode columns", sc.Text())
	}
	want := strconv.FormatUint(ino, 10)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != len(header) {
			return 0, false, fmt.Errorf("line %q has %d columns, the header %d", sc.Text(), len(fields), len(header))
		}
		if fields[inodeCol] != want {
			continue
		}
		d, err := strconv.ParseUint(fields[dropsCol], 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("Drops of inode %d: %w", ino, err)
		}
		return d, true, nil
	}
	return 0, false, sc.Err()
}
