package backoff

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestCheck(t *testing.T) {
	assert.NoError(t, Default().Check("out.backoff"))
	assert.NoError(t, Config{Init: time.Second, Max: time.Second}.Check("out.backoff"))
	for _, c := range []Config{{Init: 0, Max: time.Second}, {Init: -time.Second, Max: time.Second}, {Init: 10 * time.Second, Max: time.Second}} {
		err := c.Check("out.backoff")
		if assert.Error(t, err, "%+v", c) {
			assert.Contains(t, err.Error(), "out.backoff: init must be positive and max >= init")
		}
	}
}
