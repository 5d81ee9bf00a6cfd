package main

import (
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
			&listenValue{&cfg.listen}},
		{"password-file", "FILE", "File holding the password clients must send with AUTH (one word;\n" +
			"surrounding white space is ignored). Without it, no AUTH is needed.",
			&stringValue{&cfg.passwordFile}},
		{"max-line", "SIZE", fmt.Sprintf("Longest request line accepted, in bytes, from %d to 1GiB; the suffixes\n"+
			"k, m, g (also KiB, MiB, GiB, KB, MB, GB) are powers of 1024. A longer\n"+
			"line is answered \"ERROR line too long\" and the connection closed.", textproto.MinMaxLineBytes),
			&sizeValue{&cfg.maxLine, textproto.MinMaxLineBytes, textproto.MaxMaxLineBytes}},
		{"max-bulk", "SIZE", fmt.Sprintf("Longest key or value a RESP (Redis protocol) request may carry, from %d\n"+
			"to 1GiB, with the same suffixes. A longer one is answered \"-ERR Protocol\n"+
			"error\" and the connection closed.", textproto.MinMaxBulkBytes),
			&sizeValue{&cfg.maxBulk, textproto.MinMaxBulkBytes, textproto.MaxMaxBulkBytes}},
		{"max-conns", "N", "Most client connections open at once; one more is answered\n" +
			"\"ERROR too many connections\" and closed.",
			&intValue{&cfg.maxConns, 1, math.MaxInt32}},
		{"idle-timeout", "DURATION", "Close a connection that sends no complete request for this long\n" +
			"(a Go duration: 30s, 5m, 1h); 0 never closes it.",
			&durationValue{&cfg.idleTimeout}},
		{"log-level", "LEVEL", "Least severe log messages written to stderr: debug, info, warn or error.",
			&levelValue{&cfg.logLevel}},
		{"metrics-addr", "ADDR", "Serve Prometheus metrics on /metrics and Go profiles (pprof) on\n" +
			"/debug/pprof/ over HTTP at this host:port (port 0 picks a free port).\n" +
			"They expose the node's internals: keep it on loopback or a private network.",
			&metricsAddrValue{&cfg.metricsAddr}},
		{"name", "NAME", "This node's name, shown by NODES and OWNER and used by --ranges\n" +
			"(one word, no ',' or '='). The default is the host name.",
			&nameValue{&cfg.name}},
		{"cluster", "NAME", "The cluster's name. Nodes of other clusters are refused, and mDNS\n" +
			"only finds nodes of the same cluster.",
			&nameValue{&cfg.cluster}},
		{"p2p-listen", "MULTIADDR", "Where to listen for other nodes, as a libp2p multiaddr such as\n" +
			"/ip4/192.168.1.10/tcp/4041 (repeatable; in the environment, comma-separated).\n" +
			"The default, loopback on a free port, serves a cluster on one machine.",
			&listValue{p: &cfg.p2pListen}},
		{"join", "MULTIADDR", "Join the cluster through this node: a full address with the peer ID, as\n" +
			"the other node logs it at start (/ip4/.../tcp/.../p2p/12D3Koo...).\n" +
			"Repeatable; one reachable node is enough.",
			&listValue{p: &cfg.join, check: func(s string) error { _, err := p2p.ParseJoinAddr(s); return err }}},
		{"mdns", "", "Find the cluster's other nodes on the LAN with mDNS. This announces\n" +
			"the node on every network interface; --p2p-listen should then name a LAN address.",
			&boolValue{&cfg.mdns}},
		{"ranges", "SPEC", "Place buckets by the first byte of their name with a static table,\n" +
			"such as a-g=a-g,h-n=h-n,o-u=o-u,v-z=v-z (range=node name), instead of\n" +
			"the consistent-hash ring. Every node must be given the same table.",
			&rangesValue{&cfg.ranges}},
		{"identity", "FILE", "File holding the node's private key (created if missing), so that a\n" +
			"restarted node keeps its peer ID and its place in the ring. Without it,\n" +
			"every start is a new node. Beside it, FILE.peers remembers the other\n" +
			"nodes, so that a restarted node finds its cluster again (--rejoin-timeout).",
			&stringValue{&cfg.identity}},
		{"psk-file", "FILE", "Cluster key file (make one with 'dboutique genkey FILE'): only nodes\n" +
			"holding the same key can connect. Node traffic is encrypted either way.",
			&stringValue{&cfg.pskFile}},
		{"dead-after", "DURATION", "How long a node may stay silent before the others take it out of the\n" +
			"ring and serve its buckets elsewhere (500ms to 10m). Members are probed\n" +
			"six times in this period. A node stopped by a signal leaves at once.",
			&boundedDurationValue{&cfg.deadAfter, 500 * time.Millisecond, 10 * time.Minute}},
		{"replicas", "N", "How many nodes hold each bucket (1 to " + strconv.Itoa(node.MaxReplicas) + "). A write is acknowledged once\n" +
			"every live holder has it, so it survives the loss of N-1 nodes.",
			&intValue{&cfg.replicas, 1, node.MaxReplicas}},
		{"min-members", "K", "Refuse reads and writes (\"ERROR cluster unavailable\") while this node cannot\n" +
			"confirm that it is part of K members, itself included; with K a majority,\n" +
			"only the larger side of a network partition answers. 0, the default, never refuses.",
			&intValue{&cfg.minMembers, 0, 1 << 16}},
		{"leave-timeout", "DURATION", "On SIGTERM the node hands its buckets to the other nodes before it\n" +
			"exits; this bounds how long that may take (1s to 1h).",
			&boundedDurationValue{&cfg.leaveTimeout, time.Second, time.Hour}},
		{"tombstone-grace", "DURATION", "How long deleted keys and dropped buckets are remembered, so that an\n" +
			"older copy merged later cannot bring them back (1m to 720h). A node cut\n" +
			"off from the others for longer than this may bring them back when it returns.",
			&boundedDurationValue{&cfg.tombstoneGrace, time.Minute, 720 * time.Hour}},
		{"max-clock-skew", "DURATION", "How far another node's clock may be from this one's (100ms to 1h, at\n" +
			"most a quarter of --tombstone-grace). A node further off is refused, and\n" +
			"logged; deletes are remembered for --tombstone-grace minus this.",
			&boundedDurationValue{&cfg.maxClockSkew, 100 * time.Millisecond, time.Hour}},
		{"rejoin-timeout", "DURATION", "A node restarted with --identity answers \"ERROR cluster unavailable\"\n" +
			"until it reaches one of the nodes it knew, or for this long when it has no\n" +
			"--join address (they may all be gone); then it serves on its own (0 to 1h).",
			&boundedDurationValue{&cfg.rejoinTimeout, 0, time.Hour}},
	}
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
any node serves any bucket. SIGINT or SIGTERM stops the node gracefully,
after telling the cluster it is leaving; a second signal stops it at once.

'dboutique genkey FILE' writes a new cluster key for --psk-file.

Every flag can also be set with the environment variable shown; a flag on
the command line wins over the environment.

Flags:
`)
	for _, s := range flagSpecs(&cfg) {
		def := s.value.String()
		if def == "" {
			def = "none"
		}
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

// listenValue is a host:port address.
type listenValue struct{ p *string }

func (v *listenValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v *listenValue) Set(s string) error {
	if _, _, err := net.SplitHostPort(s); err != nil {
		return errors.New("want host:port, such as 127.0.0.1:4040 or :4040")
	}
	*v.p = s
	return nil
}

type stringValue struct{ p *string }

func (v *stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v *stringValue) Set(s string) error { *v.p = s; return nil }

// nameValue is a node or cluster name.
type nameValue struct{ p *string }

func (v *nameValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v *nameValue) Set(s string) error {
	s = strings.TrimSpace(s)
	if err := ring.ValidName(s); err != nil {
		return fmt.Errorf("%w; want one word of printable characters, at most %d bytes, without ',' or '='", err, ring.MaxNameLen)
	}
	*v.p = s
	return nil
}

// listValue is a repeatable flag. The first Set replaces the default;
// later ones append. From the environment, the value is comma-separated.
type listValue struct {
	p     *[]string
	set   bool
	check func(string) error // nil: any non-empty item
}

func (v *listValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.Join(*v.p, ",")
}

func (v *listValue) Set(s string) error {
	var items []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		if v.check != nil {
			if err := v.check(item); err != nil {
				return err
			}
		}
		items = append(items, item)
	}
	if len(items) == 0 {
		return errors.New("want a value")
	}
	if !v.set {
		*v.p = nil
		v.set = true
	}
	*v.p = append(*v.p, items...)
	return nil
}

// boolValue is a switch: --mdns, --mdns=false, or in the environment
// true/false, 1/0, yes/no, on/off.
type boolValue struct{ p *bool }

func (v *boolValue) String() string {
	if v.p == nil || !*v.p {
		return "off"
	}
	return "on"
}

func (v *boolValue) IsBoolFlag() bool { return true }

func (v *boolValue) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes", "on":
		*v.p = true
	case "false", "0", "no", "off":
		*v.p = false
	default:
		return errors.New("want true or false")
	}
	return nil
}

// rangesValue is a letter-range table, checked when set.
type rangesValue struct{ p *string }

func (v *rangesValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v *rangesValue) Set(s string) error {
	r, err := ring.ParseRanges(s)
	if err != nil {
		return err
	}
	*v.p = r.String()
	return nil
}

// sizeValue is a byte count in [min, max], parsed by parseSize.
type sizeValue struct {
	p        *int
	min, max int
}

func (v *sizeValue) String() string {
	if v.p == nil {
		return ""
	}
	return formatSize(int64(*v.p))
}

func (v *sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	if n < int64(v.min) || n > int64(v.max) {
		return fmt.Errorf("%s is out of range: want %s to %s", formatSize(n), formatSize(int64(v.min)), formatSize(int64(v.max)))
	}
	*v.p = int(n)
	return nil
}

// intValue is a decimal integer in [min, max].
type intValue struct {
	p        *int
	min, max int
}

func (v *intValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return errors.New("want a whole number")
	}
	if n < v.min || n > v.max {
		return fmt.Errorf("%d is out of range: want %d to %d", n, v.min, v.max)
	}
	*v.p = n
	return nil
}

// durationValue is a time.Duration that is not negative.
type durationValue struct{ p *time.Duration }

func (v *durationValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return errors.New("want a duration such as 30s, 5m or 1h, or 0 for none")
	}
	if d < 0 {
		return errors.New("must not be negative")
	}
	*v.p = d
	return nil
}

// boundedDurationValue is a time.Duration in [min, max].
type boundedDurationValue struct {
	p        *time.Duration
	min, max time.Duration
}

func (v *boundedDurationValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v *boundedDurationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return errors.New("want a duration such as 3s or 1m")
	}
	if d < v.min || d > v.max {
		return fmt.Errorf("%v is out of range: want %v to %v", d, v.min, v.max)
	}
	*v.p = d
	return nil
}

// levelValue is one of the log levels the node offers.
type levelValue struct{ p *zapcore.Level }

func (v *levelValue) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.String()
}

func (v *levelValue) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		*v.p = zapcore.DebugLevel
	case "info":
		*v.p = zapcore.InfoLevel
	case "warn":
		*v.p = zapcore.WarnLevel
	case "error":
		*v.p = zapcore.ErrorLevel
	default:
		return errors.New("want debug, info, warn or error")
	}
	return nil
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
