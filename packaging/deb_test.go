package packaging

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDebPackage installs the deb with dpkg, checks the layout, runs the
// installed connbeat as the connbeat user with the unit's capabilities,
// upgrades, removes and purges it. Whatever fails, the package and its user
// are purged at the end, so the test can run again.
func TestDebPackage(t *testing.T) {
	requireRoot(t)
	requireTools(t, "dpkg", "dpkg-query", "setpriv", "getent", "systemd-analyze", "/usr/bin/python3")
	d := distFiles(t)
	if status := debStatus(); status != "" {
		t.Skipf("connbeat is already on this machine (%s): this test installs and purges it; dpkg --purge connbeat first", status)
	}
	t.Cleanup(func() { purge(t) })

	run(t, "dpkg", "-i", d.deb)

	t.Run("files owners modes", testInstalledFiles)
	t.Run("user", testUser)
	t.Run("systemd-analyze verify", func(t *testing.T) {
		out, err := exec.Command("systemd-analyze", "verify", unitPath).CombinedOutput()
		require.NoError(t, err, "%s", out)
		// verify exits 0 on unknown keys and typos: it must say nothing.
		assert.Empty(t, string(out))
	})
	t.Run("version", func(t *testing.T) {
		out := run(t, "/usr/bin/connbeat", "version")
		assert.True(t, strings.HasPrefix(out, "connbeat version "+d.version+" "), "%s", out)
	})
	t.Run("connbeat user reads its config", func(t *testing.T) {
		// No capabilities: the config's group, not CAP_DAC_READ_SEARCH,
		// lets the service read it, and libbeat's ownership check passes.
		out := run(t, "setpriv", "--reuid", "connbeat", "--regid", "connbeat", "--init-groups",
			"/usr/bin/connbeat", "test", "config")
		assert.Contains(t, out, "Config OK")
	})
	t.Run("capabilities", testCapabilities)
	t.Run("conntrack drop-in", testConntrackDropIn)
	t.Run("hardened run", testHardenedRun)
	t.Run("upgrade keeps the edited config", func(t *testing.T) { testUpgrade(t, d) })
	t.Run("remove keeps config, data and user", testRemove)
	t.Run("purge leaves nothing", testPurge)
}

const (
	unitPath = "/usr/lib/systemd/system/connbeat.service"
	// dropInPath is the shipped poll-only drop-in, not active until an
	// operator copies it into /etc/systemd/system/connbeat.service.d/.
	dropInPath = "/usr/share/connbeat/systemd/poll-only.conf"
	confPath   = "/etc/connbeat/connbeat.yml"
	// stateFile stands for what the agent keeps in its data directory.
	stateFile = "/var/lib/connbeat/packaging-test-state"
)

// debStatus is dpkg's status of the connbeat package, "" when dpkg does not
// know it.
func debStatus() string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "connbeat").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// purge removes the package and, should its postrm have failed, the user.
func purge(t *testing.T) {
	if debStatus() != "" {
		if out, err := exec.Command("dpkg", "--purge", "connbeat").CombinedOutput(); err != nil {
			t.Errorf("cleanup: dpkg --purge connbeat: %v\n%s", err, out)
		}
	}
	if _, err := user.Lookup("connbeat"); err == nil {
		t.Errorf("cleanup: the connbeat user outlived the purge; removing it")
		_ = exec.Command("userdel", "connbeat").Run()
	}
	if _, err := user.LookupGroup("connbeat"); err == nil {
		_ = exec.Command("groupdel", "connbeat").Run()
	}
}

func testInstalledFiles(t *testing.T) {
	tests := []struct {
		path         string
		mode         os.FileMode
		owner, group string
	}{
		{"/usr/share/connbeat/bin/connbeat", 0o755, "root", "root"},
		{"/usr/bin/connbeat", 0o755, "root", "root"},
		{"/etc/connbeat", os.ModeDir | 0o755, "root", "root"},
		{confPath, 0o640, "root", "connbeat"},
		{"/etc/connbeat/connbeat.reference.yml", 0o644, "root", "root"},
		{"/etc/connbeat/fields.yml", 0o644, "root", "root"},
		{unitPath, 0o644, "root", "root"},
		{dropInPath, 0o644, "root", "root"},
		{"/var/lib/connbeat", os.ModeDir | 0o750, "connbeat", "connbeat"},
		{"/var/log/connbeat", os.ModeDir | 0o750, "connbeat", "connbeat"},
		{"/usr/share/doc/connbeat/README.md", 0o644, "root", "root"},
		{"/usr/share/doc/connbeat/copyright", 0o644, "root", "root"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			mode, owner, group := fileOwner(t, tt.path)
			assert.Equal(t, tt.mode, mode)
			assert.Equal(t, tt.owner, owner)
			assert.Equal(t, tt.group, group)
		})
	}

	for installed, source := range map[string]string{
		confPath:                               "../connbeat.yml",
		"/etc/connbeat/connbeat.reference.yml": "../connbeat.reference.yml",
		"/etc/connbeat/fields.yml":             "../fields.yml",
		unitPath:                               "connbeat.service",
		dropInPath:                             "poll-only.conf",
	} {
		assert.Equal(t, readFile(t, source), readFile(t, installed), installed)
	}
	conffiles := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "connbeat")
	assert.Equal(t, []string{confPath}, conffileNames(conffiles))
}

func testUser(t *testing.T) {
	entry := strings.Split(strings.TrimSpace(run(t, "getent", "passwd", "connbeat")), ":")
	require.Len(t, entry, 7)
	uid, err := strconv.Atoi(entry[2])
	require.NoError(t, err)
	assert.Less(t, uid, 1000, "a system user")
	assert.Equal(t, "/var/lib/connbeat", entry[5])
	assert.Equal(t, "/usr/sbin/nologin", entry[6])
	group := strings.Split(strings.TrimSpace(run(t, "getent", "group", "connbeat")), ":")
	require.Len(t, group, 4)
	assert.Equal(t, group[2], entry[3], "the user's primary group is connbeat")
	assert.Empty(t, group[3], "nobody else is in the connbeat group")
}

func testUpgrade(t *testing.T, d dist) {
	requireTools(t, "go")
	edited := readFile(t, confPath) + "# edited by the operator\n"
	require.NoError(t, os.WriteFile(confPath, []byte(edited), 0o640))
	uidBefore := run(t, "id", "-u", "connbeat")
	// State the agent keeps must survive upgrade and remove.
	run(t, "setpriv", "--reuid", "connbeat", "--regid", "connbeat", "--init-groups",
		"sh", "-c", "echo kept > "+stateFile)

	// The next version: same files, higher version number.
	next := d.version + "+upgradetest"
	deb := filepath.Join(t.TempDir(), "connbeat_"+next+"_amd64.deb")
	build := exec.Command("go", "tool", "nfpm", "pkg", "--config", "packaging/nfpm.yaml", "--packager", "deb", "--target", deb)
	build.Dir = ".."
	build.Env = append(os.Environ(), "CONNBEAT_VERSION="+next, "CONNBEAT_ARCH="+runtime.GOARCH,
		"CONNBEAT_BINARY=/usr/share/connbeat/bin/connbeat")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	// No --force-conf*: dpkg must keep the edited file without asking.
	run(t, "dpkg", "-i", deb)
	assert.Equal(t, next, run(t, "dpkg-query", "-W", "-f=${Version}", "connbeat"))
	assert.Equal(t, edited, readFile(t, confPath))
	mode, owner, group := fileOwner(t, confPath)
	assert.Equal(t, []any{os.FileMode(0o640), "root", "connbeat"}, []any{mode, owner, group})
	assert.Equal(t, uidBefore, run(t, "id", "-u", "connbeat"), "the upgrade kept the user")
	assert.FileExists(t, stateFile, "the upgrade kept connbeat's data")
}

func testRemove(t *testing.T) {
	run(t, "dpkg", "--remove", "connbeat")
	assert.Equal(t, "rc", debStatus(), "removed, config files kept")
	for _, gone := range []string{"/usr/share/connbeat/bin/connbeat", "/usr/bin/connbeat", unitPath, dropInPath} {
		assert.NoFileExists(t, gone)
	}
	for _, kept := range []string{confPath, stateFile} {
		assert.FileExists(t, kept)
	}
	_, err := user.Lookup("connbeat")
	assert.NoError(t, err, "the user stays until purge")
}

func testPurge(t *testing.T) {
	uid := strings.TrimSpace(run(t, "id", "-u", "connbeat"))
	run(t, "dpkg", "--purge", "connbeat")
	assert.Empty(t, debStatus(), "dpkg forgot the package")
	for _, gone := range []string{"/etc/connbeat", "/var/lib/connbeat", "/var/log/connbeat",
		"/usr/share/connbeat", "/usr/share/doc/connbeat", "/usr/bin/connbeat", unitPath, dropInPath} {
		_, err := os.Lstat(gone)
		assert.ErrorIs(t, err, os.ErrNotExist, gone)
	}
	_, err := user.Lookup("connbeat")
	assert.Error(t, err, "the purge removed the connbeat user")
	_, err = user.LookupGroup("connbeat")
	assert.Error(t, err, "the purge removed the connbeat group")
	info, err := filepath.Glob("/var/lib/dpkg/info/connbeat.*")
	require.NoError(t, err)
	assert.Empty(t, info)
	// Nothing the agent wrote is left under the removed user's uid.
	out := run(t, "find", "/etc", "/var", "/usr", "-xdev", "-uid", uid)
	assert.Empty(t, out)
}

func fileOwner(t *testing.T, path string) (os.FileMode, string, string) {
	t.Helper()
	fi, err := os.Lstat(path)
	require.NoError(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	u, err := user.LookupId(strconv.Itoa(int(st.Uid)))
	require.NoError(t, err)
	g, err := user.LookupGroupId(strconv.Itoa(int(st.Gid)))
	require.NoError(t, err)
	return fi.Mode(), u.Username, g.Name
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// conffileNames takes dpkg-query's ${Conffiles} (" path md5" per line).
func conffileNames(s string) []string {
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}
