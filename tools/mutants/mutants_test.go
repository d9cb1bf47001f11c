package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testFunc matches the declaration of a test or fuzz target.
var testFunc = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)\w+)\(`)

// TestMutantsMatchTree keeps the list in step with the tree, without
// running a mutant: each one's text is found exactly once in its file,
// names are unique, and its -run pattern selects a test of its package.
func TestMutantsMatchTree(t *testing.T) {
	const root = "../.."
	names := map[string]bool{}
	for _, m := range mutants {
		t.Run(m.Name, func(t *testing.T) {
			assert.False(t, names[m.Name], "duplicate name")
			names[m.Name] = true
			src, err := os.ReadFile(filepath.Join(root, m.File))
			require.NoError(t, err)
			_, err = m.apply(src)
			require.NoError(t, err)

			run, err := regexp.Compile(strings.SplitN(m.Run, "/", 2)[0])
			require.NoError(t, err)
			tests, err := filepath.Glob(filepath.Join(root, m.Pkg, "*_test.go"))
			require.NoError(t, err)
			var selected []string
			for _, f := range tests {
				src, err := os.ReadFile(f)
				require.NoError(t, err)
				for _, decl := range testFunc.FindAllStringSubmatch(string(src), -1) {
					if run.MatchString(decl[1]) {
						selected = append(selected, decl[1])
					}
				}
			}
			assert.NotEmpty(t, selected, "-run %q selects no test of %s", m.Run, m.Pkg)
		})
	}
	assert.GreaterOrEqual(t, len(mutants), 20)
}
