// Command headroom measures how far below --maxmemory eviction must start
// for the process to stay under it: the measurement behind
// memlimit.DefaultThreshold. It writes -total bytes of -value-byte values
// under fresh keys, with the Go runtime's memory limit set to -limit
// (times -golimit; with -follow, less what the store holds outside the
// heap, as the binary does), and deletes the oldest keys whenever the
// meter reads above -threshold times -limit; then it reports the peak
// resident size (VmHWM). One configuration per process, since the peak
// is the process's (doc.go of node/memlimit has the results):
//
//	go build -o /tmp/headroom ./cmd/dboutique/internal/headroom
//	/tmp/headroom -threshold 0.75 -garbage 4096
//	/tmp/headroom -table   # thresholds 0.5 to 1, without and with garbage, in child processes
//
// This program's own executable takes 2 MB resident (RssFile, reported),
// against dboutique's 20, so its runtime and store share the whole of
// -limit.
//
// -data map is a bare map[string]string, as the experiment was first
// stated; -data store is node/store, as dboutique holds plain keys (256
// buckets, a delete leaves a tombstone that Collect removes, here every
// 4096 deletes). -meter store counts the store's footprint
// (memlimit.StoreMeter); -meter process adds what the runtime measured
// at the last collection and the store's memory off the heap
// (memlimit.ProcessMeter), as the binary does; -follow needs it.
// -garbage allocates that many bytes of short-lived garbage per write, as
// a server's request buffers would.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/dboutique/dboutique/node/memlimit"
	"github.com/dboutique/dboutique/node/store"
)

type config struct {
	limit, total      int64
	valueLen, garbage int
	threshold         float64
	goLimit           float64
	follow            bool
	data, meter       string
}

func main() {
	var cfg config
	var limit, total string
	var table bool
	flag.StringVar(&limit, "limit", "64mb", "maxmemory: the Go memory limit, and what the threshold is a fraction of")
	flag.StringVar(&total, "total", "1gb", "bytes of values to write")
	flag.IntVar(&cfg.valueLen, "value", 1024, "bytes per value")
	flag.Float64Var(&cfg.threshold, "threshold", memlimit.DefaultThreshold, "evict above this fraction of -limit")
	flag.Float64Var(&cfg.goLimit, "golimit", 1, "set the Go runtime's memory limit to this fraction of -limit")
	flag.BoolVar(&cfg.follow, "follow", true, "lower the Go runtime's memory limit by the store's memory off the heap (memlimit.RuntimeLimit, driven by -meter process), as the binary does")
	flag.StringVar(&cfg.data, "data", "store", "map (a map[string]string) or store (node/store)")
	flag.StringVar(&cfg.meter, "meter", "process", "store (the store's estimate) or process (the runtime's, at the last GC, and the store's growth)")
	flag.IntVar(&cfg.garbage, "garbage", 0, "bytes of short-lived garbage per write")
	flag.BoolVar(&table, "table", false, "run thresholds 0.5 to 1, without and with garbage, as the binary counts memory, in child processes, and print a table")
	flag.Parse()
	var err error
	if cfg.limit, err = memlimit.ParseSize(limit); err != nil {
		fail(err)
	}
	if cfg.total, err = memlimit.ParseSize(total); err != nil {
		fail(err)
	}
	if table {
		runTable(limit, total)
		return
	}
	fmt.Println(run(cfg))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "headroom:", err)
	os.Exit(2)
}

// runTable runs this program once per threshold and garbage, as the
// binary counts and limits memory (node/store, ProcessMeter, the runtime's
// limit following the store's tables), and prints its lines.
func runTable(limit, total string) {
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	for _, garbage := range []string{"0", "4096"} {
		for _, th := range []string{"0.5", "0.6", "0.7", "0.8", "0.9", "1"} {
			out, err := exec.Command(self, "-limit", limit, "-total", total, "-threshold", th,
				"-data", "store", "-meter", "process", "-garbage", garbage).CombinedOutput()
			if err != nil {
				fail(fmt.Errorf("%s: %w", out, err))
			}
			fmt.Print(string(out))
		}
	}
}

// data is what the experiment fills: a map or a store.
type data interface {
	put(key, value string)
	del(key string)
	footprint() memlimit.Footprint
}

type mapData struct {
	m  map[string]string
	fp memlimit.Footprint
}

func (d *mapData) put(k, v string) {
	d.m[k] = v
	d.fp.Bytes += int64(len(k) + len(v))
	d.fp.Entries++
}

func (d *mapData) del(k string) {
	d.fp.Bytes -= int64(len(k) + len(d.m[k]))
	d.fp.Entries--
	delete(d.m, k)
}

func (d *mapData) footprint() memlimit.Footprint { return d.fp }

// storeData holds plain keys as textproto does: in 256 buckets.
type storeData struct {
	s        *store.Store
	names    []string
	fp       memlimit.Footprint
	deletes  int
	valueLen int
}

func newStoreData(valueLen int) *storeData {
	d := &storeData{s: store.NewStore(), names: make([]string, 256), valueLen: valueLen}
	for i := range d.names {
		d.names[i] = "\x00kv:" + strconv.Itoa(i)
	}
	d.fp.Buckets = 256
	return d
}

func (d *storeData) bucket(k string) string {
	h := uint32(0)
	for i := range len(k) {
		h = h*31 + uint32(k[i])
	}
	return d.names[h%256]
}

func (d *storeData) put(k, v string) {
	if _, err := d.s.Execute(context.Background(), store.Op{Kind: store.KindPutCreate, Bucket: d.bucket(k), Key: k, Value: v}); err != nil {
		panic(err)
	}
	d.fp.Bytes += int64(len(k) + len(v))
	d.fp.Entries++
}

func (d *storeData) del(k string) {
	if _, err := d.s.Execute(context.Background(), store.Op{Kind: store.KindDelete, Bucket: d.bucket(k), Key: k}); err != nil {
		panic(err)
	}
	d.fp.Bytes -= int64(d.valueLen) // the value is gone; the key stays in its tombstone
	d.deletes++
	if d.deletes%4096 == 0 {
		n, _ := d.s.Collect(d.s.Clock().Now())
		d.fp.Entries -= int64(n)
		d.fp.Bytes -= int64(n * len(k))
	}
}

func (d *storeData) footprint() memlimit.Footprint {
	fp := d.fp
	fp.Maps = min(fp.Entries, 256)
	fp.OffHeap = d.s.OffHeap()
	return fp
}

func run(cfg config) string {
	budget := int64(float64(cfg.limit) * cfg.goLimit)
	var rl *memlimit.RuntimeLimit
	if cfg.follow {
		var err error
		if rl, _, err = memlimit.NewRuntimeLimit(memlimit.RuntimeLimitConfig{Budget: budget, Set: debug.SetMemoryLimit}); err != nil {
			fail(err)
		}
	} else {
		debug.SetMemoryLimit(budget)
	}
	var d data
	switch cfg.data {
	case "map":
		d = &mapData{m: make(map[string]string)}
	case "store":
		d = newStoreData(cfg.valueLen)
	default:
		fail(fmt.Errorf("unknown -data %q", cfg.data))
	}
	var meter memlimit.Meter
	switch cfg.meter {
	case "store":
		meter = memlimit.StoreMeter(d.footprint)
	case "process":
		meter = memlimit.ProcessMeter(d.footprint, rl)
	default:
		fail(fmt.Errorf("unknown -meter %q", cfg.meter))
	}
	g, err := memlimit.New(memlimit.Config{Limit: cfg.limit, Policy: memlimit.AllKeysRandom, Meter: meter, Threshold: cfg.threshold})
	if err != nil {
		fail(err)
	}
	buf := make([]byte, cfg.valueLen)
	var sink []byte
	start := time.Now()
	oldest, n, peakUsed := 0, 0, int64(0)
	for written := int64(0); written < cfg.total; written += int64(cfg.valueLen) {
		for i := range buf {
			buf[i] = byte(n + i)
		}
		d.put(key(n), string(buf)) // a value of its own, as from a request
		n++
		if cfg.garbage > 0 {
			sink = make([]byte, cfg.garbage) // dies at the next write
			sink[0] = 1
		}
		for g.Over() > 0 && oldest < n {
			d.del(key(oldest))
			oldest++
		}
		peakUsed = max(peakUsed, g.Used())
	}
	runtime.KeepAlive(sink)
	elapsed := time.Since(start)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status := procStatus()
	return fmt.Sprintf("data=%-5s meter=%-7s garbage=%-4d golimit=%-4v follow=%-5v threshold=%-4v limit=%s: VmHWM %s VmRSS %s RssFile %s (%.0f%% of the limit at peak); kept %d entries; peak used %.1f MiB; %d GCs; %v\n",
		cfg.data, cfg.meter, cfg.garbage, cfg.goLimit, cfg.follow, cfg.threshold, memlimit.FormatSize(cfg.limit),
		status["VmHWM"], status["VmRSS"], status["RssFile"], 100*float64(kb(status["VmHWM"]))*1024/float64(cfg.limit),
		n-oldest, float64(peakUsed)/(1<<20), ms.NumGC, elapsed.Round(time.Millisecond))
}

func key(i int) string { return fmt.Sprintf("key:%08d", i) }

// procStatus returns the fields of /proc/self/status.
func procStatus() map[string]string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		fail(err)
	}
	defer f.Close()
	m := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			m[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return m
}

// kb reads "1234 kB".
func kb(s string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(s, " kB"), 10, 64)
	return n
}
