package http

import (
	nethttp "net/http"
	"strconv"
	"strings"
	"time"
)

// verdict is what a response means for its batch.
type verdict uint8

const (
	accepted  verdict = iota + 1 // 2xx: ACK
	retryable                    // 3xx not followed, 408, 429, 5xx: send again later
	rejected                     // other status: drop the batch
)

func classify(status int) verdict {
	switch {
	case status >= 200 && status < 300:
		return accepted
	case status >= 300 && status < 400, // a redirect not followed: nothing was delivered
		status == nethttp.StatusRequestTimeout, status == nethttp.StatusTooManyRequests, status >= 500:
		return retryable
	}
	return rejected
}

// retryAfter parses a Retry-After header (delay-seconds or an HTTP-date)
// relative to now, capped at max. It returns 0 when the header is absent or
// malformed.
func retryAfter(h string, now time.Time, max time.Duration) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(max/time.Second) {
			return max
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := nethttp.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	if d <= 0 {
		return 0
	}
	if d > max {
		return max
	}
	return d
}
