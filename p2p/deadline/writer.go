package deadline

import (
	"io"
	"time"
)

// Conn is what a Writer writes to: a net.Conn or a libp2p stream.
type Conn interface {
	io.Writer
	SetWriteDeadline(t time.Time) error
}

// Writer writes to W with a write deadline between 15/16 of Timeout and
// Timeout ahead of each write (see the package comment). Timeout must be
// positive. A Writer is not safe for concurrent use.
type Writer struct {
	W       Conn
	Timeout time.Duration

	deadline time.Time // the one set last; zero before the first write
}

// Write moves the deadline when it has come within Timeout/16, then writes
// p to W. If setting the deadline fails, Write returns that error and
// writes nothing.
func (w *Writer) Write(p []byte) (int, error) {
	if now := time.Now(); w.deadline.Sub(now) < w.Timeout-w.Timeout/16 {
		w.deadline = now.Add(w.Timeout)
		if err := w.W.SetWriteDeadline(w.deadline); err != nil {
			return 0, err
		}
	}
	return w.W.Write(p)
}
