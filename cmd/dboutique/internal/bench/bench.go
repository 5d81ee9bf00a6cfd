package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const usageHead = `Usage: dboutique bench [flags]

Drives a server with load from --clients connections and reports throughput
and latency percentiles. Keys are "key:<n>", values --value-size bytes of 'x'.
A request's latency runs from the write of its pipeline batch to its reply.
Error replies are counted and the run goes on; a connection failure stops it
(exit code 1). SIGINT stops it early and reports what was done.

Flags:
`

// newFlags returns the flag set of "dboutique bench", writing into cfg
// and format.
func newFlags(cfg *config, format *string) *flag.FlagSet {
	fs := flag.NewFlagSet("dboutique bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and help are printed by Main
	fs.StringVar(&cfg.addr, "addr", cfg.addr, "`host:port` of the server")
	fs.StringVar(&cfg.proto, "proto", cfg.proto, "protocol: resp or text")
	fs.IntVar(&cfg.clients, "clients", cfg.clients, "connections, each driven by its own goroutine")
	fs.Int64Var(&cfg.requests, "requests", cfg.requests, "total requests, shared by the clients")
	fs.DurationVar(&cfg.duration, "duration", cfg.duration, "when above 0, run this long instead of counting requests")
	fs.IntVar(&cfg.pipeline, "pipeline", cfg.pipeline, "requests each client writes at once before reading their replies")
	fs.Int64Var(&cfg.keyspace, "keyspace", cfg.keyspace, "number of keys: key:0 to key:K-1, picked at random")
	fs.BoolVar(&cfg.sequential, "sequential", cfg.sequential, "take keys in order from a shared counter (wrapping at --keyspace):\n--requests K writes every key once")
	fs.IntVar(&cfg.valueSize, "value-size", cfg.valueSize, "value size in `bytes`")
	fs.StringVar(&cfg.workload, "workload", cfg.workload, "get, put or mixed")
	fs.Float64Var(&cfg.getRatio, "get-ratio", cfg.getRatio, "share of gets in the mixed workload, 0 to 1")
	fs.StringVar(&cfg.typ, "type", cfg.typ, "hash: HGET/HSET (RESP) or GET/PUT (text) in buckets;\nstring: GET/SET of plain keys (RESP only)")
	fs.IntVar(&cfg.buckets, "buckets", cfg.buckets, "buckets to spread the keys over, picked at random per request;\nnamed --bucket when 1, else <bucket>:0 to <bucket>:N-1.\nThe text protocol creates them first")
	fs.StringVar(&cfg.bucket, "bucket", cfg.bucket, "bucket `name`, or prefix of the names with --buckets")
	fs.StringVar(&cfg.password, "password", cfg.password, "sent with AUTH on each connection before the run")
	fs.DurationVar(&cfg.progress, "progress", cfg.progress, "interval of the progress line on stderr; 0 turns it off")
	fs.StringVar(format, "format", *format, "report format: text, or json for one JSON object on one line")
	return fs
}

// writeUsage prints the help of "dboutique bench" to w.
func writeUsage(w io.Writer) {
	cfg := defaultConfig()
	format := "text"
	fs := newFlags(&cfg, &format)
	var b strings.Builder
	b.WriteString(usageHead)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(&b, " %s", name)
		}
		b.WriteString("\n\t" + strings.ReplaceAll(usage, "\n", "\n\t"))
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
		b.WriteString("\n")
	})
	io.WriteString(w, b.String())
}

// Main is "dboutique bench ARGS": it returns the exit code, 0 after a
// run (error replies included), 1 when the run failed, 2 for bad flags.
// Help goes to stdout, progress and errors to stderr. The first value on
// sigs stops the run early.
func Main(args []string, stdout, stderr io.Writer, sigs <-chan os.Signal) int {
	cfg := defaultConfig()
	format := "text"
	fs := newFlags(&cfg, &format)
	usageErr := func(err error) int {
		fmt.Fprintf(stderr, "dboutique bench: %v\nRun 'dboutique bench --help' for the flags.\n", err)
		return 2
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		writeUsage(stdout)
		return 0
	} else if err != nil {
		return usageErr(err)
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if format != "text" && format != "json" {
		return usageErr(fmt.Errorf("--format %q: want text or json", format))
	}
	cfg.progressOut = stderr
	if f, ok := stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			cfg.progressTTY = true
		}
	}
	if err := cfg.validate(); err != nil {
		return usageErr(errors.New(strings.TrimPrefix(err.Error(), errConfig.Error()+": ")))
	}

	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { // turns the first signal into a cancel; ends with the run
		defer close(watched)
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	res, err := runLoad(ctx, cfg)
	cancel()
	<-watched
	if err != nil {
		fmt.Fprintf(stderr, "dboutique bench: %v\n", err)
		return 1
	}
	if format == "json" {
		err = writeJSON(stdout, &cfg, res)
	} else {
		err = writeText(stdout, &cfg, res)
	}
	if err != nil {
		fmt.Fprintf(stderr, "dboutique bench: %v\n", err)
		return 1
	}
	return 0
}

// jsonReport is the --format json report, one object on one line.
type jsonReport struct {
	Proto    string  `json:"proto"`
	Type     string  `json:"type"`
	Workload string  `json:"workload"`
	Clients  int     `json:"clients"`
	Pipeline int     `json:"pipeline"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50Ms    float64 `json:"p50_ms"`
	P90Ms    float64 `json:"p90_ms"`
	P99Ms    float64 `json:"p99_ms"`
	P999Ms   float64 `json:"p999_ms"`
	MaxMs    float64 `json:"max_ms"`
}

func writeJSON(w io.Writer, cfg *config, res *result) error {
	return json.NewEncoder(w).Encode(jsonReport{
		Proto:    cfg.proto,
		Type:     cfg.typ,
		Workload: cfg.workload,
		Clients:  cfg.clients,
		Pipeline: cfg.pipeline,
		Requests: res.requests,
		Errors:   res.errors,
		Seconds:  res.elapsed.Seconds(),
		RPS:      res.rps(),
		P50Ms:    res.percentileMs(50),
		P90Ms:    res.percentileMs(90),
		P99Ms:    res.percentileMs(99),
		P999Ms:   res.percentileMs(99.9),
		MaxMs:    res.maxMs(),
	})
}

func writeText(w io.Writer, cfg *config, res *result) error {
	var b strings.Builder
	workload := cfg.workload
	if workload == workloadMixed {
		workload = fmt.Sprintf("mixed, %.0f%% gets", cfg.getRatio*100)
	}
	keys := "random"
	if cfg.sequential {
		keys = "sequential"
	}
	where := ""
	if cfg.typ == typeHash {
		where = fmt.Sprintf(" in %d bucket(s)", cfg.buckets)
	}
	fmt.Fprintf(&b, "%s %s on %s: %s; %d clients, pipeline %d; %d %s keys%s, %d-byte values\n",
		cfg.proto, cfg.typ, cfg.addr, workload, cfg.clients, cfg.pipeline, cfg.keyspace, keys, where, cfg.valueSize)
	fmt.Fprintf(&b, "requests  %d (%d gets, %d puts) in %.3f s: %.0f req/s\n",
		res.requests, res.gets, res.puts, res.elapsed.Seconds(), res.rps())
	fmt.Fprintf(&b, "errors    %d", res.errors)
	if res.firstErr != "" {
		fmt.Fprintf(&b, " (for example: %s)", res.firstErr)
	}
	fmt.Fprintf(&b, "\nlatency   p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n",
		res.percentileMs(50), res.percentileMs(90), res.percentileMs(99), res.percentileMs(99.9), res.maxMs())
	_, err := io.WriteString(w, b.String())
	return err
}
