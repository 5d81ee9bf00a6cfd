package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/dboutique/dboutique/node"
	"github.com/dboutique/dboutique/node/memlimit"
	"github.com/dboutique/dboutique/p2p"
	"github.com/dboutique/dboutique/ring"
	"github.com/dboutique/dboutique/textproto"
)

// envPrefix starts the name of the environment variable behind every flag:
// --max-line is also DBOUTIQUE_MAX_LINE.
const envPrefix = "DBOUTIQUE_"

// config is the node's configuration, from the command line, the
// environment and the defaults, in that order of precedence.
type config struct {
	listen       string
	passwordFile string // empty: no authentication
	maxLine      int
	maxBulk      int
	maxConns     int
	idleTimeout  time.Duration // 0: never time out
	logLevel     zapcore.Level
	metricsAddr  string // HTTP address for /metrics and pprof; empty: off

	// Cluster flags.
	name      string        // the node's name; default: the host name
	cluster   string        // the cluster's name
	p2pListen []string      // multiaddrs for node-to-node traffic
	join      []string      // full multiaddrs of nodes to join through
	mdns      bool          // LAN discovery
	ranges    string        // letter-range table; empty: consistent hashing
	identity  string        // identity key file; empty: a new identity each start
	pskFile   string        // cluster key file; empty: public network
	deadAfter time.Duration // silence after which a member leaves the ring

	// Replication flags.
	replicas       int           // nodes holding each bucket
	minMembers     int           // fewer members seen: refuse writes; 0: never
	leaveTimeout   time.Duration // how long SIGTERM's hand-off may take
	tombstoneGrace time.Duration // how long deletes are remembered
	maxClockSkew   time.Duration // how far members' clocks may differ
	rejoinTimeout  time.Duration // how long a restarted node looks for its cluster

	// Memory flags.
	maxMemory       int64           // bytes; 0: no limit
	maxMemoryPolicy memlimit.Policy // what to do at the limit
}

func defaultConfig() config {
	return config{
		listen:      "127.0.0.1:4040",
		maxLine:     textproto.DefaultMaxLineBytes,
		maxBulk:     textproto.DefaultMaxBulkBytes,
		maxConns:    textproto.DefaultMaxConns,
		idleTimeout: textproto.DefaultIdleTimeout,
		logLevel:    zapcore.InfoLevel,
		name:        defaultName(),
		cluster:     node.DefaultCluster,
		p2pListen:   []string{defaultP2PListen},
		deadAfter:   node.DefaultDeadAfter,

		replicas:       node.DefaultReplicas,
		leaveTimeout:   time.Minute,
		tombstoneGrace: node.DefaultTombstoneGrace,
		maxClockSkew:   node.DefaultMaxClockSkew,
		rejoinTimeout:  node.DefaultRejoinTimeout,

		maxMemoryPolicy: memlimit.NoEviction,
	}
}

// defaultP2PListen is where a node listens for other nodes unless told:
// loopback, so that nothing is reachable from the network by default.
const defaultP2PListen = "/ip4/127.0.0.1/tcp/0"

// defaultName is the host name, or "dboutique" when it is unknown.
func defaultName() string {
	h, err := os.Hostname()
	if err != nil || ring.ValidName(h) != nil {
		return "dboutique"
	}
	return h
}

// flagSpec describes one flag for the FlagSet and for --help.
type flagSpec struct {
	name  string // without dashes
	arg   string // placeholder for the value in --help
	usage string
	value flag.Value
}

// envName returns the environment variable that sets the flag called name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// flagSpecs returns the flags, in the order --help lists them, each bound
// to its field of cfg.
func flagSpecs(cfg *config) []flagSpec {
	return []flagSpec{
		{"listen", "ADDR", "TCP address to listen on, host:port (port 0 picks a free port).",
			stringValue(&cfg.listen, parseListen)},
		{"password-file", "FILE", "File holding the password clients must send with AUTH (one word;\n" +
			"surrounding white space is ignored). Without it, no AUTH is needed.",
			fileValue(&cfg.passwordFile)},
		{"max-line", "SIZE", fmt.Sprintf("Longest request line accepted, in bytes, from %d to 1GiB; the suffixes\n"+
			"k, m, g (also KiB, MiB, GiB, KB, MB, GB) are powers of 1024. A longer\n"+
			"line is answered \"ERROR line too long\" and the connection closed.", textproto.MinMaxLineBytes),
			sizeValue(&cfg.maxLine, textproto.MinMaxLineBytes, textproto.MaxMaxLineBytes)},
		{"max-bulk", "SIZE", fmt.Sprintf("Longest key or value a RESP (Redis protocol) request may carry, from %d\n"+
			"to 1GiB, with the same suffixes. A longer one is answered \"-ERR Protocol\n"+
			"error\" and the connection closed.", textproto.MinMaxBulkBytes),
			sizeValue(&cfg.maxBulk, textproto.MinMaxBulkBytes, textproto.MaxMaxBulkBytes)},
		{"max-conns", "N", "Most client connections open at once; one more is answered\n" +
			"\"ERROR too many connections\" and closed.",
			intValue(&cfg.maxConns, 1, math.MaxInt32)},
		{"idle-timeout", "DURATION", "Close a connection that sends no complete request for this long\n" +
			"(a Go duration: 30s, 5m, 1h); 0 never closes it.",
			newValue(&cfg.idleTimeout, parseTimeout, time.Duration.String)},
		{"log-level", "LEVEL", "Least severe log messages written to stderr: debug, info, warn or error.",
			newValue(&cfg.logLevel, parseLevel, zapcore.Level.String)},
		{"metrics-addr", "ADDR", "Serve Prometheus metrics on /metrics and Go profiles (pprof) on\n" +
			"/debug/pprof/ over HTTP at this host:port (port 0 picks a free port).\n" +
			"They expose the node's internals: keep it on loopback or a private network.",
			stringValue(&cfg.metricsAddr, parseMetricsAddr)},
		{"name", "NAME", "This node's name, shown by NODES and OWNER and used by --ranges\n" +
			"(one word, no ',' or '='). The default is the host name.",
			stringValue(&cfg.name, parseName)},
		{"cluster", "NAME", "The cluster's name. Nodes of other clusters are refused, and mDNS\n" +
			"only finds nodes of the same cluster.",
			stringValue(&cfg.cluster, parseName)},
		{"p2p-listen", "MULTIADDR", "Where to listen for other nodes, as a libp2p multiaddr such as\n" +
			"/ip4/192.168.1.10/tcp/4041 (repeatable; in the environment, comma-separated).\n" +
			"The default, loopback on a free port, serves a cluster on one machine.",
			listValue(&cfg.p2pListen, nil)},
		{"join", "MULTIADDR", "Join the cluster through this node: a full address with the peer ID, as\n" +
			"the other node logs it at start (/ip4/.../tcp/.../p2p/12D3Koo...).\n" +
			"Repeatable; one reachable node is enough.",
			listValue(&cfg.join, func(s string) error { _, err := p2p.ParseJoinAddr(s); return err })},
		{"mdns", "", "Find the cluster's other nodes on the LAN with mDNS. This announces\n" +
			"the node on every network interface; --p2p-listen should then name a LAN address.",
			switchValue{newValue(&cfg.mdns, parseSwitch, formatSwitch)}},
		{"ranges", "SPEC", "Place buckets by the first byte of their name with a static table,\n" +
			"such as a-g=a-g,h-n=h-n,o-u=o-u,v-z=v-z (range=node name), instead of\n" +
			"the consistent-hash ring. Every node must be given the same table.",
			stringValue(&cfg.ranges, parseRanges)},
		{"identity", "FILE", "File holding the node's private key (created if missing), so that a\n" +
			"restarted node keeps its peer ID and its place in the ring. Without it,\n" +
			"every start is a new node. Beside it, FILE.peers remembers the other\n" +
			"nodes, so that a restarted node finds its cluster again (--rejoin-timeout).",
			fileValue(&cfg.identity)},
		{"psk-file", "FILE", "Cluster key file (make one with 'dboutique genkey FILE'): only nodes\n" +
			"holding the same key can connect. Node traffic is encrypted either way.",
			fileValue(&cfg.pskFile)},
		{"dead-after", "DURATION", "How long a node may stay silent before the others take it out of the\n" +
			"ring and serve its buckets elsewhere (500ms to 10m), in a cluster of under\n" +
			"ten nodes; larger clusters wait longer, as log10 of their size (about 1.8x\n" +
			"at 64 nodes). Each node probes one member every sixth of it; a member\n" +
			"that misses a probe is suspected, and dead unless it answers in time.\n" +
			"A node stopped by a signal leaves at once.",
			durationValue(&cfg.deadAfter, 500*time.Millisecond, 10*time.Minute)},
		{"replicas", "N", "How many nodes hold each bucket (1 to " + strconv.Itoa(node.MaxReplicas) + "). A write is acknowledged once\n" +
			"every live holder has it, so it survives the loss of N-1 nodes.",
			intValue(&cfg.replicas, 1, node.MaxReplicas)},
		{"min-members", "K", "Refuse reads and writes (\"ERROR cluster unavailable\") while this node cannot\n" +
			"confirm that it is part of K members, itself included; with K a majority,\n" +
			"only the larger side of a network partition answers. 0, the default, never refuses.",
			intValue(&cfg.minMembers, 0, 1<<16)},
		{"leave-timeout", "DURATION", "On SIGINT or SIGTERM the node hands its buckets to the other nodes\n" +
			"before it exits; this bounds how long that may take (1s to 1h).",
			durationValue(&cfg.leaveTimeout, time.Second, time.Hour)},
		{"tombstone-grace", "DURATION", "How long deleted keys and dropped buckets are remembered, so that an\n" +
			"older copy merged later cannot bring them back (1m to 720h). A node cut\n" +
			"off from the others for longer than this may bring them back when it returns.",
			durationValue(&cfg.tombstoneGrace, time.Minute, 720*time.Hour)},
		{"max-clock-skew", "DURATION", "How far another node's clock may be from this one's (100ms to 1h, at\n" +
			"most a quarter of --tombstone-grace). A node further off is refused, and\n" +
			"logged; deletes are remembered for --tombstone-grace minus this.",
			durationValue(&cfg.maxClockSkew, 100*time.Millisecond, time.Hour)},
		{"rejoin-timeout", "DURATION", "A node restarted with --identity answers \"ERROR cluster unavailable\"\n" +
			"until it reaches one of the nodes it knew, or for this long when it has no\n" +
			"--join address (they may all be gone); then it serves on its own (0 to 1h).",
			durationValue(&cfg.rejoinTimeout, 0, time.Hour)},
		{"maxmemory", "SIZE", fmt.Sprintf("Most memory the node may use, resident, as Redis's maxmemory: bytes, or\n"+
			"with a unit: k, m, g are powers of 1000, kb, mb, gb (and KiB, MiB, GiB)\n"+
			"powers of 1024. 0 is no limit. The program's own code takes about 23 MiB\n"+
			"of it; the Go runtime's memory limit is set to the rest less what the\n"+
			"store's tables hold outside the Go heap, and eviction (or, with noeviction,\n"+
			"refusing writes) starts at %.0f%% of the rest, so that the garbage\n"+
			"collector keeps the process under the limit. At least %s.",
			100*memlimit.DefaultThreshold, memlimit.FormatSize(minMaxMemory)),
			newValue(&cfg.maxMemory, parseMaxMemory, memlimit.FormatSize)},
		{"maxmemory-policy", "NAME", "What the node does at --maxmemory, as Redis's maxmemory-policy:\n" +
			"noeviction refuses writes that add memory (\"-OOM ...\", \"ERROR out of memory\");\n" +
			"allkeys-lru, allkeys-lfu and allkeys-random evict the least recently used,\n" +
			"the least frequently used, or random entries; volatile-lru, volatile-lfu,\n" +
			"volatile-random and volatile-ttl evict only entries with an expiry time\n" +
			"(volatile-ttl those expiring soonest), and refuse writes when none is left.",
			newValue(&cfg.maxMemoryPolicy, memlimit.ParsePolicy, memlimit.Policy.String)},
	}
}

// minMaxMemory is the smallest --maxmemory but 0: the program's code
// alone takes about 23 MiB of it (start checks what is left more
// precisely).
const minMaxMemory = 32 << 20

// parseMaxMemory reads --maxmemory: 0, or a size of at least minMaxMemory.
func parseMaxMemory(s string) (int64, error) {
	n, err := memlimit.ParseSize(s)
	if err != nil {
		return 0, err
	}
	if n != 0 && n < minMaxMemory {
		return 0, fmt.Errorf("%s is too small: want 0 (no limit) or at least %s", memlimit.FormatSize(n), memlimit.FormatSize(minMaxMemory))
	}
	return n, nil
}

// parseConfig builds the configuration from the command-line arguments
// (without the program name) and the environment, read through getenv. A
// flag on the command line wins over its environment variable, which wins
// over the default; an empty variable counts as unset. It returns
// flag.ErrHelp when --help (or -h) was asked for, and otherwise an error
// that says what is wrong with the arguments or the environment.
func parseConfig(args []string, getenv func(string) string) (config, error) {
	cfg := defaultConfig()
	specs := flagSpecs(&cfg)
	fs := flag.NewFlagSet("dboutique", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run reports errors and usage itself
	fs.Usage = func() {}
	for _, s := range specs {
		fs.Var(s.value, s.name, s.usage)
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q (dboutique takes only flags)", fs.Arg(0))
	}
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, s := range specs {
		if given[s.name] {
			continue
		}
		env := envName(s.name)
		v := getenv(env)
		if v == "" {
			continue
		}
		if err := s.value.Set(v); err != nil {
			return config{}, fmt.Errorf("invalid value %q for environment variable %s: %w", v, env, err)
		}
	}
	return cfg, nil
}

// writeUsage writes the --help text to w.
func writeUsage(w io.Writer) {
	cfg := defaultConfig()
	var b strings.Builder
	b.WriteString(`Usage: dboutique [flags]
       dboutique genkey [FILE]

dboutique runs one D-Boutique node: an in-memory key-value store, its data
in named buckets, served over a line protocol that telnet or nc can speak
(connect and send HELP). Nodes form a cluster (--join, or --mdns on a LAN);
any node serves any bucket.

`)
	fmt.Fprintf(&b, `SIGINT or SIGTERM stops the node gracefully. It tells the cluster it is
leaving and hands its buckets to the other nodes, for at most
--leave-timeout (default %v), while it still serves its clients; then it
stops accepting connections and finishes the requests in flight, for at
most %v: with the defaults, it exits within %v. A second signal closes
every connection at once (one sent during the hand-off, when it ends).

`, cfg.leaveTimeout, shutdownGrace, cfg.leaveTimeout+shutdownGrace)
	b.WriteString(`'dboutique genkey FILE' writes a new cluster key for --psk-file.

Every flag can also be set with the environment variable shown; a flag on
the command line wins over the environment.

Flags:
`)
	for _, s := range flagSpecs(&cfg) {
		def := cmp.Or(s.value.String(), "none")
		fmt.Fprintf(&b, "  --%s", s.name)
		if s.arg != "" {
			b.WriteString(" " + s.arg)
		}
		b.WriteString("\n")
		for line := range strings.SplitSeq(s.usage, "\n") {
			fmt.Fprintf(&b, "        %s\n", line)
		}
		fmt.Fprintf(&b, "        env %s, default %s\n", envName(s.name), def)
	}
	b.WriteString("  --help\n        Show this help and exit.\n")
	_, _ = io.WriteString(w, b.String())
}

// value is a flag.Value for a setting of type T, bound to *p: Set parses
// with parse, String writes *p with format (the default shown by --help).
type value[T any] struct {
	p      *T
	parse  func(string) (T, error)
	format func(T) string
}

func newValue[T any](p *T, parse func(string) (T, error), format func(T) string) *value[T] {
	return &value[T]{p: p, parse: parse, format: format}
}

// String formats the setting; "" for the zero value the flag package may
// make to find a flag's zero default.
func (v *value[T]) String() string {
	if v.p == nil {
		return ""
	}
	return v.format(*v.p)
}

func (v *value[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

// switchValue is a value[bool] that may stand alone: --mdns, --mdns=false.
type switchValue struct{ *value[bool] }

func (switchValue) IsBoolFlag() bool { return true }

// stringValue is a string setting; parse checks and may rewrite what is
// set.
func stringValue(p *string, parse func(string) (string, error)) *value[string] {
	return newValue(p, parse, func(s string) string { return s })
}

// fileValue is a file's path, taken as it is: the file is read at start.
func fileValue(p *string) *value[string] {
	return stringValue(p, func(s string) (string, error) { return s, nil })
}

// boundedValue is a setting that parse reads and that must lie in
// [lo, hi]; format writes it, in --help and in the out-of-range error.
func boundedValue[T cmp.Ordered](p *T, parse func(string) (T, error), format func(T) string, lo, hi T) *value[T] {
	return newValue(p, func(s string) (T, error) {
		x, err := parse(s)
		if err != nil {
			return x, err
		}
		if x < lo || x > hi {
			return x, fmt.Errorf("%s is out of range: want %s to %s", format(x), format(lo), format(hi))
		}
		return x, nil
	}, format)
}

// sizeValue is a byte count in [lo, hi], read by parseSize.
func sizeValue(p *int, lo, hi int) *value[int] {
	return boundedValue(p, func(s string) (int, error) {
		n, err := parseSize(s)
		if err != nil {
			return 0, err
		}
		if n > math.MaxInt {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return int(n), nil
	}, func(n int) string { return formatSize(int64(n)) }, lo, hi)
}

// intValue is a decimal integer in [lo, hi].
func intValue(p *int, lo, hi int) *value[int] {
	return boundedValue(p, parseInt, strconv.Itoa, lo, hi)
}

// durationValue is a time.Duration in [lo, hi].
func durationValue(p *time.Duration, lo, hi time.Duration) *value[time.Duration] {
	return boundedValue(p, parseDuration, time.Duration.String, lo, hi)
}

// listValue is a repeatable setting. The first Set replaces the default;
// later ones append. From the environment, the value is comma-separated.
// check (nil: any non-empty item) vets each item.
func listValue(p *[]string, check func(string) error) *value[[]string] {
	set := false
	return newValue(p, func(s string) ([]string, error) {
		var items []string
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			if check != nil {
				if err := check(item); err != nil {
					return nil, err
				}
			}
			items = append(items, item)
		}
		if len(items) == 0 {
			return nil, errors.New("want a value")
		}
		if !set {
			set = true
			return items, nil
		}
		return append(*p, items...), nil
	}, func(l []string) string { return strings.Join(l, ",") })
}

// parseListen reads a host:port address.
func parseListen(s string) (string, error) {
	if _, _, err := net.SplitHostPort(s); err != nil {
		return "", errors.New("want host:port, such as 127.0.0.1:4040 or :4040")
	}
	return s, nil
}

// parseName reads a node or cluster name.
func parseName(s string) (string, error) {
	s = strings.TrimSpace(s)
	if err := ring.ValidName(s); err != nil {
		return "", fmt.Errorf("%w; want one word of printable characters, at most %d bytes, without ',' or '='", err, ring.MaxNameLen)
	}
	return s, nil
}

// parseRanges reads a letter-range table and writes it in its usual form.
func parseRanges(s string) (string, error) {
	r, err := ring.ParseRanges(s)
	if err != nil {
		return "", err
	}
	return r.String(), nil
}

// parseSwitch reads true/false, 1/0, yes/no, on/off.
func parseSwitch(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off":
		return false, nil
	}
	return false, errors.New("want true or false")
}

func formatSwitch(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func parseInt(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, errors.New("want a whole number")
	}
	return n, nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, errors.New("want a duration such as 3s or 1m")
	}
	return d, nil
}

// parseTimeout reads a duration that is not negative, 0 meaning none.
func parseTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, errors.New("want a duration such as 30s, 5m or 1h, or 0 for none")
	}
	if d < 0 {
		return 0, errors.New("must not be negative")
	}
	return d, nil
}

// parseLevel reads one of the log levels the node offers.
func parseLevel(s string) (zapcore.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return zapcore.DebugLevel, nil
	case "info":
		return zapcore.InfoLevel, nil
	case "warn":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return 0, errors.New("want debug, info, warn or error")
}

// Size units, all powers of 1024.
const (
	kiB = 1 << 10
	miB = 1 << 20
	giB = 1 << 30
)

// parseSize parses a byte count: digits, then optionally a unit, in any
// case: b; k, kb, kib; m, mb, mib; g, gb, gib. Every unit is a power of
// 1024. Surrounding white space is ignored; signs, fractions, exponents and
// anything else are errors.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && '0' <= t[i] && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q does not start with a number (want e.g. 65536, 64k or 1MiB)", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	var mult int64
	switch strings.ToLower(t[i:]) {
	case "", "b":
		mult = 1
	case "k", "kb", "kib":
		mult = kiB
	case "m", "mb", "mib":
		mult = miB
	case "g", "gb", "gib":
		mult = giB
	default:
		return 0, fmt.Errorf("size %q has an unknown unit %q (want b, k, m or g, or KiB, MiB, GiB)", s, t[i:])
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// formatSize writes n bytes in the largest unit that divides it exactly.
func formatSize(n int64) string {
	switch {
	case n != 0 && n%giB == 0:
		return strconv.FormatInt(n/giB, 10) + "GiB"
	case n != 0 && n%miB == 0:
		return strconv.FormatInt(n/miB, 10) + "MiB"
	case n != 0 && n%kiB == 0:
		return strconv.FormatInt(n/kiB, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}
