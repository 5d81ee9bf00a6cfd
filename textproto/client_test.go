package textproto

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/ring"
	"github.com/dboutique/dboutique/textproto/prototest"
)

func TestClientTranscript(t *testing.T) {
	s := startServer(t, Config{})
	c := dialClient(t, s.addr)
	ctx := ctxT(t)
	if _, err := c.Get(ctx, "shopping", "eggs"); !errors.Is(err, store.ErrBucketNotFound) {
		t.Fatalf("Get on a missing bucket: %v, want ErrBucketNotFound", err)
	}
	must(t, c.Create(ctx, "shopping"))
	must(t, c.Put(ctx, "shopping", "eggs", "3"))
	if v, err := c.Get(ctx, "shopping", "eggs"); err != nil || v != "3" {
		t.Fatalf("Get = %q, %v; want 3", v, err)
	}
	must(t, c.Delete(ctx, "shopping", "eggs"))
	if _, err := c.Get(ctx, "shopping", "eggs"); !errors.Is(err, store.ErrKeyNotFound) {
		t.Fatalf("Get of a deleted key: %v, want ErrKeyNotFound", err)
	}
}

func TestClientCommands(t *testing.T) {
	s := startServer(t, Config{})
	c := dialClient(t, s.addr)
	ctx := ctxT(t)
	must(t, c.Ping(ctx))
	must(t, c.Create(ctx, "b"))
	must(t, c.Create(ctx, "a"))
	for _, k := range []string{"z", "OK", "x"} {
		must(t, c.Put(ctx, "b", k, "OK")) // a value that reads like a reply
	}
	if v, err := c.Get(ctx, "b", "z"); err != nil || v != "OK" {
		t.Fatalf("Get = %q, %v; want OK", v, err)
	}
	if names, err := c.Buckets(ctx); err != nil || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("Buckets = %q, %v", names, err)
	}
	// Names that read like replies are listed whole.
	if keys, err := c.Keys(ctx, "b"); err != nil || !slices.Equal(keys, []string{"OK", "x", "z"}) {
		t.Fatalf("Keys = %q, %v", keys, err)
	}
	must(t, c.Create(ctx, "OK"))
	if names, err := c.Buckets(ctx); err != nil || !slices.Equal(names, []string{"OK", "a", "b"}) {
		t.Fatalf("Buckets = %q, %v", names, err)
	}
	if v, err := c.Get(ctx, "b", "x"); err != nil || v != "OK" { // still in step
		t.Fatalf("Get = %q, %v; want OK", v, err)
	}
	must(t, c.Drop(ctx, "b"))
	if err := c.Drop(ctx, "b"); !errors.Is(err, store.ErrBucketNotFound) {
		t.Fatalf("second Drop: %v", err)
	}
	if _, err := c.Keys(ctx, "b"); !errors.Is(err, store.ErrBucketNotFound) {
		t.Fatalf("Keys of a dropped bucket: %v", err)
	}
}

func TestClientRejectsArgumentsThatAreNotOneWord(t *testing.T) {
	s := startServer(t, Config{})
	c := dialClient(t, s.addr)
	ctx := ctxT(t)
	for _, bad := range []string{"", "two words", "tab\tbed", "line\nbreak", "cr\r"} {
		if err := c.Create(ctx, bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Create(%q): %v, want ErrInvalidArgument", bad, err)
		}
		if err := c.Put(ctx, "b", "k", bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Put value %q: %v, want ErrInvalidArgument", bad, err)
		}
	}
	must(t, c.Ping(ctx)) // nothing was sent; the client is still usable
}

func TestClientCancelAndTimeoutBreakTheClient(t *testing.T) {
	g := newGateExecutor()
	s := startServer(t, Config{Executor: g})

	c := dialClient(t, s.addr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Create(ctx, "slow") }()
	<-g.entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want context.Canceled", err)
	}
	if err := c.Ping(ctxT(t)); !errors.Is(err, ErrClientClosed) {
		t.Fatalf("call after a cancelled one: %v, want ErrClientClosed", err)
	}

	c = dialClient(t, s.addr, WithTimeout(20*time.Millisecond))
	if err := c.Create(context.Background(), "slow"); err == nil {
		t.Fatal("call past its timeout succeeded")
	}
	<-g.entered
	if err := c.Ping(ctxT(t)); !errors.Is(err, ErrClientClosed) {
		t.Fatalf("call after a timed-out one: %v, want ErrClientClosed", err)
	}
	must(t, c.Close())
	must(t, c.Close())
}

func TestClientSeesRefusalAndIdleTimeout(t *testing.T) {
	s := startServer(t, Config{MaxConns: 1, IdleTimeout: 50 * time.Millisecond})
	first := prototest.Dial(t, s.addr)
	first.Send("PING\r\n")
	first.Expect("PONG\r\n")
	c := dialClient(t, s.addr)
	if err := c.Ping(ctxT(t)); !errors.Is(err, ErrTooManyConns) {
		t.Fatalf("Ping over the connection limit: %v, want ErrTooManyConns", err)
	}
	first.Expect("ERROR idle timeout\r\n")
	first.ExpectClosed()
	waitFor(t, "the idle connection to go", func() bool { return s.NumConns() == 0 })

	c = dialClient(t, s.addr)
	must(t, c.Ping(ctxT(t)))
	waitFor(t, "the idle timeout", func() bool { return s.NumConns() == 0 })
	if err := c.Ping(ctxT(t)); !errors.Is(err, ErrIdleTimeout) {
		t.Fatalf("Ping after the idle timeout: %v, want ErrIdleTimeout", err)
	}
}

func TestErrorTableRoundTrips(t *testing.T) {
	for _, e := range errorReplies() {
		if got := replyForError(e.err); got != e.reply {
			t.Errorf("replyForError(%v) = %q, want %q", e.err, got, e.reply)
		}
		if got := errorForReply(e.reply); got != e.err {
			t.Errorf("errorForReply(%q) = %v, want %v", e.reply, got, e.err)
		}
	}
	if got := replyForError(errors.New("two\r\nlines")); got != "ERROR two  lines" {
		t.Errorf("an unknown error's reply = %q", got)
	}
	var se *ServerError
	if err := errorForReply("ERROR disk on fire"); !errors.As(err, &se) || se.Msg != "disk on fire" {
		t.Errorf("errorForReply of an unknown error: %v", err)
	}
	if err := errorForReply("ERROR no node owns bucket x"); !errors.Is(err, ring.ErrNoOwner) {
		t.Errorf("errorForReply of no owner: %v", err)
	}
	unreachable := &node.UnreachableError{Node: "h-n", Err: errors.New("dial refused")}
	if got := replyForError(fmt.Errorf("forwarding: %w", unreachable)); got != "ERROR node h-n unreachable" {
		t.Errorf("replyForError(unreachable) = %q", got)
	}
	var ue *node.UnreachableError
	if err := errorForReply("ERROR node h-n unreachable"); !errors.As(err, &ue) || ue.Node != "h-n" {
		t.Errorf("errorForReply of unreachable: %v", err)
	}
	for _, notErr := range []string{"OK", "", "3", "ERROR", "PONG"} {
		if err := errorForReply(notErr); err != nil {
			t.Errorf("errorForReply(%q) = %v, want nil", notErr, err)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
