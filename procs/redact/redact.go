// Package redact masks credentials in command lines before they are
// shipped: the values of secret-looking flags and assignments, flags that
// carry a password for one program only (mysql -p, redis-cli -a, sshpass
// -p, plink -pw), commands inside shell strings (sh -c '...'), URL
// passwords, authorization headers, JSON and YAML-ish key: value pairs,
// and the token formats secret scanners look for.
package redact

import (
	"path/filepath"
	"slices"
	"strings"
)

// Mask replaces a credential.
const Mask = "REDACTED"

// maxDepth bounds how deep shell strings inside shell strings are read.
const maxDepth = 3

// Args returns args with every credential it recognises replaced by Mask.
// It keeps the number of arguments and everything that is not a
// credential.
func Args(args []string) []string {
	out := slices.Clone(args)
	byArg := map[int][]span{}
	for _, sp := range command(args, 0) {
		byArg[sp.arg] = append(byArg[sp.arg], sp)
	}
	for i := range out {
		out[i] = text(apply(out[i], byArg[i]))
	}
	return out
}

// span is a credential in a command's arguments: bytes from..to of
// argument arg.
type span struct{ arg, from, to int }

// command finds the credentials of one command's arguments.
func command(args []string, depth int) []span {
	var spans []span
	mask := func(i, from, to int) {
		if from < to && to <= len(args[i]) && args[i][from:to] != Mask {
			spans = append(spans, span{i, from, to})
		}
	}
	inScript := func(i int) {
		if depth < maxDepth {
			for _, r := range scriptSpans(args[i], depth+1) {
				spans = append(spans, span{i, r.from, r.to})
			}
		}
	}
	var prog *program
	wrapped := false // a wrapper (sudo, env, ssh, ...) came before: its operands may start commands
	positional := map[int]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if p, ok := programs[progName(a)]; ok && (i == 0 || wrapped) {
			prog = p
			wrapped = wrapped || p.wrapper
			if p.positional != nil {
				for _, j := range p.positional(args[i+1:]) {
					positional[i+1+j] = true
				}
			}
			continue
		}
		if i == 0 {
			continue
		}
		if positional[i] {
			mask(i, 0, len(a))
			continue
		}
		if prog != nil {
			if idx, from, to, ok := prog.match(args, i); ok {
				mask(idx, from, to)
				i = idx
				continue
			}
		}
		if prog != nil && prog.shell && isShellC(a) && i+1 < len(args) {
			inScript(i + 1)
			i++
			continue
		}
		switch {
		case strings.HasPrefix(a, "-") && len(a) > 1:
			name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			switch {
			case hasValue && secretName(name):
				mask(i, len(a)-len(value), len(a))
			case hasValue && userFlag(name):
				if from, ok := userPassword(value); ok {
					mask(i, len(a)-len(value)+from, len(a))
				}
			case !hasValue && secretFlag(name) && i+1 < len(args) && !isFlag(args[i+1]):
				mask(i+1, 0, len(args[i+1]))
				i++
			case !hasValue && userFlag(name) && i+1 < len(args):
				if from, ok := userPassword(args[i+1]); ok {
					mask(i+1, from, len(args[i+1]))
				}
				i++
			}
		case strings.ContainsRune(a, '='):
			// NAME=value, as env, make or a query string writes it.
			if name, value, _ := strings.Cut(a, "="); validName(name) && secretName(name) {
				mask(i, len(a)-len(value), len(a))
			}
		case strings.ContainsAny(a, " \t\n") && looksLikeCommand(a):
			// A command in one argument: ssh host 'mysql -pS', watch '...'.
			inScript(i)
		}
	}
	return spans
}

// byteRange is a credential in a string.
type byteRange struct{ from, to int }

// scriptSpans finds the credentials of the commands of a shell string, as
// ranges of the string (quotes inside a credential included).
func scriptSpans(s string, depth int) []byteRange {
	var out []byteRange
	cmds, runs := shellCommands(s)
	for _, words := range cmds {
		texts := make([]string, len(words))
		for i, w := range words {
			texts[i] = w.text
		}
		for _, sp := range command(texts, depth) {
			w := words[sp.arg]
			from, to := w.src[sp.from], w.src[sp.to-1]+1
			// Keep the quotes balanced: a credential that leaves a quoted
			// run takes the run's opening quote along, one that enters a
			// run its closing quote.
			first, last := w.run[sp.from], w.run[sp.to-1]
			if first != last {
				if first >= 0 {
					from = runs[first].open
				}
				if last >= 0 {
					to = runs[last].close + 1
				}
			}
			out = append(out, byteRange{from, to})
		}
	}
	return out
}

// apply replaces the spans of s by Mask; overlapping spans merge.
func apply(s string, spans []span) string {
	if len(spans) == 0 {
		return s
	}
	slices.SortFunc(spans, func(a, b span) int { return a.from - b.from })
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		from := max(sp.from, last)
		if sp.to <= from {
			continue
		}
		b.WriteString(s[last:from])
		b.WriteString(Mask)
		last = sp.to
	}
	b.WriteString(s[last:])
	return b.String()
}

// progName is the program an argument names: its base name, lower case.
func progName(a string) string {
	return strings.ToLower(filepath.Base(a))
}

// isShellC reports whether a is a shell's -c, alone or among other short
// options (-ec, -lc, -xc).
func isShellC(a string) bool {
	if len(a) < 2 || a[0] != '-' || a[1] == '-' {
		return false
	}
	return strings.HasSuffix(a, "c") && strings.Trim(a[1:], "abefhklmnprstuvxBCEHPc") == ""
}

// isFlag reports whether a looks like the next option rather than a value.
func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

// looksLikeCommand reports whether a string argument holds a command line
// worth splitting: it names a known program, runs a shell separator, or
// passes options.
func looksLikeCommand(a string) bool {
	first, _, _ := strings.Cut(strings.TrimSpace(a), " ")
	if _, ok := programs[progName(first)]; ok {
		return true
	}
	return strings.Contains(a, " -") || strings.ContainsAny(a, ";|&\n")
}

// validName reports whether s could be a variable or parameter name.
func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c == '-' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
