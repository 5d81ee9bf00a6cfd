package textproto

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what a Server does, for Prometheus: requests by protocol,
// command and result, the time store requests take, and connections. It
// is a prometheus.Collector; register it with a registry of your own and
// pass it as Config.Metrics. One Metrics may serve several Servers.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	conns    prometheus.Gauge
	accepted prometheus.Counter

	// The children of the vectors, resolved once so that counting a
	// request costs no label lookup: [protocol][command][result].
	// The RESP commands are those of respCommands, in order, then "other".
	reqs [numProtos][][numResults]prometheus.Counter
	lat  [numProtos][]prometheus.Observer
}

// Label values.
const (
	protoText = iota
	protoRESP
	numProtos
)

const (
	resultOK = iota
	resultNotFound
	resultError
	numResults
)

func protoNames() [numProtos]string   { return [numProtos]string{"text", "resp"} }
func resultNames() [numResults]string { return [numResults]string{"ok", "not_found", "error"} }

// NewMetrics returns metrics that count nothing yet.
func NewMetrics() *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dboutique_client_requests_total",
			Help: "Client requests answered, by protocol (text, resp), command and result (ok, not_found, error).",
		}, []string{"proto", "command", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dboutique_client_request_seconds",
			Help: "Time the store requests of a client took, from running them to their replies " +
				"(pipelined requests run together count their batch's time each), by protocol and command.",
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 5},
		}, []string{"proto", "command"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dboutique_client_connections",
			Help: "Client connections open.",
		}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dboutique_client_connections_total",
			Help: "Client connections accepted.",
		}),
	}
	textNames := make([]string, numVerbs)
	for v, tc := range textCommands() {
		textNames[v] = strings.ToLower(tc.name)
	}
	textNames[verbUnknown] = "other"
	respNames := make([]string, 0, len(respCommands())+1)
	for _, c := range respCommands() {
		respNames = append(respNames, strings.ToLower(c.name))
	}
	respNames = append(respNames, "other")
	for p, names := range [numProtos][]string{protoText: textNames, protoRESP: respNames} {
		proto := protoNames()[p]
		m.reqs[p] = make([][numResults]prometheus.Counter, len(names))
		m.lat[p] = make([]prometheus.Observer, len(names))
		for i, name := range names {
			for r, result := range resultNames() {
				m.reqs[p][i][r] = m.requests.WithLabelValues(proto, name, result)
			}
			m.lat[p][i] = m.latency.WithLabelValues(proto, name)
		}
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.latency.Describe(ch)
	m.conns.Describe(ch)
	m.accepted.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.latency.Collect(ch)
	m.conns.Collect(ch)
	m.accepted.Collect(ch)
}

// request counts one request; a Metrics of nil counts nothing.
func (m *Metrics) request(proto, cmd, result int) {
	if m != nil {
		m.reqs[proto][cmd][result].Inc()
	}
}

// took records how long a store request took.
func (m *Metrics) took(proto, cmd int, d time.Duration) {
	if m != nil {
		m.lat[proto][cmd].Observe(d.Seconds())
	}
}

func (m *Metrics) opened() {
	if m != nil {
		m.conns.Inc()
		m.accepted.Inc()
	}
}

func (m *Metrics) closed() {
	if m != nil {
		m.conns.Dec()
	}
}
