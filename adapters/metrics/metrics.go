// Package metrics exposes the ledger's metrics in the Prometheus format
// (prometheus/client_golang). Every label is bounded and non-personal: route
// templates, methods, status codes, command names, outcomes, projection
// names, key-vault operations, job kinds, and webhook subscriptions' ids
// (made by the server, one per subscription); never a contact's or token's
// id, a URL, a workspace name or a value a user typed.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/contactledger/ledger/projections"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the ledger's collectors in a registry of its own (so that
// several ledgers in one process, as in tests, don't collide).
type Metrics struct {
	reg *prometheus.Registry

	requests       *prometheus.CounterVec
	requestLatency *prometheus.HistogramVec
	commands       *prometheus.CounterVec
	commandLatency *prometheus.HistogramVec
	appendLatency  *prometheus.HistogramVec
	vaultOps       *prometheus.CounterVec
	jobDone        *prometheus.GaugeVec
	jobTotal       *prometheus.GaugeVec
	jobRunning     *prometheus.GaugeVec
	retentionSkip  *prometheus.CounterVec

	webhookAttempts *prometheus.CounterVec
	webhookLatency  *prometheus.HistogramVec
}

// StatusFunc returns the projections' status, for the lag gauges.
type StatusFunc func(ctx context.Context) ([]projections.Status, error)

// New registers every collector; status, when set, feeds the projection gauges at each scrape.
func New(status StatusFunc) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_http_requests_total",
			Help: "HTTP requests by route template, method and status code."}, []string{"route", "method", "status"}),
		requestLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ledger_http_request_duration_seconds",
			Help: "HTTP request latency by route template, method and status code.", Buckets: prometheus.DefBuckets}, []string{"route", "method", "status"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_commands_total",
			Help: "Commands by name and outcome: ok, conflict (lost a race or a precondition), refused (the rules or the input forbid it), error."}, []string{"command", "outcome"}),
		commandLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ledger_command_duration_seconds",
			Help: "Command latency by name.", Buckets: prometheus.DefBuckets}, []string{"command"}),
		appendLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ledger_append_duration_seconds",
			Help: "Latency of appends to the log, by outcome.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"outcome"}),
		vaultOps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_key_vault_operations_total",
			Help: "Key-vault operations (create, unwrap, destroy, ...) by outcome."}, []string{"op", "outcome"}),
		jobDone: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ledger_job_items_done",
			Help: "Items (events, contacts) a job has done, by job kind and target; the latest job of each."}, []string{"kind", "target"}),
		jobTotal: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ledger_job_items_total",
			Help: "Items a job has to do, by job kind and target."}, []string{"kind", "target"}),
		jobRunning: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ledger_job_running",
			Help: "1 while a job of the kind and target runs in this process."}, []string{"kind", "target"}),
		retentionSkip: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_retention_skipped_total",
			Help: "Contacts past their retention in trash that retention sweeps left alone, by reason: contact_hold, workspace_hold."}, []string{"reason"}),
	}
	m.reg.MustRegister(m.requests, m.requestLatency, m.commands, m.commandLatency, m.appendLatency, m.vaultOps,
		m.jobDone, m.jobTotal, m.jobRunning, m.retentionSkip, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if status != nil {
		m.reg.MustRegister(&projectionCollector{status: status})
	}
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry returns the registry (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveRequest records one HTTP request; route is the route's template.
func (m *Metrics) ObserveRequest(method, route string, status int, d time.Duration) {
	s := strconv.Itoa(status)
	m.requests.WithLabelValues(route, method, s).Inc()
	m.requestLatency.WithLabelValues(route, method, s).Observe(d.Seconds())
}

// Outcome classifies a command's error: ok, conflict, refused or error.
func Outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, kernel.ErrConcurrency):
		return "conflict"
	case kernel.ErrorCode(err) != "":
		return "refused"
	}
	return "error"
}

// Command records one command.
func (m *Metrics) Command(name string, err error, d time.Duration) {
	m.commands.WithLabelValues(name, Outcome(err)).Inc()
	m.commandLatency.WithLabelValues(name).Observe(d.Seconds())
}

// Append records one append to the log.
func (m *Metrics) Append(d time.Duration, err error) {
	m.appendLatency.WithLabelValues(Outcome(err)).Observe(d.Seconds())
}

// RetentionSkipped records contacts a retention sweep skipped, by reason.
func (m *Metrics) RetentionSkipped(reason string, n int) {
	m.retentionSkip.WithLabelValues(reason).Add(float64(n))
}

// VaultOp records one key-vault operation.
func (m *Metrics) VaultOp(op string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.vaultOps.WithLabelValues(op, outcome).Inc()
}

// JobProgress records a job's progress: rebuilds report here, and so can
// any other long job (restores, imports) under its own kind.
func (m *Metrics) JobProgress(kind, target string, done, total int64, running bool) {
	m.jobDone.WithLabelValues(kind, target).Set(float64(done))
	m.jobTotal.WithLabelValues(kind, target).Set(float64(total))
	m.jobRunning.WithLabelValues(kind, target).Set(flag(running))
}

// Rebuild records a rebuild's progress (projections.Runner.Observe).
func (m *Metrics) Rebuild(j projections.RebuildJob) {
	m.JobProgress("rebuild", j.Projection, j.EventsDone, j.EventsTotal, j.State == projections.RebuildRunning)
}

var (
	lagEvents  = prometheus.NewDesc("ledger_projection_lag_events", "Events committed to the log and not yet applied by the projection.", []string{"projection"}, nil)
	lagSeconds = prometheus.NewDesc("ledger_projection_lag_seconds", "Age of the oldest event the projection has not applied yet.", []string{"projection"}, nil)
	rebuilding = prometheus.NewDesc("ledger_projection_rebuilding", "1 while the projection is being rebuilt.", []string{"projection"}, nil)
	failing    = prometheus.NewDesc("ledger_projection_failing", "1 from the projection's first failed batch until a batch commits again.", []string{"projection"}, nil)
)

// projectionCollector reads the projections' status at each scrape.
type projectionCollector struct{ status StatusFunc }

func (c *projectionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagEvents
	ch <- lagSeconds
	ch <- rebuilding
	ch <- failing
}

func (c *projectionCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sts, err := c.status(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(lagEvents, err)
		return
	}
	for _, st := range sts {
		if st.LagEvents >= 0 {
			ch <- prometheus.MustNewConstMetric(lagEvents, prometheus.GaugeValue, float64(st.LagEvents), st.Name)
		}
		ch <- prometheus.MustNewConstMetric(lagSeconds, prometheus.GaugeValue, st.LagSeconds, st.Name)
		ch <- prometheus.MustNewConstMetric(rebuilding, prometheus.GaugeValue, flag(st.State == projections.StateRebuilding), st.Name)
		ch <- prometheus.MustNewConstMetric(failing, prometheus.GaugeValue, flag(st.State == projections.StateFailed), st.Name)
	}
}

// Webhook metrics are labelled by subscription: its id is made by the
// server ("wh_<ULID>"), one per subscription, never a URL.
var (
	webhookLagEvents  = prometheus.NewDesc("ledger_webhook_lag_events", "Events the subscription will receive that are not delivered yet (after its checkpoint).", []string{"subscription"}, nil)
	webhookLagSeconds = prometheus.NewDesc("ledger_webhook_lag_seconds", "Age of the oldest event after the subscription's checkpoint.", []string{"subscription"}, nil)
	webhookPending    = prometheus.NewDesc("ledger_webhook_pending", "Events waiting for a retry, or queued behind one of the same contact.", []string{"subscription"}, nil)
	webhookEnabled    = prometheus.NewDesc("ledger_webhook_enabled", "1 while the subscription is enabled.", []string{"subscription"}, nil)
	webhookFailing    = prometheus.NewDesc("ledger_webhook_failing", "1 from a failed attempt until the next delivered one.", []string{"subscription"}, nil)
)

// flag is a gauge's value of a condition: 1 when it holds.
func flag(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// WebhookStatusFunc returns every subscription's status, for the webhook gauges.
type WebhookStatusFunc func(ctx context.Context) ([]ledger.WebhookStatus, error)

// WatchWebhooks registers the webhook gauges, read from status at each
// scrape, and the delivery counters.
func (m *Metrics) WatchWebhooks(status WebhookStatusFunc) {
	m.webhookAttempts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_webhook_deliveries_total",
		Help: "Webhook delivery attempts by subscription and outcome (delivered: 2xx; failed: anything else)."}, []string{"subscription", "outcome"})
	m.webhookLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ledger_webhook_delivery_duration_seconds",
		Help: "Latency of webhook delivery attempts, by subscription.", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 15}}, []string{"subscription"})
	m.reg.MustRegister(m.webhookAttempts, m.webhookLatency, &webhookCollector{status: status})
}

// Attempt records one webhook delivery attempt (delivery.Observer).
func (m *Metrics) Attempt(subscription, outcome string, d time.Duration) {
	if m.webhookAttempts == nil {
		return
	}
	m.webhookAttempts.WithLabelValues(subscription, outcome).Inc()
	m.webhookLatency.WithLabelValues(subscription).Observe(d.Seconds())
}

// webhookCollector reads the subscriptions' status at each scrape.
type webhookCollector struct{ status WebhookStatusFunc }

func (c *webhookCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{webhookLagEvents, webhookLagSeconds, webhookPending, webhookEnabled, webhookFailing} {
		ch <- d
	}
}

func (c *webhookCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sts, err := c.status(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(webhookLagEvents, err)
		return
	}
	for _, st := range sts {
		if st.LagEvents >= 0 {
			ch <- prometheus.MustNewConstMetric(webhookLagEvents, prometheus.GaugeValue, float64(st.LagEvents), st.ID)
		}
		ch <- prometheus.MustNewConstMetric(webhookLagSeconds, prometheus.GaugeValue, st.LagSeconds, st.ID)
		ch <- prometheus.MustNewConstMetric(webhookPending, prometheus.GaugeValue, float64(st.Progress.Pending), st.ID)
		ch <- prometheus.MustNewConstMetric(webhookEnabled, prometheus.GaugeValue, flag(st.Enabled), st.ID)
		ch <- prometheus.MustNewConstMetric(webhookFailing, prometheus.GaugeValue, flag(!st.Progress.FailingSince.IsZero()), st.ID)
	}
}
