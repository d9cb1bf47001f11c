// Command mutants checks that the tests catch deliberate breaks of the
// agent: it copies the working tree to a temporary directory, applies each
// mutant of the list in mutants.go there, one at a time (the real tree is
// never touched), runs the test that must catch it, and puts the file back.
// It prints one line per mutant, caught (by which test) or survived, and
// exits 1 if any survived or could not be run.
//
// The copy shares the build cache with the tree when the build does not
// embed directory names: with GOFLAGS=-trimpath (as .ci/run sets), each
// mutant recompiles only the package it changes and what imports it.
//
// Usage: go run ./tools/mutants [-fast] [-run regexp] [-list] [-check] [-v]
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

func main() {
	fast := flag.Bool("fast", false, "skip the slow mutants (their tests build and run the agent, or start rabbitmq-server)")
	only := flag.String("run", "", "run only the mutants whose name matches this regexp")
	list := flag.Bool("list", false, "list the mutants and exit")
	check := flag.Bool("check", false, "only check that each mutant still applies to the tree")
	verbose := flag.Bool("v", false, "print the test output of every mutant")
	flag.Parse()

	var sel []mutant
	re, err := regexp.Compile(*only)
	if err != nil {
		fatalf("-run: %v", err)
	}
	for _, m := range mutants {
		if re.MatchString(m.Name) && !(*fast && m.Slow) {
			sel = append(sel, m)
		}
	}
	if *list {
		for _, m := range sel {
			fmt.Printf("%-28s %-42s %s -run '%s'\n", m.Name, m.File, m.Pkg, m.Run)
		}
		return
	}
	if *check {
		if err := checkApply(sel); err != nil {
			fatalf("%v", err)
		}
		fmt.Printf("%d mutants apply\n", len(sel))
		return
	}
	if err := run(sel, *verbose); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mutants: "+format+"\n", args...)
	os.Exit(1)
}

// checkApply checks that every mutant finds its text in the tree.
func checkApply(sel []mutant) error {
	root, err := gitRoot()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range sel {
		src, err := os.ReadFile(filepath.Join(root, m.File))
		if err == nil {
			_, err = m.apply(src)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
		}
	}
	return errors.Join(errs...)
}

func run(sel []mutant, verbose bool) error {
	root, err := gitRoot()
	if err != nil {
		return err
	}
	snap, err := readTree(root)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "connbeat-mutants-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for rel := range snap {
		if err := snap.write(tmp, rel); err != nil {
			return err
		}
	}

	start := time.Now()
	failed := 0
	for _, m := range sel {
		t0 := time.Now()
		res := m.try(snap, tmp, verbose)
		if res.verdict != caught {
			failed++
		}
		fmt.Printf("%-8s %-28s %s (%s)\n", res.verdict, m.Name, res.detail, time.Since(t0).Round(time.Second))
	}
	fmt.Printf("%d mutants, %d not caught, in %s\n", len(sel), failed, time.Since(start).Round(time.Second))
	if failed > 0 {
		return errors.New("some mutants were not caught")
	}
	return nil
}

type verdict string

const (
	caught   verdict = "caught"
	survived verdict = "SURVIVED"
	broken   verdict = "ERROR"
)

type result struct {
	verdict verdict
	detail  string
}

// try applies m in the copy at tmp, runs its test there and puts back the
// files it changed from the snapshot.
func (m mutant) try(snap snapshot, tmp string, verbose bool) result {
	dir := filepath.Dir(m.File)
	defer func() {
		if err := snap.restoreDir(tmp, dir); err != nil {
			fatalf("putting %s back: %v", dir, err)
		}
	}()
	path := filepath.Join(tmp, m.File)
	src, err := os.ReadFile(path)
	if err != nil {
		return result{broken, err.Error()}
	}
	if src, err = m.apply(src); err != nil {
		return result{broken, err.Error()}
	}
	if err := os.WriteFile(path, src, 0o644); err != nil {
		return result{broken, err.Error()}
	}
	if strings.HasSuffix(m.File, ".c") {
		if out, err := goCmd(tmp, "generate", "./"+dir).CombinedOutput(); err != nil {
			return result{broken, fmt.Sprintf("go generate: %v: %s", err, lastLines(out, 5))}
		}
	}
	// A mutant that does not compile proves nothing: the tests/ harness,
	// which builds the agent itself, would report it as a failure.
	if out, err := goCmd(tmp, "build", "./"+dir).CombinedOutput(); err != nil {
		return result{broken, "does not build: " + lastLines(out, 3)}
	}
	timeout := 5 * time.Minute
	if m.Slow {
		timeout = 15 * time.Minute
	}
	args := []string{"test", "-count=1", "-failfast", "-timeout", timeout.String(), "-run", m.Run, m.Pkg}
	out, err := goCmd(tmp, args...).CombinedOutput()
	if verbose {
		fmt.Printf("--- %s: go %s\n%s\n", m.Name, strings.Join(args, " "), out)
	}
	switch {
	case err == nil && bytes.Contains(out, []byte("[no tests to run]")):
		return result{broken, fmt.Sprintf("no test of %s matches -run %q", m.Pkg, m.Run)}
	case err == nil:
		return result{survived, fmt.Sprintf("%s -run '%s' passed", m.Pkg, m.Run)}
	case bytes.Contains(out, []byte("[build failed]")) || bytes.Contains(out, []byte("[setup failed]")):
		return result{broken, "does not build: " + lastLines(out, 5)}
	}
	if names := failedTests(out); len(names) > 0 {
		return result{caught, "by " + strings.Join(names, ", ")}
	}
	if bytes.Contains(out, []byte("panic: test timed out")) {
		return result{caught, "by a test that hung (timed out)"}
	}
	return result{caught, "by " + m.Pkg + " failing: " + lastLines(out, 2)}
}

// apply returns src with m's edits made, each of which must find its text
// exactly once.
func (m mutant) apply(src []byte) ([]byte, error) {
	for _, e := range m.Edits {
		if n := bytes.Count(src, []byte(e.From)); n != 1 {
			return nil, fmt.Errorf("%q occurs %d times in %s, want once: update tools/mutants", e.From, n, m.File)
		}
		src = bytes.Replace(src, []byte(e.From), []byte(e.To), 1)
	}
	return src, nil
}

var failLine = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)

// failedTests returns the top-level tests go test reported as failed.
func failedTests(out []byte) []string {
	seen := map[string]bool{}
	var names []string
	for _, m := range failLine.FindAllSubmatch(out, -1) {
		name := strings.SplitN(string(m[1]), "/", 2)[0]
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// goCmd runs the go command in dir with the caller's environment (GOFLAGS,
// GOCACHE, CI: the copy builds as the tree does).
func goCmd(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	return cmd
}

func gitRoot() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("finding the tree (run inside the git checkout): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// snapshot is the tree as the mutants start from it: path -> file.
type snapshot map[string]file

type file struct {
	data []byte // a symbolic link's target when link is set
	mode fs.FileMode
	link bool
}

// readTree reads the files git tracks in root, and the untracked ones it
// does not ignore, as they are in the working tree.
func readTree(root string) (snapshot, error) {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing the tree's files: %w", err)
	}
	snap := snapshot{}
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		path := filepath.Join(root, rel)
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			return nil, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(path)
			if err != nil {
				return nil, err
			}
			snap[rel] = file{data: []byte(target), link: true}
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		snap[rel] = file{data: data, mode: fi.Mode().Perm()}
	}
	return snap, nil
}

// write writes the file rel of the snapshot below dst.
func (s snapshot) write(dst, rel string) error {
	f := s[rel]
	path := filepath.Join(dst, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if f.link {
		return os.Symlink(string(f.data), path)
	}
	return os.WriteFile(path, f.data, f.mode)
}

// restoreDir makes the directory dir of the copy at tmp (its files, not
// its subdirectories) the snapshot's again: a mutant changes a file there,
// go generate may change, add or remove others.
func (s snapshot) restoreDir(tmp, dir string) error {
	entries, err := os.ReadDir(filepath.Join(tmp, dir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		rel := filepath.Join(dir, e.Name())
		if _, ok := s[rel]; !ok && !e.IsDir() {
			if err := os.Remove(filepath.Join(tmp, rel)); err != nil {
				return err
			}
		}
	}
	for rel, f := range s {
		if filepath.Dir(rel) != dir || f.link {
			continue // a mutant changes no link
		}
		path := filepath.Join(tmp, rel)
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, f.data) {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := s.write(tmp, rel); err != nil {
			return err
		}
	}
	return nil
}
