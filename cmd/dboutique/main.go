// Command dboutique runs a D-Boutique node: an in-memory key-value store,
// its data in named buckets, served to clients over the text protocol of
// package textproto. Nodes form a cluster over libp2p (--join, --mdns); any
// node serves any bucket, forwarding requests to the bucket's owner.
// "dboutique genkey FILE" writes a new cluster key for --psk-file.
// "dboutique bench" drives a server with load and reports throughput and
// latency; "dboutique bench --help" lists its flags.
//
// Flags, each also settable through an environment variable, are listed by
// "dboutique --help". The node logs to stderr; it logs "Accepting
// connections on ADDR", with the address actually bound, once it is ready.
// SIGINT or SIGTERM stops it gracefully: first it hands its buckets to the
// other nodes, for at most --leave-timeout, while it still accepts and
// serves clients; then it stops accepting, finishes the requests already
// received (for a grace period, then closes what is left) and exits 0.
// "dboutique --help" states both bounds. A second signal closes every
// connection at once; one sent during the hand-off does so when it ends.
//
// Exit codes: 0 after a signal or --help, 2 for a bad flag or environment
// variable, 1 for any other failure (unreadable password file, address in
// use, ...).
package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dboutique/dboutique/cmd/dboutique/internal/bench"
	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/memlimit"
	"github.com/dboutique/dboutique/p2p"
	"github.com/dboutique/dboutique/ring"
	"github.com/dboutique/dboutique/textproto"
)

// shutdownGrace bounds how long a graceful stop waits for requests in flight.
const shutdownGrace = 30 * time.Second

// maxPasswordFile caps what is read from --password-file.
const maxPasswordFile = 64 << 10

func main() {
	// Buffered for two: the first signal starts a graceful stop, the second
	// forces it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, sigs))
}

// run is the whole program: it reads the configuration from args and
// getenv, serves until a value arrives on sigs, and returns the exit code.
// Help goes to stdout; logs and errors go to stderr.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, sigs <-chan os.Signal) int {
	if len(args) > 0 && args[0] == "genkey" {
		return genkey(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "bench" {
		return bench.Main(args[1:], stdout, stderr, sigs)
	}
	cfg, err := parseConfig(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		writeUsage(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "dboutique: %v\nRun 'dboutique --help' for the flags and their environment variables.\n", err)
		return 2
	}
	if err := start(cfg, stderr, sigs); err != nil {
		fmt.Fprintf(stderr, "dboutique: %v\n", err)
		return 1
	}
	return 0
}

// start builds the node from cfg, logging to stderr, listens and serves
// until sigs says stop. Each step that starts something adds its close
// func to one closers stack, which start runs when it returns: after a
// failure halfway and after serving alike.
func start(cfg config, stderr io.Writer, sigs <-chan os.Signal) error {
	var cl closers
	defer cl.close()
	log := newLogger(stderr, cfg.logLevel, &cl)
	mem, err := setMemoryLimit(cfg.maxMemory, &cl)
	if err != nil {
		return err
	}
	sec, err := readSecrets(cfg)
	if err != nil {
		return err
	}
	placement, err := newPlacement(cfg.ranges)
	if err != nil {
		return err
	}
	tr, err := newTransport(cfg, sec, log, &cl)
	if err != nil {
		return err
	}
	nd, err := newNode(cfg, mem, tr, placement, log, &cl)
	if err != nil {
		return err
	}
	reqMetrics, err := serveMetricsFor(cfg, nd, log, &cl)
	if err != nil {
		return err
	}
	srv, l, err := newClientServer(cfg, nd, sec.password, reqMetrics, log, &cl)
	if err != nil {
		return err
	}
	logStart(cfg, sec, mem, tr, log)
	nd.Start()
	if err := startMDNS(cfg, sec.psk, tr, nd, log, &cl); err != nil {
		return err
	}
	return serve(srv, l, log, sigs, shutdownGrace, leaver(cfg, nd, log))
}

// closers holds the close funcs of what start started.
type closers []func() error

func (cl *closers) add(f func() error) { *cl = append(*cl, f) }

// close runs the close funcs, the last added first, and forgets them. Their
// errors are dropped: the process is stopping, and a part that fails to
// stop cleanly logs it itself.
func (cl *closers) close() {
	for i := len(*cl) - 1; i >= 0; i-- {
		_ = (*cl)[i]()
	}
	*cl = nil
}

// memoryBudget is what --maxmemory leaves for the Go runtime and the
// store's tables outside its heap, and what the node's meter counts
// against (node/memlimit).
type memoryBudget struct {
	limit   int64                  // --maxmemory; 0: none
	reserve int64                  // for the resident pages of the executable itself: measured, and a margin
	runtime *memlimit.RuntimeLimit // keeps the Go runtime's limit at the rest less the tables; nil without a limit
}

// Bounds of the budget.
const (
	// reserveMargin is added to the executable's resident pages at start,
	// for code that runs only once the node serves: measured, 16.6 MB at
	// start, 20.4 MB for a node alone after a load of SET, GET and HSET,
	// 20.9 MB for a node of two replicating it.
	reserveMargin = 6 << 20
	// defaultReserve stands for the executable's pages where
	// /proc/self/status is not there to tell.
	defaultReserve = 32 << 20
	// minGoMemory is the least --maxmemory must leave to the runtime and
	// the store.
	minGoMemory = 16 << 20
)

// setMemoryLimit, with --maxmemory, sets the Go runtime's memory limit to
// what --maxmemory leaves once the executable's own resident pages are
// counted (the system counts them in the process's resident size; the
// runtime does not), and returns the budget, whose RuntimeLimit lowers the
// runtime's limit by what the store's tables hold outside the heap as
// they grow (the node's meter tells it); the node evicts at a fraction of
// the same budget. The limit is process-wide, so only the binary sets it,
// never a package; cl restores the previous one, for tests that run the
// program in their process.
func setMemoryLimit(maxMemory int64, cl *closers) (memoryBudget, error) {
	if maxMemory == 0 {
		return memoryBudget{}, nil
	}
	reserve := defaultReserve
	if file, ok := residentFileBytes(); ok {
		reserve = file + reserveMargin
	}
	if maxMemory-int64(reserve) < minGoMemory {
		return memoryBudget{}, fmt.Errorf("--maxmemory %s is too small: the program's own code takes %s of it, and it needs %s more at least",
			memlimit.FormatSize(maxMemory), humanBytes(uint64(reserve)), humanBytes(minGoMemory))
	}
	rl, prev, err := memlimit.NewRuntimeLimit(memlimit.RuntimeLimitConfig{Budget: maxMemory - int64(reserve), Set: debug.SetMemoryLimit})
	if err != nil {
		return memoryBudget{}, err
	}
	cl.add(func() error { debug.SetMemoryLimit(prev); return nil })
	return memoryBudget{limit: maxMemory, reserve: int64(reserve), runtime: rl}, nil
}

// residentFileBytes returns the process's resident pages that are backed
// by files or shared memory (RssFile and RssShmem of /proc/self/status, on
// Linux): its executable's code and data, which the system counts in its
// resident size and the Go runtime does not.
func residentFileBytes() (int, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	total, found := 0, 0
	for line := range strings.SplitSeq(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || name != "RssFile" && name != "RssShmem" {
			continue
		}
		kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		if err != nil {
			return 0, false
		}
		total += kb << 10
		found++
	}
	return total, found == 2
}

// newLogger returns a logger writing human-readable lines to w; cl syncs
// it last (syncing a terminal can fail; nothing to do about it).
func newLogger(w io.Writer, level zapcore.Level, cl *closers) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	enc.EncodeLevel = zapcore.CapitalLevelEncoder
	enc.EncodeDuration = zapcore.StringDurationEncoder
	out := zapcore.Lock(zapcore.AddSync(w))
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), out, level), zap.ErrorOutput(out))
	cl.add(log.Sync)
	return log
}

// secrets are read from the files the flags name; each is nil when its
// flag is not given.
type secrets struct {
	password []byte         // --password-file: what clients send with AUTH
	identity crypto.PrivKey // --identity: the node's key; nil: a new one
	psk      []byte         // --psk-file: the cluster key; nil: a public network
}

func readSecrets(cfg config) (secrets, error) {
	password, err := readIfSet(cfg.passwordFile, readPassword)
	if err != nil {
		return secrets{}, err
	}
	identity, err := readIfSet(cfg.identity, loadIdentity)
	if err != nil {
		return secrets{}, err
	}
	psk, err := readIfSet(cfg.pskFile, readClusterKey)
	if err != nil {
		return secrets{}, err
	}
	return secrets{password: password, identity: identity, psk: psk}, nil
}

// readIfSet returns read(path), or the zero T when path is empty.
func readIfSet[T any](path string, read func(string) (T, error)) (T, error) {
	if path == "" {
		var zero T
		return zero, nil
	}
	return read(path)
}

// loadIdentity reads the node's key from path, creating the file if it is
// missing.
func loadIdentity(path string) (crypto.PrivKey, error) {
	key, err := p2p.LoadOrCreateIdentity(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return key, nil
}

// newPlacement returns the --ranges table, or nil (the consistent-hash
// ring) when there is none.
func newPlacement(ranges string) (ring.Placement, error) {
	if ranges == "" {
		return nil, nil
	}
	r, err := ring.ParseRanges(ranges)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// newTransport starts the libp2p host that carries node-to-node traffic.
func newTransport(cfg config, sec secrets, log *zap.Logger, cl *closers) (*p2p.Transport, error) {
	tr, err := p2p.NewTransport(p2p.TransportConfig{
		Host: p2p.HostConfig{ListenAddrs: cfg.p2pListen, Identity: sec.identity, PSK: sec.psk},
		// The node bounds each call itself: a write may wait for a dead
		// replica to be declared dead.
		RPC:    p2p.RPCConfig{CallTimeout: time.Minute},
		Logger: log.Named("p2p"),
	})
	if err != nil {
		return nil, fmt.Errorf("cannot start the peer-to-peer host: %w", err)
	}
	cl.add(tr.Close)
	return tr, nil
}

// newNode makes the node on tr; it starts nothing yet.
func newNode(cfg config, mem memoryBudget, tr *p2p.Transport, placement ring.Placement, log *zap.Logger, cl *closers) (*node.Node, error) {
	// Alone in its process, the node counts all of it, and the runtime's
	// limit follows the store's tables.
	meter := func(fp func() memlimit.Footprint) memlimit.Meter { return memlimit.ProcessMeter(fp, mem.runtime) }
	nd, err := node.New(node.Config{
		Name:             cfg.name,
		Cluster:          cfg.cluster,
		Transport:        tr,
		Placement:        placement,
		Join:             cfg.join,
		DeadAfter:        cfg.deadAfter,
		ProbeInterval:    cfg.deadAfter / 6,
		Replicas:         cfg.replicas,
		MinMembers:       cfg.minMembers,
		TombstoneGrace:   cfg.tombstoneGrace,
		MaxClockSkew:     cfg.maxClockSkew,
		PeerBook:         peerBook(cfg.identity),
		RejoinTimeout:    cfg.rejoinTimeout,
		MaxMemory:        mem.limit,
		MaxMemoryPolicy:  cfg.maxMemoryPolicy,
		MaxMemoryReserve: mem.reserve,
		MemoryMeter:      meter,
		Logger:           log.Named("node"),
	})
	if err != nil {
		return nil, err
	}
	cl.add(nd.Close)
	return nd, nil
}

// serveMetricsFor starts the metrics server of --metrics-addr, if any, and
// returns the client request counters it serves, or nil (which counts
// nothing) when there is no metrics server.
func serveMetricsFor(cfg config, nd *node.Node, log *zap.Logger, cl *closers) (*textproto.Metrics, error) {
	if cfg.metricsAddr == "" {
		return nil, nil
	}
	reqMetrics := textproto.NewMetrics()
	m, err := startMetrics(cfg.metricsAddr, nd, log.Named("metrics"), reqMetrics)
	if err != nil {
		return nil, err
	}
	cl.add(m.Close)
	return reqMetrics, nil
}

// newClientServer makes the server of the client protocols and its
// listener on --listen.
func newClientServer(cfg config, nd *node.Node, password []byte, reqMetrics *textproto.Metrics, log *zap.Logger, cl *closers) (*textproto.Server, net.Listener, error) {
	info := newInfoEnv(cfg)
	srv, err := textproto.NewServer(textproto.Config{
		Executor:     nd,
		Password:     password,
		MaxLineBytes: cfg.maxLine,
		MaxBulkBytes: cfg.maxBulk,
		MaxConns:     cfg.maxConns,
		IdleTimeout:  cmp.Or(cfg.idleTimeout, textproto.NoTimeout),
		Info:         nodeInfo(nd, info),
		Metrics:      reqMetrics,
		Logger:       log.Named("textproto"),
	})
	if err != nil {
		return nil, nil, err
	}
	cl.add(srv.Close)
	l, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot listen: %w", err)
	}
	cl.add(l.Close)
	info.listening(l.Addr())
	return srv, l, nil
}

// logStart logs how the node is set up and where other nodes reach it.
func logStart(cfg config, sec secrets, mem memoryBudget, tr *p2p.Transport, log *zap.Logger) {
	log.Info("starting node",
		zap.String("name", cfg.name),
		zap.String("cluster", cfg.cluster),
		zap.String("peer_id", tr.ID()),
		zap.String("placement", placementName(cfg.ranges)),
		zap.Bool("cluster_key", sec.psk != nil),
		zap.Bool("mdns", cfg.mdns),
		zap.String("max_line", formatSize(int64(cfg.maxLine))),
		zap.String("max_bulk", formatSize(int64(cfg.maxBulk))),
		zap.Int("max_conns", cfg.maxConns),
		zap.Duration("idle_timeout", cfg.idleTimeout),
		zap.String("maxmemory", memlimit.FormatSize(cfg.maxMemory)),
		zap.Stringer("maxmemory_policy", cfg.maxMemoryPolicy),
		zap.Bool("auth", sec.password != nil))
	if mem.limit > 0 {
		log.Info("memory limit",
			zap.String("maxmemory", memlimit.FormatSize(mem.limit)),
			zap.String("executable_reserve", humanBytes(uint64(mem.reserve))),
			zap.String("go_memory_limit", humanBytes(uint64(mem.runtime.Limit()))+" less the store's tables"),
			zap.String("eviction_from", humanBytes(uint64(float64(mem.limit-mem.reserve)*memlimit.DefaultThreshold))))
	}
	if sec.psk != nil {
		log.Info("cluster key fingerprint " + p2p.KeyFingerprint(sec.psk))
	}
	for _, a := range tr.FullAddrs() {
		log.Info("Peer address " + a + " (other nodes can --join it)")
	}
}

// startMDNS, with --mdns, announces the node on the LAN and introduces to
// it the nodes of its cluster that it finds there.
func startMDNS(cfg config, psk []byte, tr *p2p.Transport, nd *node.Node, log *zap.Logger, cl *closers) error {
	if !cfg.mdns {
		return nil
	}
	if onlyLoopback(cfg.p2pListen) {
		log.Warn("mDNS is on, but the node listens for other nodes on loopback only: " +
			"nodes on other machines will find it and fail to connect; set --p2p-listen to a LAN address")
	}
	m, err := p2p.StartMDNS(tr.Host(), p2p.ServiceTag(cfg.cluster, psk), func(ai peer.AddrInfo) {
		addrs := make([]string, len(ai.Addrs))
		for i, a := range ai.Addrs {
			addrs[i] = a.String()
		}
		nd.Introduce(ai.ID.String(), addrs)
	}, log.Named("mdns"))
	if err != nil {
		return fmt.Errorf("cannot start mDNS: %w", err)
	}
	cl.add(m.Close)
	return nil
}

// leaver returns the func that serve calls after the first signal: the
// node hands its buckets off, for at most --leave-timeout, while serve
// still accepts and serves clients.
func leaver(cfg config, nd *node.Node, log *zap.Logger) func() {
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.leaveTimeout)
		defer cancel()
		log.Info("leaving the cluster: handing buckets off; clients are still served meanwhile",
			zap.Duration("timeout", cfg.leaveTimeout))
		if err := nd.Leave(ctx); err != nil {
			log.Error("hand-off incomplete", zap.Error(err))
		}
	}
}

// onlyLoopback reports whether every address is an IPv4 or IPv6 loopback
// address.
func onlyLoopback(addrs []string) bool {
	for _, a := range addrs {
		if !strings.HasPrefix(a, "/ip4/127.") && !strings.HasPrefix(a, "/ip6/::1/") {
			return false
		}
	}
	return true
}

// readClusterKey reads the cluster key file at path.
func readClusterKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the cluster key file: %w", err)
	}
	defer f.Close()
	key, err := p2p.ReadClusterKey(f)
	if err != nil {
		return nil, fmt.Errorf("cluster key file %s: %w", path, err)
	}
	return key, nil
}

// genkey is "dboutique genkey [FILE]": it writes a new cluster key to FILE
// (which must not exist yet), or to stdout when FILE is "-" or missing.
func genkey(args []string, stdout, stderr io.Writer) int {
	if len(args) > 1 || len(args) == 1 && strings.HasPrefix(args[0], "-") && args[0] != "-" {
		fmt.Fprintln(stderr, "Usage: dboutique genkey [FILE]\n\nWrites a new cluster key to FILE (or to stdout). Give the same file to\nevery node with --psk-file; nodes without it cannot connect.")
		if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return 0
		}
		return 2
	}
	key, err := p2p.GenerateClusterKey()
	if err != nil {
		fmt.Fprintf(stderr, "dboutique genkey: %v\n", err)
		return 1
	}
	if len(args) == 0 || args[0] == "-" {
		if err := p2p.WriteClusterKey(stdout, key); err != nil {
			fmt.Fprintf(stderr, "dboutique genkey: %v\n", err)
			return 1
		}
		return 0
	}
	path := args[0]
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		fmt.Fprintf(stderr, "dboutique genkey: %v (an existing key file is never overwritten)\n", err)
		return 1
	}
	if err := errors.Join(p2p.WriteClusterKey(f, key), f.Close()); err != nil {
		fmt.Fprintf(stderr, "dboutique genkey: %v\n", err)
		_ = os.Remove(path)
		return 1
	}
	fmt.Fprintf(stderr, "dboutique genkey: wrote a new cluster key to %s (fingerprint %s).\nGive this file to every node with --psk-file.\n", path, p2p.KeyFingerprint(key))
	return 0
}

// readPassword reads the client password from the file at path: its
// contents without surrounding white space, which must be one word.
func readPassword(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the password file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPasswordFile+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read the password file %s: %w", path, err)
	}
	if len(b) > maxPasswordFile {
		return nil, fmt.Errorf("password file %s is larger than %d bytes; it should hold one word", path, maxPasswordFile)
	}
	p := bytes.TrimSpace(b)
	if len(p) == 0 {
		return nil, fmt.Errorf("password file %s is empty", path)
	}
	if bytes.ContainsFunc(p, unicode.IsSpace) {
		return nil, fmt.Errorf("the password in %s contains white space; it must be one word", path)
	}
	return p, nil
}

// serve runs srv on l until the first value on sigs, then calls leave (if
// not nil), while srv still accepts connections on l and serves them. Then
// it shuts srv down: l is closed and serve waits up to grace for requests
// in flight. A second value on sigs closes every connection at once (one
// that comes while leave runs is read when leave returns). It returns nil
// after a signal, or the error that stopped Serve. Every goroutine it
// starts has ended when it returns.
func serve(srv *textproto.Server, l net.Listener, log *zap.Logger, sigs <-chan os.Signal, grace time.Duration, leave func()) error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }() // ends after Shutdown or Close
	log.Info("Accepting connections on " + l.Addr().String())

	select {
	case err := <-served:
		srv.Close()
		return fmt.Errorf("serving stopped: %w", err)
	case sig := <-sigs:
		log.Info("shutting down", zap.Stringer("signal", sig))
	}
	if leave != nil {
		leave()
	}
	log.Info("no new connections; finishing requests in flight", zap.Duration("grace", grace))

	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }() // ends within grace, or sooner after Close
	select {
	case err := <-shut:
		if err != nil {
			log.Warn("grace period over; closed the remaining connections", zap.Error(err))
		}
	case sig := <-sigs:
		log.Warn("second signal: closing every connection now", zap.Stringer("signal", sig))
		srv.Close()
		<-shut
	}
	<-served
	log.Info("stopped")
	return nil
}
