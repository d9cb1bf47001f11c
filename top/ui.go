package top

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"
)

// keysHelp is the bottom line; it fits 80 columns.
const keysHelp = "[::b]q[::-] quit  [::b]/[::-] filter  [::b]d[::-] direction  [::b]s[::-]/[::b]S[::-] sort  " +
	"[::b]r[::-] reverse  [::b]Tab[::-] pane  [::b]Esc[::-] clear"

// directions is the order the d key steps through.
var directions = []string{"", "out", "in", "listen"}

// screenUI is the full-screen view: a status line, the edges pane, the
// listeners pane and the keys line, which the filter prompt replaces while
// it is open. Its fields are touched only on tview's event loop.
type screenUI struct {
	app       *tview.Application
	status    *tview.TextView
	edges     *tview.Table
	listeners *tview.Table
	bottom    *tview.Pages
	input     *tview.InputField

	interval  time.Duration
	view      View
	direction int // index in directions of the d key's last choice
	snap      Snapshot
	polled    bool
	pollErr   error
	filterErr error
}

// newScreenUI builds the view on screen, nil for the terminal (tests pass
// a simulation screen).
func newScreenUI(screen tcell.Screen, view View, interval time.Duration) *screenUI {
	// The terminal's own colours, light or dark, rather than tview's
	// black background.
	tview.Styles.PrimitiveBackgroundColor = tcell.ColorDefault
	tview.Styles.PrimaryTextColor = tcell.ColorDefault
	u := &screenUI{
		app:       tview.NewApplication(),
		status:    tview.NewTextView().SetDynamicColors(true).SetWrap(false),
		edges:     newPane(" edges "),
		listeners: newPane(" listeners "),
		bottom:    tview.NewPages(),
		input:     tview.NewInputField().SetLabel("filter: "),
		interval:  interval,
		view:      view,
	}
	u.input.SetText(view.Filter.String())
	u.input.SetChangedFunc(u.setFilter)
	u.input.SetDoneFunc(func(tcell.Key) { u.closeFilter() })
	keys := tview.NewTextView().SetDynamicColors(true).SetWrap(false).SetText(keysHelp)
	u.bottom.AddPage("keys", keys, true, true).AddPage("filter", u.input, true, false)

	layout := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(u.status, 1, 0, false).
		AddItem(u.edges, 0, 2, true).
		AddItem(u.listeners, 0, 1, false).
		AddItem(u.bottom, 1, 0, false)
	u.app.SetRoot(layout, true).SetInputCapture(u.key)
	if screen != nil {
		u.app.SetScreen(screen)
	}
	u.render()
	return u
}

func newPane(title string) *tview.Table {
	t := tview.NewTable().SetFixed(1, 0).SetSelectable(true, false).
		SetSelectedStyle(tcell.StyleDefault.Background(tcell.ColorNavy).Foreground(tcell.ColorWhite))
	t.SetBorder(true).SetTitle(title).SetTitleAlign(tview.AlignLeft)
	return t
}

// key handles the view's keys; it leaves every key to the filter prompt
// while that is open.
func (u *screenUI) key(ev *tcell.EventKey) *tcell.EventKey {
	if u.input.HasFocus() {
		return ev
	}
	switch ev.Key() {
	case tcell.KeyTab, tcell.KeyBacktab:
		if u.edges.HasFocus() {
			u.app.SetFocus(u.listeners)
		} else {
			u.app.SetFocus(u.edges)
		}
		return nil
	case tcell.KeyEscape:
		u.direction = 0
		u.input.SetText("") // runs setFilter
		return nil
	case tcell.KeyRune:
	default:
		return ev
	}
	switch ev.Rune() {
	case 'q', 'Q':
		u.app.Stop()
	case '/':
		u.bottom.SwitchToPage("filter")
		u.app.SetFocus(u.input)
	case 'd':
		u.direction = (u.direction + 1) % len(directions)
		u.input.SetText(withDirection(u.input.GetText(), directions[u.direction]))
	case 's':
		u.view = u.view.next(1)
		u.render()
	case 'S':
		u.view = u.view.next(-1)
		u.render()
	case 'r':
		u.view.desc = !u.view.desc
		u.render()
	default:
		return ev
	}
	return nil
}

// setFilter applies the prompt's text as it is typed; text that does not
// parse keeps the last filter that did and says why in the status line.
func (u *screenUI) setFilter(text string) {
	f, err := ParseFilter(text)
	u.filterErr = err
	if err == nil {
		u.view.Filter = f
	}
	u.render()
}

func (u *screenUI) closeFilter() {
	u.bottom.SwitchToPage("keys")
	u.app.SetFocus(u.edges)
}

// show takes a poll's result.
func (u *screenUI) show(snap Snapshot, err error) {
	u.pollErr = err
	if err == nil {
		u.snap, u.polled = snap, true
	}
	u.render()
}

func (u *screenUI) render() {
	edges, listeners := u.view.Rows(&u.snap)
	fill(u.edges, shown(edgeColumns, edges), edges, u.view.sortBy)
	fill(u.listeners, shown(listenerColumns, listeners), listeners, u.view.sortBy)
	title := fmt.Sprintf(" edges %d/%d ", len(edges), len(u.snap.Edges))
	if f := u.view.Filter.String(); f != "" {
		// Here rather than in the status line, which has no room left
		// on 80 columns.
		title += "· filter: " + tview.Escape(f) + " "
	}
	u.edges.SetTitle(title)
	u.listeners.SetTitle(fmt.Sprintf(" listeners %d/%d ", len(listeners), len(u.snap.Listeners)))

	var parts []string
	if u.polled {
		parts = append(parts, u.snap.Source, fmt.Sprintf("%d sockets", u.snap.Sockets),
			u.snap.Time.Format("15:04:05")+" every "+u.interval.String())
	} else {
		parts = append(parts, "first poll...")
	}
	parts = append(parts, "sort "+u.view.sortLabel())
	switch {
	case u.filterErr != nil:
		parts = append(parts, "[red]"+tview.Escape(u.filterErr.Error())+"[-]")
	case u.pollErr != nil:
		parts = append(parts, "[red]poll failed: "+tview.Escape(u.pollErr.Error())+"[-]")
	}
	u.status.SetText(strings.Join(parts, " · "))
}

// fill replaces a pane's rows, keeping the selected line where it was.
func fill(t *tview.Table, cols []*column, rows []Row, sortBy *column) {
	selected, _ := t.GetSelection()
	_, _, width, _ := t.GetInnerRect()
	limits := fitWidths(cols, rows, width)
	t.Clear()
	for i, c := range cols {
		title := c.title
		if c.name == sortBy.name {
			title = "[::u]" + title + "[::-]"
		}
		t.SetCell(0, i, headerCell(title, c))
	}
	for r := range rows {
		for i, c := range cols {
			text := c.cell(&rows[r])
			if limits[i] > 0 {
				text = c.fit(&rows[r], limits[i])
			}
			cell := tview.NewTableCell(tview.Escape(text))
			if c.number {
				cell.SetAlign(tview.AlignRight)
			}
			t.SetCell(r+1, i, cell)
		}
	}
	// From the top, not where tview's tracking of a short table's end
	// would leave it, then down to the selected line.
	t.ScrollToBeginning()
	t.Select(max(1, min(selected, len(rows))), 0)
}

// fitWidths returns the width each column may take for the rows to fit
// width (0: as wide as it needs), narrowing the columns that can be
// narrowed, in order, no further than their minWidth. Addresses and
// numbers are never cut. A width under 40 is tview's before the first
// draw: nothing is narrowed then.
func fitWidths(cols []*column, rows []Row, width int) []int {
	limits := make([]int, len(cols))
	if width < 40 {
		return limits
	}
	natural := make([]int, len(cols))
	over := len(cols) - 1 - width // one space between columns
	for i, c := range cols {
		natural[i] = utf8.RuneCountInString(c.title)
		for r := range rows {
			natural[i] = max(natural[i], utf8.RuneCountInString(c.cell(&rows[r])))
		}
		over += natural[i]
	}
	for i, c := range cols {
		if over <= 0 {
			break
		}
		if cut := min(over, natural[i]-c.minWidth); c.minWidth > 0 && cut > 0 {
			limits[i] = natural[i] - cut
			over -= cut
		}
	}
	return limits
}

func headerCell(title string, c *column) *tview.TableCell {
	cell := tview.NewTableCell(title).SetSelectable(false).SetTextColor(tcell.ColorYellow)
	if c.number {
		cell.SetAlign(tview.AlignRight)
	}
	return cell
}

// run shows src until the user quits or ctx ends.
func (u *screenUI) run(ctx context.Context, src Source) error {
	interval := u.interval
	// A signal (ctx) stops the view; the view's end stops the poller.
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			u.app.Stop()
		case <-stopped:
		}
	}()
	pollCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The poller never waits on the event loop, so it ends as soon as
	// pollCtx does and the caller may close src once run returns.
	// The pump hands its results to the event loop.
	results := make(chan result, 1)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		poll(pollCtx, src, interval, func(r result) {
			select {
			case <-results: // the view wants the newest only
			default:
			}
			results <- r
		})
	}()
	go func() {
		for {
			select {
			case <-pollCtx.Done():
				return
			case r := <-results:
				// Blocks for good only if the user quit meanwhile: the
				// process is exiting then.
				u.app.QueueUpdateDraw(func() { u.show(r.snap, r.err) })
			}
		}
	}()
	err := u.app.Run()
	close(stopped)
	cancel()
	<-polled
	return err
}
