// Package filetail reads what libbeat's file output has written since the
// last read: the benchmarks count the agent's events while it runs.
package filetail

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
)

// Reader remembers how far each file matching its pattern has been read.
type Reader struct {
	pattern string
	read    map[string]int64
}

// New returns a Reader of the files matching the glob pattern.
func New(pattern string) *Reader {
	return &Reader{pattern: pattern, read: map[string]int64{}}
}

// Lines calls fn with each whole line the files gained since the last
// call; a line the writer is still in the middle of waits for the next.
func (r *Reader) Lines(fn func(line []byte)) error {
	files, err := filepath.Glob(r.pattern)
	if err != nil {
		return err
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		if _, err := f.Seek(r.read[name], io.SeekStart); err != nil {
			f.Close()
			return err
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return err
		}
		b = b[:bytes.LastIndexByte(b, '\n')+1]
		r.read[name] += int64(len(b))
		for _, line := range bytes.Split(b, []byte{'\n'}) {
			fn(line)
		}
	}
	return nil
}
