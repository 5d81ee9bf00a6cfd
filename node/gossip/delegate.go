package gossip

import (
	"bytes"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// delegate gives memberlist this node's metadata, and carries the node's
// own state in push/pulls (Config.State, MergeState); the node sends no
// user messages through memberlist.
type delegate struct{ e *Engine }

func (d delegate) NodeMeta(limit int) []byte {
	m := d.e.cfg.Meta()
	if len(m) > limit {
		d.e.cfg.Log.Error("member metadata over memberlist's limit; sending none", zap.Int("bytes", len(m)), zap.Int("limit", limit))
		return nil
	}
	return m
}
func (delegate) NotifyMsg([]byte)                {}
func (delegate) GetBroadcasts(int, int) [][]byte { return nil }

func (d delegate) LocalState(bool) []byte {
	if d.e.cfg.State == nil {
		return nil
	}
	s := d.e.cfg.State()
	if len(s) > MaxState {
		d.e.cfg.Log.Error("node state over its limit; sending none", zap.Int("bytes", len(s)), zap.Int("limit", MaxState))
		return nil
	}
	return s
}

func (d delegate) MergeRemoteState(s []byte, _ bool) {
	if d.e.cfg.MergeState == nil || len(s) == 0 {
		return
	}
	if len(s) > MaxState {
		d.e.dropped.Add(1)
		return
	}
	d.e.cfg.MergeState(s)
}

// pingDelegate hears of every probe answered.
type pingDelegate struct{ e *Engine }

func (pingDelegate) AckPayload() []byte { return nil }
func (p pingDelegate) NotifyPingComplete(n *memberlist.Node, _ time.Duration, _ []byte) {
	p.e.suspect(n.Name, false)
}

// aliveDelegate asks Config.Admit about every member heard of.
type aliveDelegate struct {
	admit func(id string, meta []byte) error
}

func (a aliveDelegate) NotifyAlive(n *memberlist.Node) error { return a.admit(n.Name, n.Meta) }

// eventQueue takes memberlist's events under memberlist's lock, without
// blocking, and hands them to Events from one goroutine, in order.
type eventQueue struct {
	events Events
	seen   func(id string, gone bool) // called, without waiting, on every event

	mu      sync.Mutex // guards pending, started, stopped
	pending []event
	started bool
	stopped bool
	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}
}

type event struct {
	id   string
	meta []byte
	gone bool
}

func newEventQueue(ev Events, seen func(id string, gone bool)) *eventQueue {
	return &eventQueue{events: ev, seen: seen, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
}

func (q *eventQueue) start() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.started && !q.stopped {
		q.started = true
		go q.run()
	}
}

func (q *eventQueue) stop() {
	q.mu.Lock()
	already, started := q.stopped, q.started
	q.stopped = true
	q.mu.Unlock()
	if already || !started {
		return
	}
	close(q.quit)
	<-q.done
}

func (q *eventQueue) push(ev event) {
	q.seen(ev.id, ev.gone)
	q.mu.Lock()
	if !q.stopped {
		q.pending = append(q.pending, ev)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *eventQueue) run() {
	defer close(q.done)
	for {
		select {
		case <-q.quit:
			return
		case <-q.wake:
		}
		q.mu.Lock()
		evs := q.pending
		q.pending = nil
		q.mu.Unlock()
		for _, ev := range evs {
			select {
			case <-q.quit:
				return
			default:
			}
			if ev.gone {
				q.events.Gone(ev.id)
			} else {
				q.events.Alive(ev.id, ev.meta)
			}
		}
	}
}

// memberlist.EventDelegate.
func (q *eventQueue) NotifyJoin(n *memberlist.Node) {
	q.push(event{id: n.Name, meta: bytes.Clone(n.Meta)})
}
func (q *eventQueue) NotifyUpdate(n *memberlist.Node) {
	q.push(event{id: n.Name, meta: bytes.Clone(n.Meta)})
}
func (q *eventQueue) NotifyLeave(n *memberlist.Node) {
	q.push(event{id: n.Name, gone: true})
}

// logWriter turns memberlist's log lines into zap's, and counts the
// suspicions and refutations they tell of (memberlist reports those only
// in its log and in a process-wide metrics sink, which a process running
// many nodes cannot share).
type logWriter struct{ e *Engine }

func (w *logWriter) Write(b []byte) (int, error) {
	line := strings.TrimSpace(string(b))
	level, msg := "", line
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			level, msg = line[1:i], strings.TrimSpace(line[i+1:])
		}
	}
	msg = strings.TrimPrefix(msg, "memberlist: ")
	switch {
	case strings.HasPrefix(msg, "Suspect ") && strings.Contains(msg, " has failed"):
		w.e.suspicions.Add(1)
		id, _, _ := strings.Cut(strings.TrimPrefix(msg, "Suspect "), " has failed")
		w.e.suspect(id, true)
	case strings.HasPrefix(msg, "Refuting "):
		w.e.refutations.Add(1)
	}
	log := w.e.cfg.Log
	switch level {
	case "ERR", "ERROR":
		log.Warn(msg, zap.String("from", "memberlist"))
	case "WARN":
		log.Info(msg, zap.String("from", "memberlist"))
	default:
		log.Debug(msg, zap.String("from", "memberlist"))
	}
	return len(b), nil
}
