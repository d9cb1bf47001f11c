package redact

// word is one word of a shell command: its text, and for each byte of it
// the index of the byte in the string it came from and the index of the
// quoted run it was in (-1: none).
type word struct {
	text string
	src  []int
	run  []int
}

// quoteRun is a quoted part of a shell string: the indices of its quotes.
type quoteRun struct{ open, close int }

// shellCommands splits a shell string into its simple commands' words, as
// far as redaction needs: quotes ('...', "...") and backslashes group
// characters into words, and ; & | && || ( ) and newlines end a command.
// Redirections and substitutions stay inside words. It also returns the
// quoted runs, which words' run indices refer to.
func shellCommands(s string) ([][]word, []quoteRun) {
	var (
		cmds  [][]word
		words []word
		text  []byte
		src   []int
		run   []int
		in    bool // a word has started (it may be empty: '')
		quote byte
		cur   = -1 // the quoted run being read
		runs  []quoteRun
	)
	add := func(c byte, at int) {
		text, src, run, in = append(text, c), append(src, at), append(run, cur), true
	}
	endWord := func() {
		if in {
			words = append(words, word{text: string(text), src: src, run: run})
		}
		text, src, run, in = nil, nil, nil, false
	}
	endCommand := func() {
		endWord()
		if len(words) > 0 {
			cmds = append(cmds, words)
		}
		words = nil
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			runs[cur].close = i
			quote, cur = 0, -1
		case quote == '\'':
			add(c, i)
		case c == '\\' && i+1 < len(s):
			i++
			add(s[i], i)
		case quote == '"':
			add(c, i)
		case c == '\'' || c == '"':
			runs = append(runs, quoteRun{open: i, close: len(s) - 1}) // closed below, if it is
			quote, in, cur = c, true, len(runs)-1
		case c == ' ' || c == '\t':
			endWord()
		case c == ';' || c == '&' || c == '|' || c == '\n' || c == '(' || c == ')':
			endCommand()
		default:
			add(c, i)
		}
	}
	endCommand()
	return cmds, runs
}
