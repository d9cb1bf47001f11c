package zeromq

import (
	"fmt"
	"slices"
)

// Bounds on what one subscriber may make the output hold and scan: every
// event's topic is matched against its prefixes.
const (
	maxSubscriptions     = 10000
	maxSubscriptionBytes = 256 << 10 // the prefixes' bytes, summed
)

var (
	errTooManySubscriptions = fmt.Errorf("more than %d subscriptions", maxSubscriptions)
	errSubscriptionBytes    = fmt.Errorf("subscriptions of more than %d bytes in all", maxSubscriptionBytes)
)

// subscriptions is one peer's set of topic prefixes. A topic is matched
// by looking up each of its own prefixes whose length some subscription
// has: at most len(topic)+1 map lookups, however many prefixes the peer
// subscribed to.
type subscriptions struct {
	count   map[string]int // prefix -> times subscribed
	lengths []int          // distinct prefix lengths, ascending
	byLen   map[int]int    // prefix length -> distinct prefixes of that length
	bytes   int            // sum of the distinct prefixes' lengths
}

func newSubscriptions() subscriptions {
	return subscriptions{count: map[string]int{}, byLen: map[int]int{}}
}

func (s *subscriptions) match(topic string) bool {
	for _, n := range s.lengths {
		if n > len(topic) {
			return false
		}
		if s.count[topic[:n]] > 0 {
			return true
		}
	}
	return false
}

func (s *subscriptions) add(prefix string) error {
	if s.count[prefix] > 0 {
		s.count[prefix]++
		return nil
	}
	switch {
	case len(s.count) >= maxSubscriptions:
		return errTooManySubscriptions
	case s.bytes+len(prefix) > maxSubscriptionBytes:
		return errSubscriptionBytes
	}
	s.count[prefix] = 1
	s.bytes += len(prefix)
	if s.byLen[len(prefix)]++; s.byLen[len(prefix)] == 1 {
		i, _ := slices.BinarySearch(s.lengths, len(prefix))
		s.lengths = slices.Insert(s.lengths, i, len(prefix))
	}
	return nil
}

func (s *subscriptions) remove(prefix string) {
	switch n := s.count[prefix]; {
	case n == 0:
		return
	case n > 1:
		s.count[prefix]--
		return
	}
	delete(s.count, prefix)
	s.bytes -= len(prefix)
	if s.byLen[len(prefix)]--; s.byLen[len(prefix)] == 0 {
		delete(s.byLen, len(prefix))
		i, _ := slices.BinarySearch(s.lengths, len(prefix))
		s.lengths = slices.Delete(s.lengths, i, i+1)
	}
}

// has reports how many times prefix is subscribed.
func (s *subscriptions) has(prefix string) int { return s.count[prefix] }
