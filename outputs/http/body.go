package http

import (
	"bytes"
	"compress/gzip"
	"fmt"
)

// bodyWriter builds one request body from encoded events, reusing its
// buffers between batches.
type bodyWriter struct {
	format string
	gzip   bool
	level  int

	raw bytes.Buffer
	gz  bytes.Buffer
	zw  *gzip.Writer
	n   int
}

func newBodyWriter(format string, gz bool, level int) *bodyWriter {
	return &bodyWriter{format: format, gzip: gz, level: level}
}

func (b *bodyWriter) reset() {
	b.raw.Reset()
	b.n = 0
	if b.format == FormatJSONArray {
		b.raw.WriteByte('[')
	}
}

// add appends one encoded event (a JSON object without a newline).
func (b *bodyWriter) add(event []byte) {
	if b.n > 0 && b.format == FormatJSONArray {
		b.raw.WriteByte(',')
	}
	b.raw.Write(event)
	if b.format == FormatNDJSON {
		b.raw.WriteByte('\n')
	}
	b.n++
}

// finish returns the body to send, compressed if configured. It is valid
// until the next reset.
func (b *bodyWriter) finish() ([]byte, error) {
	if b.format == FormatJSONArray {
		b.raw.WriteByte(']')
	}
	if !b.gzip {
		return b.raw.Bytes(), nil
	}
	b.gz.Reset()
	if b.zw == nil {
		zw, err := gzip.NewWriterLevel(&b.gz, b.level)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		b.zw = zw
	} else {
		b.zw.Reset(&b.gz)
	}
	if _, err := b.zw.Write(b.raw.Bytes()); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if err := b.zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return b.gz.Bytes(), nil
}

func (b *bodyWriter) contentType() string {
	if b.format == FormatNDJSON {
		return "application/x-ndjson"
	}
	return "application/json"
}
