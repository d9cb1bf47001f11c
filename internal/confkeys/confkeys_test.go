package confkeys

import (
	"testing"

	"github.com/elastic/elastic-agent-libs/config"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type settings struct {
	Hosts   []string `config:"hosts" validate:"required"`
	Timeout int      `config:"timeout,omitempty"`
	Inner   struct {
		Depth int `config:"depth"`
	} `config:"inner"`
	Shared   shared `config:",inline"`
	untagged int    //nolint:unused // not a key
}

type shared struct {
	Proxy string `config:"proxy_url"`
}

func TestOf(t *testing.T) {
	assert.Equal(t, map[string]bool{"hosts": true, "timeout": true, "inner": true, "proxy_url": true, "enabled": true},
		Of(settings{}, "enabled"))
	assert.Equal(t, Of(settings{}), Of(&settings{}), "a pointer names the same keys")
}

func TestCheck(t *testing.T) {
	known := Of(settings{}, "enabled")
	for _, tc := range []struct {
		name string
		yaml map[string]any
		err  string
	}{
		{name: "known keys, nested and inline ones included", yaml: map[string]any{"hosts": []string{"a"}, "inner.depth": 2, "proxy_url": "x", "enabled": true}},
		{name: "empty section", yaml: map[string]any{}},
		{name: "a typo", yaml: map[string]any{"hosts": []string{"a"}, "timeuot": 3},
			err: "unknown option out.timeuot (known options: enabled, hosts, inner, proxy_url, timeout)"},
		{name: "two, sorted", yaml: map[string]any{"zz": 1, "aa": 2},
			err: "unknown option out.aa, out.zz (known options: enabled, hosts, inner, proxy_url, timeout)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.NewConfigFrom(tc.yaml)
			require.NoError(t, err)
			err = Check(c, "out", known)
			if tc.err == "" {
				assert.NoError(t, err)
				return
			}
			assert.EqualError(t, err, tc.err)
		})
	}
}
