package packaging

import (
	"archive/tar"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTarball checks that the tar.gz holds everything connbeat needs and
// runs from its unpacked directory, writing data and logs only there.
func TestTarball(t *testing.T) {
	requireTools(t, "tar")
	d := distFiles(t)

	t.Run("contents", func(t *testing.T) {
		f, err := os.Open(d.tarball)
		require.NoError(t, err)
		defer f.Close()
		zr, err := gzip.NewReader(f)
		require.NoError(t, err)
		tr := tar.NewReader(zr)
		var got []string
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			got = append(got, fmt.Sprintf("%s %v %d:%d", h.Name, h.FileInfo().Mode(), h.Uid, h.Gid))
		}
		sort.Strings(got)
		dir := d.tarDir
		assert.Equal(t, []string{
			dir + "/ drwxr-xr-x 0:0",
			dir + "/LICENSE -rw-r--r-- 0:0",
			dir + "/README.md -rw-r--r-- 0:0",
			dir + "/connbeat -rwxr-xr-x 0:0",
			dir + "/connbeat.reference.yml -rw-r--r-- 0:0",
			// Owner-only: outputs' credentials go here.
			dir + "/connbeat.yml -rw------- 0:0",
			dir + "/fields.yml -rw-r--r-- 0:0",
		}, got)
	})

	unpacked := t.TempDir()
	run(t, "tar", "-xzf", d.tarball, "-C", unpacked)
	home := filepath.Join(unpacked, d.tarDir)

	t.Run("static binary", func(t *testing.T) {
		bin, err := elf.Open(filepath.Join(home, "connbeat"))
		require.NoError(t, err)
		defer bin.Close()
		for _, p := range bin.Progs {
			assert.NotEqual(t, elf.PT_INTERP, p.Type, "the binary needs a dynamic loader; build it with CGO_ENABLED=0")
		}
	})

	t.Run("version", func(t *testing.T) {
		cmd := exec.Command("./connbeat", "version")
		cmd.Dir = home
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.True(t, strings.HasPrefix(string(out), "connbeat version "+d.version+" "), "%s", out)
	})

	t.Run("runs from its directory", func(t *testing.T) {
		port := listen(t)
		self, err := os.Executable()
		require.NoError(t, err)
		// The shipped connbeat.yml as it is; -E only shortens the waits.
		a := startAgent(t, home, "./connbeat",
			"-E", "connbeat.poll_interval=200ms", "-E", "queue.mem.flush.timeout=100ms")
		a.logDir = filepath.Join(home, "logs")
		ev := a.waitFor(t, fmt.Sprintf("the test's own listener on port %d", port), func(ev map[string]any) bool {
			return field(ev, "direction") == "listening" && number(ev, "local_port") == port
		})
		assert.Equal(t, os.Getpid(), number(ev, "local_process.pid"))
		assert.Equal(t, filepath.Base(self), field(ev, "local_process.binary"))
		a.stop(t)

		// path.home defaults to the binary's directory: data and logs are
		// beside it, nothing is written elsewhere.
		_, err = os.Stat(filepath.Join(home, "data", "meta.json"))
		assert.NoError(t, err)
		logs, err := filepath.Glob(filepath.Join(home, "logs", "connbeat-*.ndjson"))
		require.NoError(t, err)
		assert.NotEmpty(t, logs, "connbeat's log should be in %s/logs", home)
	})
}
