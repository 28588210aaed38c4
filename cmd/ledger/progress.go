package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// ProgressEvery is how often a long command prints a plain progress line
// when its standard error is not a terminal (a log, CI, a pipe).
var ProgressEvery = 5 * time.Second

// rateAfter is how long a meter measures before it shows a rate: a rate
// over the first few milliseconds (one batch done at once) means nothing.
const rateAfter = time.Second

// meter shows a long command's progress on standard error: on a terminal a
// bar (a counter when the total is unknown) with the rate and the time
// left; elsewhere a plain line every ProgressEvery. Rates are measured from
// the start and shown after the first second, so the first tick never
// claims millions of events a second.
type meter struct {
	mu       sync.Mutex
	w        io.Writer
	what     string
	unit     string
	total    int64
	done     int64
	start    time.Time
	lastLine time.Time
	bar      *progressbar.ProgressBar // nil off a terminal
}

// newMeter starts a meter of what, counted in unit; total <= 0 is unknown.
func newMeter(w io.Writer, what, unit string, total int64) *meter {
	m := &meter{w: w, what: what, unit: unit, total: total, start: time.Now()}
	m.lastLine = m.start
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		max := total
		if max <= 0 {
			max = -1
		}
		m.bar = progressbar.NewOptions64(max, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(), progressbar.OptionFullWidth())
	}
	return m
}

// Describe changes what the meter says it is doing (a phase).
func (m *meter) Describe(what string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.what = what
	m.update()
}

// SetTotal sets the total once it is known.
func (m *meter) SetTotal(total int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if total == m.total {
		return
	}
	m.total = total
	if m.bar != nil && total > 0 {
		m.bar.ChangeMax64(total)
	}
	m.update()
}

// Add counts n more done.
func (m *meter) Add(n int) { m.mu.Lock(); defer m.mu.Unlock(); m.done += int64(n); m.update() }

// Set sets how many are done.
func (m *meter) Set(done int64) { m.mu.Lock(); defer m.mu.Unlock(); m.done = done; m.update() }

// Finish clears the bar; the command prints its own summary.
func (m *meter) Finish() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bar != nil {
		_ = m.bar.Finish()
	}
}

// status is the rate and the time left, once they mean something.
func (m *meter) status(now time.Time) string {
	elapsed := now.Sub(m.start)
	if elapsed < rateAfter || m.done == 0 {
		return ""
	}
	rate := float64(m.done) / elapsed.Seconds()
	s := fmt.Sprintf("%.0f %s/s", rate, m.unit)
	if m.total > 0 && m.done < m.total {
		left := time.Duration(float64(m.total-m.done) / rate * float64(time.Second))
		s += ", about " + left.Round(time.Second).String() + " left"
	}
	return s
}

func (m *meter) update() {
	now := time.Now()
	status := m.status(now)
	if m.bar != nil {
		desc := m.what
		if status != "" {
			desc += " (" + status + ")"
		}
		m.bar.Describe(desc)
		_ = m.bar.Set64(m.done)
		return
	}
	if now.Sub(m.lastLine) < ProgressEvery {
		return
	}
	m.lastLine = now
	line := fmt.Sprintf("%s: %d", m.what, m.done)
	if m.total > 0 {
		line += fmt.Sprintf(" of %d", m.total)
	}
	line += " " + m.unit
	if status != "" {
		line += " (" + status + ")"
	}
	fmt.Fprintln(m.w, line)
}
