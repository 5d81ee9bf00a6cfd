package textproto

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dboutique/dboutique/node/store"
)

// Client defaults.
const (
	DefaultClientTimeout      = 30 * time.Second
	DefaultClientMaxLineBytes = 1 << 20
)

// ClientOption changes how Dial and NewClient set up a Client.
type ClientOption func(*clientConfig)

type clientConfig struct {
	password string
	timeout  time.Duration
	maxLine  int
}

// WithPassword makes the client send AUTH with password when it connects.
func WithPassword(password string) ClientOption {
	return func(c *clientConfig) { c.password = password }
}

// WithTimeout bounds each call whose context has no deadline (default
// DefaultClientTimeout).
func WithTimeout(d time.Duration) ClientOption {
	return func(c *clientConfig) { c.timeout = d }
}

// WithMaxLineBytes caps each reply line the client accepts (default
// DefaultClientMaxLineBytes).
func WithMaxLineBytes(n int) ClientOption {
	return func(c *clientConfig) { c.maxLine = n }
}

// Client is a connection to a D-Boutique node speaking the text protocol.
// It is safe for concurrent use; calls are sent one at a time.
//
// A call that fails with a network error, a timeout or a cancelled context
// leaves the connection in an unknown state: the client closes it, and later
// calls return ErrClientClosed.
type Client struct {
	cfg clientConfig

	mu     sync.Mutex // guards everything below, and serializes calls
	nc     net.Conn
	r      lineReader
	w      *bufio.Writer
	broken error // set when the connection became unusable
	buf    []byte
}

// Dial connects to the node at addr ("host:port").
func Dial(ctx context.Context, addr string, opts ...ClientOption) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("textproto: dial %s: %w", addr, err)
	}
	return NewClient(ctx, nc, opts...)
}

// NewClient makes a Client on an open connection, which it then owns. With
// WithPassword it authenticates before returning.
func NewClient(ctx context.Context, nc net.Conn, opts ...ClientOption) (*Client, error) {
	cfg := clientConfig{timeout: DefaultClientTimeout, maxLine: DefaultClientMaxLineBytes}
	for _, o := range opts {
		o(&cfg)
	}
	c := &Client{
		cfg: cfg,
		nc:  nc,
		r:   lineReader{r: bufio.NewReaderSize(nc, bufSize), max: cfg.maxLine},
		w:   bufio.NewWriterSize(nc, bufSize),
	}
	if cfg.password != "" {
		if err := c.Auth(ctx, cfg.password); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Close closes the connection. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		c.broken = ErrClientClosed
		return c.nc.Close()
	}
	return nil
}

// Create creates a bucket; an existing bucket keeps its contents.
func (c *Client) Create(ctx context.Context, bucket string) error {
	_, err := c.call(ctx, 0, "CREATE", bucket)
	return err
}

// Put sets key to value in bucket. Every argument must be one word.
func (c *Client) Put(ctx context.Context, bucket, key, value string) error {
	_, err := c.call(ctx, 0, "PUT", bucket, key, value)
	return err
}

// Get returns the value of key in bucket: store.ErrBucketNotFound if the
// bucket does not exist, store.ErrKeyNotFound if the key does not (the
// protocol answers a missing key with an empty value).
func (c *Client) Get(ctx context.Context, bucket, key string) (string, error) {
	lines, err := c.call(ctx, 1, "GET", bucket, key)
	if err != nil {
		return "", err
	}
	if lines[0] == "" {
		return "", store.ErrKeyNotFound
	}
	return lines[0], nil
}

// Delete removes key from bucket; removing a missing key is not an error.
func (c *Client) Delete(ctx context.Context, bucket, key string) error {
	_, err := c.call(ctx, 0, "DELETE", bucket, key)
	return err
}

// Drop removes bucket and all its keys.
func (c *Client) Drop(ctx context.Context, bucket string) error {
	_, err := c.call(ctx, 0, "DROP", bucket)
	return err
}

// Buckets lists the buckets.
func (c *Client) Buckets(ctx context.Context) ([]string, error) {
	return c.list(ctx, "BUCKETS")
}

// Keys lists the keys of bucket.
func (c *Client) Keys(ctx context.Context, bucket string) ([]string, error) {
	return c.list(ctx, "KEYS", bucket)
}

// Scan lists a page of the bucket names from cursor (0 starts), at most
// about count of them (0: the server's default, 10) that match the glob
// pattern match ("": all), and returns the cursor that continues the
// listing, 0 at its end. Every bucket that exists for the whole listing
// is returned at least once; see SCAN in docs/protocol.md.
func (c *Client) Scan(ctx context.Context, cursor uint64, match string, count int) (next uint64, names []string, err error) {
	words := []string{"SCAN", strconv.FormatUint(cursor, 10)}
	if match != "" {
		words = append(words, "MATCH", match)
	}
	if count > 0 {
		words = append(words, "COUNT", strconv.Itoa(count))
	}
	lines, err := c.list(ctx, words...)
	if err != nil {
		return 0, nil, err
	}
	if len(lines) == 0 {
		return 0, nil, c.fail(fmt.Errorf("%w: SCAN answered no cursor", ErrProtocol))
	}
	next, err = strconv.ParseUint(lines[0], 10, 64)
	if err != nil {
		return 0, nil, c.fail(fmt.Errorf("%w: SCAN answered the cursor %q", ErrProtocol, lines[0]))
	}
	return next, lines[1:], nil
}

// Nodes lists the cluster's members as the node sees them, one line each:
// name, peer ID, addresses (comma-separated) and state.
func (c *Client) Nodes(ctx context.Context) ([]string, error) {
	return c.lines(ctx, "NODES")
}

// Owner lists the nodes that hold bucket, first owner first, one line
// each: name and peer ID.
func (c *Client) Owner(ctx context.Context, bucket string) ([]string, error) {
	return c.lines(ctx, "OWNER", bucket)
}

// lines sends a request whose reply is lines that hold spaces, ended by OK.
func (c *Client) lines(ctx context.Context, words ...string) ([]string, error) {
	return c.exchange(ctx, words, false, func(line string, before []string) (bool, error) {
		if line == replyOK {
			return true, nil
		}
		if len(before) == 0 {
			return false, errorForReply(line)
		}
		return false, nil
	})
}

// Ping checks that the node answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.exchange(ctx, []string{"PING"}, false, func(line string, _ []string) (bool, error) {
		if err := errorForReply(line); err != nil {
			return false, err
		}
		if line != "PONG" {
			return false, c.fail(fmt.Errorf("%w: PING answered %q", ErrProtocol, line))
		}
		return true, nil
	})
	return err
}

// Auth authenticates the connection.
func (c *Client) Auth(ctx context.Context, password string) error {
	_, err := c.call(ctx, 0, "AUTH", password)
	return err
}

// call sends a request whose reply is nValues value lines then "OK". An
// error reply comes back as the error it stands for.
func (c *Client) call(ctx context.Context, nValues int, words ...string) ([]string, error) {
	return c.exchange(ctx, words, false, func(line string, before []string) (bool, error) {
		// Values are single words, so no value line can look like an
		// error reply, which always has a space (or is "OK").
		if len(before) == 0 {
			if err := errorForReply(line); err != nil {
				return false, err
			}
		}
		if len(before) < nValues {
			return false, nil
		}
		if line != replyOK {
			return false, c.fail(fmt.Errorf("%w: %s answered %q where OK was due", ErrProtocol, words[0], line))
		}
		return true, nil
	})
}

// list sends a request whose reply is any number of names then "OK".
//
// A name may itself be "OK", so the end of the listing cannot be told from
// its lines alone. list therefore sends an empty line after the request,
// which every server answers with "COMMAND NOT IMPLEMENTED": a line with a
// space, which no name has. The listing ends at the "OK" just before it.
func (c *Client) list(ctx context.Context, words ...string) ([]string, error) {
	lines, err := c.exchange(ctx, words, true, func(line string, before []string) (bool, error) {
		if !strings.Contains(line, " ") {
			return false, nil
		}
		if len(before) == 0 { // the request's own error; skip the marker's reply
			err := errorForReply(line)
			if err == nil {
				err = c.fail(fmt.Errorf("%w: %s answered %q", ErrProtocol, words[0], line))
			} else if _, rerr := c.readLine(); rerr != nil {
				return false, rerr
			}
			return false, err
		}
		if line != replyNotImplemented || before[len(before)-1] != replyOK {
			return false, c.fail(fmt.Errorf("%w: %s answered %q after %q", ErrProtocol, words[0], line, before))
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return lines[:len(lines)-1], nil
}

// exchange sends one request (followed by an empty line when marker is
// set) and reads its reply with readReply and end, holding the client for
// the whole exchange. The call's deadline comes from ctx, or from the
// client's timeout; cancelling ctx interrupts it.
func (c *Client) exchange(ctx context.Context, words []string, marker bool, end func(line string, before []string) (bool, error)) ([]string, error) {
	for _, w := range words {
		if w == "" || strings.ContainsAny(w, " \t\r\n") {
			return nil, fmt.Errorf("%w: %q is not one word", ErrInvalidArgument, w)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil, c.broken
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d, ok := ctx.Deadline()
	if !ok && c.cfg.timeout > 0 {
		d = time.Now().Add(c.cfg.timeout)
	}
	if err := c.nc.SetDeadline(d); err != nil {
		return nil, c.fail(err)
	}
	stop := context.AfterFunc(ctx, func() {
		_ = c.nc.SetDeadline(time.Unix(1, 0)) // wake the blocked read or write
	})
	defer stop()
	if err := c.send(words, marker); err != nil {
		return nil, err
	}
	lines, err := c.readReply(end)
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return lines, err
}

// readReply reads the lines of a reply, giving each to end with the lines
// before it, until end reports the reply complete or fails. It returns
// the lines before the last.
func (c *Client) readReply(end func(line string, before []string) (bool, error)) ([]string, error) {
	var lines []string
	for {
		line, err := c.readLine()
		if err != nil {
			return nil, err
		}
		done, err := end(line, lines)
		if err != nil {
			return nil, err
		}
		if done {
			return lines, nil
		}
		lines = append(lines, line)
	}
}

func (c *Client) send(words []string, marker bool) error {
	c.buf = c.buf[:0]
	for i, w := range words {
		if i > 0 {
			c.buf = append(c.buf, ' ')
		}
		c.buf = append(c.buf, w...)
	}
	c.buf = append(c.buf, '\r', '\n')
	if marker {
		c.buf = append(c.buf, '\r', '\n')
	}
	if _, err := c.w.Write(c.buf); err != nil {
		return c.fail(err)
	}
	if err := c.w.Flush(); err != nil {
		return c.fail(err)
	}
	return nil
}

func (c *Client) readLine() (string, error) {
	line, err := c.r.next()
	switch {
	case err == nil:
		return string(line), nil
	case errors.Is(err, errLineTooLong):
		return "", c.fail(fmt.Errorf("%w: reply line over %d bytes", ErrProtocol, c.cfg.maxLine))
	case err == io.EOF:
		return "", c.fail(io.ErrUnexpectedEOF)
	default:
		return "", c.fail(err)
	}
}

// fail marks the client broken by err, closes the connection and returns err.
func (c *Client) fail(err error) error {
	if c.broken == nil {
		c.broken = fmt.Errorf("%w: %w", ErrClientClosed, err)
		c.nc.Close()
	}
	return err
}
