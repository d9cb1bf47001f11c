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

func TestUnpack(t *testing.T) {
	c, err := config.NewConfigFrom(map[string]any{"hosts": []string{"a"}, "timeout": 7, "enabled": true})
	require.NoError(t, err)
	dst := settings{Timeout: 1}
	require.NoError(t, Unpack(c, "out", &dst, "enabled"))
	assert.Equal(t, []string{"a"}, dst.Hosts)
	assert.Equal(t, 7, dst.Timeout)

	// An unknown key and a value that does not unpack: both reported.
	c, err = config.NewConfigFrom(map[string]any{"hosts": []string{"a"}, "timeout": "soon", "timeuot": 3})
	require.NoError(t, err)
	err = Unpack(c, "out", &settings{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unknown option out.timeuot")
	assert.Contains(t, err.Error(), "out: ")
	assert.Contains(t, err.Error(), "timeout")
}
