package metrics

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Store keeps the latest result per backup invoker, restore invoker and
// repository, so the agent's own /metrics endpoint serves them next to the
// Go and process metrics. It is safe for concurrent use.
//
// Results are keyed by the labels their session-level metrics carry (the
// Common labels; for repositories all repository labels), so a newer result
// replaces an older one and two entries never produce the same series.
type Store struct {
	mu     sync.Mutex
	latest map[string]samples
	reg    *prometheus.Registry
}

// NewStore returns an empty store.
func NewStore() *Store {
	s := &Store{latest: map[string]samples{}, reg: prometheus.NewRegistry()}
	s.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		storeCollector{s},
	)
	return s
}

// SetBackup records r, replacing the previous backup result of its invoker.
func (s *Store) SetBackup(r BackupResult) {
	s.set(labelKey("backup", r.Common.labels()), backupSamples(r))
}

// SetRestore records r, replacing the previous restore result of its invoker.
func (s *Store) SetRestore(r RestoreResult) {
	s.set(labelKey("restore", r.Common.labels()), restoreSamples(r))
}

// SetRepository records r, replacing the previous result for the same
// repository and invoker.
func (s *Store) SetRepository(r RepositoryResult) {
	s.set(labelKey("repository", repositoryLabels(r)), repositorySamples(r))
}

// SetVerification records r, replacing its invoker's last verification.
func (s *Store) SetVerification(r VerificationResult) {
	s.set(labelKey("verification", r.Common.labels()), verificationSamples(r))
}

// SetConfig records r, replacing its config's previous expectation.
func (s *Store) SetConfig(r ConfigResult) {
	s.set(labelKey("config", r.Common.labels()), configSamples(r))
}

// SetPITR records r, replacing the previous archive state of its invoker.
func (s *Store) SetPITR(r PITRResult) {
	s.set(labelKey("pitr", r.Common.labels()), pitrSamples(r))
}

// ForgetInvoker drops every result of one invoker: a deleted config's last
// values would otherwise stay, and keep its alerts firing.
func (s *Store) ForgetInvoker(kind, namespace, name string) {
	want := []string{fmt.Sprintf(",invoker_kind=%q", kind), fmt.Sprintf(",invoker_name=%q", name), fmt.Sprintf(",namespace=%q", namespace)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.latest {
		if !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(k, w) }) {
			delete(s.latest, k)
		}
	}
}

func (s *Store) set(key string, m samples) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latest[key] = m
}

// Gatherer returns the store's live registry: every Gather sees the latest
// results.
func (s *Store) Gatherer() prometheus.Gatherer { return s.reg }

// Handler serves the store in the Prometheus exposition format. It keeps
// serving what it can if one metric fails, so one bad entry does not blank
// the endpoint.
func (s *Store) Handler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// storeCollector hands the registry whatever the store holds at scrape time.
// Its Describe is empty, which makes it an unchecked collector: the set of
// metrics changes as results arrive.
type storeCollector struct{ s *Store }

func (storeCollector) Describe(chan<- *prometheus.Desc) {}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.Lock()
	all := make([]samples, 0, len(c.s.latest))
	for _, m := range c.s.latest {
		all = append(all, m)
	}
	c.s.mu.Unlock()
	// Send outside the lock: the registry reads ch concurrently.
	for _, m := range all {
		m.Collect(ch)
	}
}

// labelKey is a stable string form of kind plus the label set.
func labelKey(kind string, l prometheus.Labels) string {
	names := make([]string, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(kind)
	for _, n := range names {
		fmt.Fprintf(&b, ",%s=%q", n, l[n])
	}
	return b.String()
}
