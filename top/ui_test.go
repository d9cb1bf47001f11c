package top

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/model"
)

type fakeSource struct{ records []model.Record }

func (f *fakeSource) Records(context.Context) ([]model.Record, error) { return f.records, nil }
func (f *fakeSource) Name() string                                    { return "fake" }
func (f *fakeSource) Close() error                                    { return nil }

// screenText returns the simulated terminal's lines.
func screenText(s tcell.SimulationScreen) []string {
	// GetContents hands out the screen's own cells: read them under its
	// lock, as Show writes them.
	cells, w, h := s.GetContents()
	l := s.(sync.Locker)
	l.Lock()
	defer l.Unlock()
	lines := make([]string, h)
	for y := range h {
		var b strings.Builder
		for x := range w {
			if r := cells[y*w+x].Runes; len(r) > 0 {
				b.WriteString(string(r))
			} else {
				b.WriteByte(' ')
			}
		}
		lines[y] = strings.TrimRight(b.String(), " ")
	}
	return lines
}

// waitScreen waits until the screen shows every string of want.
func waitScreen(t *testing.T, s tcell.SimulationScreen, what string, want ...string) []string {
	t.Helper()
	return waitLines(t, s, what, func(lines []string) bool {
		all := strings.Join(lines, "\n")
		for _, w := range want {
			if !strings.Contains(all, w) {
				return false
			}
		}
		return true
	})
}

// waitLines waits until ok is true of the screen's lines.
func waitLines(t *testing.T, s tcell.SimulationScreen, what string, ok func([]string) bool) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines := screenText(s)
		if ok(lines) {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not shown within 10 s; the screen:\n%s", what, strings.Join(lines, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestScreen drives the full-screen view on a simulated 80x24 terminal:
// rows appear, the keys line is there, the filter prompt, d and s change
// what is shown, and q ends the view.
func TestScreen(t *testing.T) {
	screen := tcell.NewSimulationScreen("UTF-8")
	view, err := NewView("", "sockets", false)
	require.NoError(t, err)
	u := newScreenUI(screen, view, 50*time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- u.run(context.Background(), &fakeSource{fixture()}) }()

	waitScreen(t, screen, "first poll", "curl[20]", "listeners 2/2")
	// tview initialises the screen (80x25); then the terminal shrinks.
	screen.SetSize(80, 24)
	require.NoError(t, screen.PostEvent(tcell.NewEventResize(80, 24)))
	lines := waitLines(t, screen, "redrawn at 80x24", func(l []string) bool {
		return len(l) == 24 && strings.HasPrefix(l[23], "q quit") && strings.HasPrefix(l[22], "└")
	})
	assert.Len(t, lines, 24)
	assert.Contains(t, lines[0], "fake · 9 sockets")
	assert.Contains(t, lines[23], "q quit  / filter  d direction  s/S sort  r reverse  Tab pane  Esc clear")
	assert.Contains(t, lines[2], "PROCESS")

	screen.InjectKey(tcell.KeyRune, '/', tcell.ModNone)
	for _, r := range "proc:curl" {
		screen.InjectKey(tcell.KeyRune, r, tcell.ModNone)
	}
	screen.InjectKey(tcell.KeyEnter, 0, tcell.ModNone)
	waitScreen(t, screen, "filter proc:curl", "edges 1/3", "listeners 0/2", "filter: proc:curl")
	waitLines(t, screen, "the prompt closed on Enter", func(l []string) bool { return strings.HasPrefix(l[23], "q quit") })

	screen.InjectKey(tcell.KeyEscape, 0, tcell.ModNone)
	waitScreen(t, screen, "Esc clears", "edges 3/3")
	screen.InjectKey(tcell.KeyRune, 'd', tcell.ModNone)
	waitScreen(t, screen, "d: outbound only", "edges 1/3", "filter: dir:out")
	screen.InjectKey(tcell.KeyRune, 'd', tcell.ModNone)
	lines = waitScreen(t, screen, "d again: inbound only", "edges 2/3", "filter: dir:in")
	assert.Contains(t, lines[3], "nginx[10]", "SOCK↓: nginx's 3 sockets first")
	screen.InjectKey(tcell.KeyRune, 'r', tcell.ModNone)
	lines = waitScreen(t, screen, "r reverses", "SOCK↑")
	assert.Contains(t, lines[3], "?", "SOCK↑: the unowned socket first")

	screen.InjectKey(tcell.KeyRune, 'q', tcell.ModNone)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("q did not end the view")
	}
}

// TestScreenEndsWithContext: a signal (the context) ends the view as q
// does, and the poller with it.
func TestScreenEndsWithContext(t *testing.T) {
	screen := tcell.NewSimulationScreen("UTF-8")
	view, err := NewView("", "sockets", false)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	u := newScreenUI(screen, view, 10*time.Millisecond)
	go func() { done <- u.run(ctx, &fakeSource{fixture()}) }()
	waitScreen(t, screen, "first poll", "curl[20]")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the view outlived its context")
	}
}

// growingSource has nothing on its first poll and ten listeners after.
type growingSource struct{ polls int }

func (g *growingSource) Records(context.Context) ([]model.Record, error) {
	g.polls++
	if g.polls == 1 {
		return nil, nil
	}
	var rs []model.Record
	for i := range 10 {
		rs = append(rs, model.Record{Kind: model.Listener, Direction: model.Listening,
			Socket:  model.Socket{LocalIP: lo1, LocalPort: uint16(9000 + i), State: model.StateListen, Inode: uint64(i + 1)},
			Process: &model.Process{PID: int32(100 + i), Name: fmt.Sprintf("svc%d", i)}})
	}
	return rs, nil
}
func (g *growingSource) Name() string { return "fake" }
func (g *growingSource) Close() error { return nil }

// TestScreenListsFromTop: a pane that was empty shows its first rows once
// they come, not its last (tview follows the end of a short table).
func TestScreenListsFromTop(t *testing.T) {
	screen := tcell.NewSimulationScreen("UTF-8")
	view, err := NewView("", "process", false)
	require.NoError(t, err)
	u := newScreenUI(screen, view, 20*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.run(ctx, &growingSource{}) }()
	defer func() { cancel(); <-done }()
	lines := waitScreen(t, screen, "ten listeners", "listeners 10/10")
	all := strings.Join(lines, "\n")
	assert.Contains(t, all, "svc0[100]", "the first listener is on screen")
	assert.NotContains(t, all, "svc9[109]", "the pane is too short for the last")
}
