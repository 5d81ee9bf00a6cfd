package bench

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The core of "dboutique bench": runLoad takes a config, drives the
// server with one goroutine per connection and returns a result.

// Values of config's string fields.
const (
	protoRESP = "resp"
	protoText = "text"

	typeHash   = "hash"
	typeString = "string"

	workloadGet   = "get"
	workloadPut   = "put"
	workloadMixed = "mixed"
)

// keyPrefix starts every key: "key:<n>".
const keyPrefix = "key:"

// Limits of config.
const (
	maxClients   = 5000 // each holds a 140 KB latency histogram and a read buffer
	maxPipeline  = 100000
	maxValueSize = 32 << 20 // well under the reply cap
	maxBuckets   = 1000000

	// readBuffer is each connection's read buffer; longer replies are
	// read through it.
	readBuffer = 16 << 10

	// Latency histogram range, in microseconds, and precision.
	histMin     = 1
	histMax     = 60 * 1000 * 1000
	histSigFigs = 3
)

// errConfig marks a config that validate refuses.
var errConfig = errors.New("bench: invalid configuration")

// config is what runLoad does. Start from defaultConfig.
type config struct {
	addr       string
	proto      string        // protoRESP or protoText
	clients    int           // connections, one goroutine each
	requests   int64         // total requests, when duration is 0
	duration   time.Duration // > 0: run this long instead
	pipeline   int           // requests per write
	keyspace   int64         // keys are key:0 .. key:keyspace-1
	sequential bool          // key n = a shared counter mod keyspace, not random
	valueSize  int           // bytes of 'x' per value
	workload   string        // workloadGet, workloadPut or workloadMixed
	getRatio   float64       // share of gets in workloadMixed
	typ        string        // typeHash or typeString
	buckets    int           // buckets to spread over; hash type only
	bucket     string        // bucket name, or prefix of "name:<i>" when buckets > 1
	password   string        // sent with AUTH first when not empty

	// progress is how often a progress line goes to progressOut; 0: never.
	progress    time.Duration
	progressOut io.Writer
	progressTTY bool // overwrite the line with \r instead of writing new lines

	dialTimeout time.Duration // connecting; 0: 10s
	readTimeout time.Duration // waiting for any reply or write; 0: 30s
	maxReply    int64         // bytes in one reply; 0: 64 MiB
}

func defaultConfig() config {
	return config{
		addr:      "127.0.0.1:4040",
		proto:     protoRESP,
		clients:   50,
		requests:  100000,
		pipeline:  1,
		keyspace:  100000,
		valueSize: 3,
		workload:  workloadMixed,
		getRatio:  0.9,
		typ:       typeHash,
		buckets:   1,
		bucket:    "bench",
		progress:  time.Second,
	}
}

// validate checks the configuration and fills in the zero timeouts and
// caps. Errors name the flag to change.
func (c *config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", errConfig, fmt.Sprintf(format, args...))
	}
	if _, _, err := net.SplitHostPort(c.addr); err != nil {
		return bad("--addr %q: want host:port", c.addr)
	}
	switch {
	case c.proto != protoRESP && c.proto != protoText:
		return bad("--proto %q: want resp or text", c.proto)
	case c.typ != typeHash && c.typ != typeString:
		return bad("--type %q: want hash or string", c.typ)
	case c.typ == typeString && c.proto == protoText:
		return bad("--type string needs --proto resp: the text protocol has no plain keys, only buckets")
	case c.workload != workloadGet && c.workload != workloadPut && c.workload != workloadMixed:
		return bad("--workload %q: want get, put or mixed", c.workload)
	case !(c.getRatio >= 0 && c.getRatio <= 1): // also refuses NaN
		return bad("--get-ratio %v: want a number from 0 to 1", c.getRatio)
	case c.clients < 1 || c.clients > maxClients:
		return bad("--clients %d: want 1 to %d", c.clients, maxClients)
	case c.duration < 0:
		return bad("--duration %v: negative", c.duration)
	case c.duration == 0 && c.requests < 1:
		return bad("--requests %d: want at least 1 (or a --duration)", c.requests)
	case c.pipeline < 1 || c.pipeline > maxPipeline:
		return bad("--pipeline %d: want 1 to %d", c.pipeline, maxPipeline)
	case c.keyspace < 1:
		return bad("--keyspace %d: want at least 1", c.keyspace)
	case c.valueSize < 1 || c.valueSize > maxValueSize:
		return bad("--value-size %d: want 1 to %d", c.valueSize, maxValueSize)
	case c.buckets < 1 || c.buckets > maxBuckets:
		return bad("--buckets %d: want 1 to %d", c.buckets, maxBuckets)
	case c.buckets > 1 && c.typ == typeString:
		return bad("--buckets %d: buckets need --type hash", c.buckets)
	case c.progress < 0:
		return bad("--progress %v: negative", c.progress)
	case c.dialTimeout < 0 || c.readTimeout < 0 || c.maxReply < 0:
		return bad("negative timeout or reply cap")
	}
	if c.typ == typeHash && !isWord(c.bucket) {
		return bad("--bucket %q: want one word, without spaces or line breaks", c.bucket)
	}
	if c.password != "" && c.proto == protoText && !isWord(c.password) {
		return bad("--password: the text protocol takes a password of one word")
	}
	if c.progress > 0 && c.progressOut == nil {
		c.progressOut = io.Discard
	}
	c.dialTimeout = cmp.Or(c.dialTimeout, 10*time.Second)
	c.readTimeout = cmp.Or(c.readTimeout, 30*time.Second)
	c.maxReply = cmp.Or(c.maxReply, 64<<20)
	return nil
}

// isWord reports whether s is a non-empty word of the text protocol.
func isWord(s string) bool {
	return s != "" && !strings.ContainsAny(s, " \t\r\n")
}

// bucketNames lists the buckets in use: the bucket itself, or
// "bucket:0" .. "bucket:N-1".
func (c *config) bucketNames() []string {
	if c.buckets == 1 {
		return []string{c.bucket}
	}
	names := make([]string, c.buckets)
	for i := range names {
		names[i] = c.bucket + ":" + strconv.Itoa(i)
	}
	return names
}

// result is what a run measured.
type result struct {
	requests int64 // replies received, errors included
	gets     int64
	puts     int64
	errors   int64         // error replies
	firstErr string        // the text of one error reply, if any
	elapsed  time.Duration // from the first write to the last reply
	// latency holds every request's latency in microseconds.
	latency *hdrhistogram.Histogram
}

// rps is the throughput in requests per second.
func (r *result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// percentileMs is the latency at percentile p (0..100) in milliseconds.
func (r *result) percentileMs(p float64) float64 {
	return float64(r.latency.ValueAtQuantile(p)) / 1000
}

// maxMs is the highest latency in milliseconds.
func (r *result) maxMs() float64 {
	return float64(r.latency.Max()) / 1000
}

// runState is the state the clients of one run share.
type runState struct {
	cfg   *config
	total int64 // requests to send; math.MaxInt64 with a duration

	issued   atomic.Int64 // requests claimed by clients so far
	stopping atomic.Bool  // no new batches: time is up or the caller cancelled
	aborted  atomic.Bool  // a client failed: everyone stops now

	failOnce sync.Once
	failErr  error // the first failure; written once under failOnce

	clients []*client
}

// client is one connection and the goroutine that drives it.
type client struct {
	id   int
	run  *runState
	conn net.Conn
	rr   replyReader
	rng  *rand.Rand
	resp *respEncoder // one of resp and text is set
	text *textEncoder

	buf  []byte   // the batch being written
	ops  []opKind // the kind of each request in buf
	hist *hdrhistogram.Histogram

	gets, puts int64
	deadline   time.Time // when the connection's deadline was last pushed

	// Read by the progress reporter while the client runs.
	done atomic.Int64
	errs atomic.Int64
}

// runLoad connects cfg.clients connections, authenticates them, creates
// the buckets if the protocol needs it, then sends requests until
// cfg.requests are answered, cfg.duration has passed or ctx is cancelled
// (in the last two cases each client finishes its batch in flight). A
// failure to connect, a broken connection or a reply it cannot parse stops
// the run and is returned. Error replies are counted, not returned.
func runLoad(ctx context.Context, cfg config) (*result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	run := &runState{cfg: &cfg, total: cfg.requests}
	if cfg.duration > 0 {
		run.total = math.MaxInt64
	}
	defer func() {
		for _, c := range run.clients {
			c.conn.Close()
		}
	}()
	if err := run.connect(ctx); err != nil {
		return nil, err
	}

	var wg sync.WaitGroup
	finished := make(chan struct{})
	ctlDone := make(chan struct{})
	start := time.Now()
	go func() { // stops the run on time or on cancel, and reports progress
		defer close(ctlDone)
		run.control(ctx, start, finished)
	}()
	for _, c := range run.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.loop(); err != nil {
				run.fail(fmt.Errorf("connection %d: %w", c.id, err))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(finished)
	<-ctlDone
	if run.failErr != nil {
		return nil, run.failErr
	}

	res := &result{elapsed: elapsed, latency: hdrhistogram.New(histMin, histMax, histSigFigs)}
	for _, c := range run.clients {
		res.requests += c.done.Load()
		res.errors += c.errs.Load()
		res.gets += c.gets
		res.puts += c.puts
		if res.firstErr == "" {
			res.firstErr = c.rr.lastErr
		}
		res.latency.Merge(c.hist)
	}
	return res, nil
}

// connect dials every connection, sends AUTH on each and, for the text
// protocol, creates the buckets. None of this is timed.
func (run *runState) connect(ctx context.Context) error {
	cfg := run.cfg
	d := net.Dialer{Timeout: cfg.dialTimeout}
	for i := range cfg.clients {
		conn, err := d.DialContext(ctx, "tcp", cfg.addr)
		if err != nil {
			return fmt.Errorf("cannot connect to %s: %w", cfg.addr, err)
		}
		c := &client{
			id:   i,
			run:  run,
			conn: conn,
			rr:   replyReader{r: bufio.NewReaderSize(conn, readBuffer), max: cfg.maxReply, keepErr: true},
			// Seeded from the client index: runs are repeatable.
			rng:  rand.New(rand.NewPCG(uint64(i), 0x64626f7574697175)),
			ops:  make([]opKind, cfg.pipeline),
			hist: hdrhistogram.New(histMin, histMax, histSigFigs),
		}
		if cfg.proto == protoRESP {
			c.resp = newRESPEncoder(cfg)
		} else {
			c.text = newTextEncoder(cfg)
		}
		run.clients = append(run.clients, c)
		if cfg.password != "" {
			if err := c.setup("AUTH", cfg.password); err != nil {
				return err
			}
		}
	}
	if cfg.proto == protoText && cfg.typ == typeHash {
		for _, b := range cfg.bucketNames() {
			if err := run.clients[0].setup("CREATE", b); err != nil {
				return err
			}
		}
	}
	return nil
}

// setup sends the command "verb arg" and fails unless it succeeds.
func (c *client) setup(verb, arg string) error {
	var req []byte
	if c.resp != nil {
		req = appendBulk(appendBulk([]byte("*2\r\n"), []byte(verb)), []byte(arg))
	} else {
		req = []byte(verb + " " + arg + "\r\n")
	}
	c.conn.SetDeadline(time.Now().Add(c.run.cfg.readTimeout))
	if _, err := c.conn.Write(req); err != nil {
		return fmt.Errorf("connection %d: %s: %w", c.id, verb, err)
	}
	c.rr.keepErr = true
	isErr, err := c.read(opPut)
	if err != nil {
		return fmt.Errorf("connection %d: %s: %w", c.id, verb, err)
	}
	if isErr {
		return fmt.Errorf("%s refused: %s", verb, c.rr.lastErr)
	}
	c.rr.lastErr, c.rr.keepErr = "", true
	return nil
}

// read reads the reply to one request of kind op.
func (c *client) read(op opKind) (isErr bool, err error) {
	if c.resp != nil {
		return c.rr.readResp()
	}
	return c.rr.readText(op)
}

// fail records the first failure and stops every client at once: their
// deadlines pass now, so reads blocked on a stuck server return.
func (run *runState) fail(err error) {
	run.failOnce.Do(func() {
		run.failErr = err
		run.aborted.Store(true)
		for _, c := range run.clients {
			c.conn.SetDeadline(time.Unix(1, 0))
		}
	})
}

// claim takes the next batch of up to pipeline requests and returns the
// index of its first request and its size; 0 when there is no more work.
func (run *runState) claim(pipeline int) (first int64, n int) {
	if run.stopping.Load() || run.aborted.Load() {
		return 0, 0
	}
	end := run.issued.Add(int64(pipeline))
	first = end - int64(pipeline)
	if first >= run.total {
		return 0, 0
	}
	return first, int(min(int64(pipeline), run.total-first))
}

// loop runs batches until there are no more.
func (c *client) loop() error {
	cfg := c.run.cfg
	timeout := cfg.readTimeout
	refresh := min(time.Second, timeout/4)
	for {
		first, n := c.run.claim(cfg.pipeline)
		if n == 0 {
			return nil
		}
		c.buf = c.buf[:0]
		for i := range n {
			op := opPut
			switch cfg.workload {
			case workloadGet:
				op = opGet
			case workloadMixed:
				if c.rng.Float64() < cfg.getRatio {
					op = opGet
				}
			}
			var key uint64
			if cfg.sequential {
				key = uint64((first + int64(i)) % cfg.keyspace)
			} else {
				key = c.rng.Uint64N(uint64(cfg.keyspace))
			}
			bucket := 0
			if cfg.buckets > 1 {
				bucket = c.rng.IntN(cfg.buckets)
			}
			c.ops[i] = op
			if c.resp != nil {
				c.buf = c.resp.appendRequest(c.buf, op, bucket, key)
			} else {
				c.buf = c.text.appendRequest(c.buf, op, bucket, key)
			}
		}

		// A request's latency runs from just before its batch is written
		// to the end of its reply, as redis-benchmark counts it.
		t0 := time.Now()
		// Push the deadline out only now and then: it stays at least 3/4 of
		// timeout away, without a timer update per batch.
		if t0.Sub(c.deadline) > refresh {
			c.conn.SetDeadline(t0.Add(timeout))
			c.deadline = t0
			if c.run.aborted.Load() { // fail may have set a past deadline just before
				return nil
			}
		}
		if _, err := c.conn.Write(c.buf); err != nil {
			return c.broken(err)
		}
		var errs int64
		for i := range n {
			isErr, err := c.read(c.ops[i])
			if err != nil {
				return c.broken(err)
			}
			us := time.Since(t0).Microseconds()
			c.hist.RecordValue(min(max(us, histMin), histMax))
			if isErr {
				errs++
			}
			if c.ops[i] == opGet {
				c.gets++
			} else {
				c.puts++
			}
		}
		c.done.Add(int64(n))
		if errs > 0 {
			c.errs.Add(errs)
		}
	}
}

// broken explains err, met on the connection; nil when the run was
// already aborted by another client's failure, which caused it.
func (c *client) broken(err error) error {
	if c.run.aborted.Load() {
		return nil
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		err = fmt.Errorf("the server closed the connection")
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		err = fmt.Errorf("the server closed the connection: %w", err)
	case errors.As(err, &ne) && ne.Timeout():
		err = fmt.Errorf("no reply within %v", c.run.cfg.readTimeout)
	}
	if c.rr.lastErr != "" {
		err = fmt.Errorf("%w (its first error reply: %s)", err, c.rr.lastErr)
	}
	return err
}

// control stops the run when its duration has passed or ctx is cancelled,
// and writes a progress line every cfg.progress until finished is closed.
func (run *runState) control(ctx context.Context, start time.Time, finished <-chan struct{}) {
	cfg := run.cfg
	var timeUp <-chan time.Time
	if cfg.duration > 0 {
		t := time.NewTimer(cfg.duration)
		defer t.Stop()
		timeUp = t.C
	}
	var tick <-chan time.Time
	if cfg.progress > 0 {
		t := time.NewTicker(cfg.progress)
		defer t.Stop()
		tick = t.C
	}
	ctxDone := ctx.Done()
	lastDone, lastTime, wrote := int64(0), start, false
	for {
		select {
		case <-finished:
			if wrote && cfg.progressTTY {
				fmt.Fprint(cfg.progressOut, "\r\033[K") // clear the progress line
			}
			return
		case <-timeUp:
			run.stopping.Store(true)
		case <-ctxDone:
			run.stopping.Store(true)
			ctxDone = nil
		case now := <-tick:
			var done, errs int64
			for _, c := range run.clients {
				done += c.done.Load()
				errs += c.errs.Load()
			}
			rate := float64(done-lastDone) / now.Sub(lastTime).Seconds()
			lastDone, lastTime = done, now
			line := fmt.Sprintf("bench: %d requests, %.0f req/s, %d errors", done, rate, errs)
			if cfg.progressTTY {
				fmt.Fprintf(cfg.progressOut, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(cfg.progressOut, line)
			}
			wrote = true
		}
	}
}
