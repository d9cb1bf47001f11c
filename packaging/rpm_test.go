package packaging

import (
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRPMPackage inspects the rpm with Debian's rpm tools: it cannot be
// installed here, so its header is checked against the deb's layout.
func TestRPMPackage(t *testing.T) {
	requireTools(t, "rpm")
	d := distFiles(t)

	t.Run("name version arch", func(t *testing.T) {
		out := run(t, "rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{ARCH} %{LICENSE}", d.rpm)
		assert.Equal(t, "connbeat "+d.version+" x86_64 Apache-2.0", out)
	})

	t.Run("files owners modes", func(t *testing.T) {
		out := run(t, "rpm", "-qp", "--qf",
			"[%{FILENAMES} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEMODES:perms} %{FILEFLAGS:fflags}\n]", d.rpm)
		got := strings.Split(strings.TrimSpace(out), "\n")
		for i := range got {
			got[i] = strings.TrimSpace(got[i]) // files without flags end in a space
		}
		sort.Strings(got)
		want := []string{
			"/etc/connbeat root:root drwxr-xr-x",
			"/etc/connbeat/connbeat.reference.yml root:root -rw-r--r--",
			// c: config, n: noreplace (an edited file survives an upgrade).
			"/etc/connbeat/connbeat.yml root:connbeat -rw-r----- cn",
			"/etc/connbeat/fields.yml root:root -rw-r--r--",
			"/usr/bin/connbeat root:root -rwxr-xr-x",
			"/usr/lib/systemd/system/connbeat.service root:root -rw-r--r--",
			"/usr/share/connbeat/bin/connbeat root:root -rwxr-xr-x",
			"/usr/share/connbeat/systemd/poll-only.conf root:root -rw-r--r--",
			"/usr/share/doc/connbeat/README.md root:root -rw-r--r--",
			"/usr/share/licenses/connbeat/LICENSE root:root -rw-r--r-- l",
			"/var/lib/connbeat connbeat:connbeat drwxr-x---",
			"/var/log/connbeat connbeat:connbeat drwxr-x---",
		}
		assert.Equal(t, want, got)
	})

	t.Run("scripts", func(t *testing.T) {
		out := run(t, "rpm", "-qp", "--scripts", d.rpm)
		sections := map[string]string{}
		var current string
		for _, line := range strings.Split(out, "\n") {
			if name, _, ok := strings.Cut(line, " scriptlet (using /bin/sh):"); ok {
				current = name
				continue
			}
			sections[current] += line + "\n"
		}
		require.Contains(t, sections, "preinstall")
		assert.Contains(t, sections["preinstall"], "useradd --system --gid connbeat")
		assert.Contains(t, sections["postinstall"], "chown connbeat:connbeat /var/lib/connbeat /var/log/connbeat")
		assert.Contains(t, sections["postinstall"], "systemctl try-restart connbeat.service")
		assert.Contains(t, sections["preuninstall"], "systemctl stop connbeat.service")
		assert.Contains(t, sections["postuninstall"], "userdel connbeat")
		assert.Contains(t, sections["postuninstall"], "rm -rf /var/lib/connbeat /var/log/connbeat")
	})

	t.Run("dependencies", func(t *testing.T) {
		out := run(t, "rpm", "-qpR", d.rpm)
		deps := strings.Fields(out)
		// The scripts run useradd/userdel (shadow-utils) under /bin/sh; the
		// binary is static (TestTarball checks), so nothing else.
		assert.ElementsMatch(t, []string{"/bin/sh", "shadow-utils"}, deps)
	})
}
