package scale

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"

	"github.com/kubectl-stash/kubectl-stash/pkg/agent"
)

// sample is the API server's and etcd's counters at one moment.
type sample struct {
	at time.Time
	// requests counts resource requests by "VERB resource"; non-resource
	// requests (this scrape) are left out.
	requests  map[string]float64
	cpu       float64 // the API server's CPU seconds
	rss       float64 // the API server's resident bytes
	etcdPuts  float64 // keys etcd wrote or deleted
	etcdKnown bool
}

func (h *harness) scrape(ctx context.Context) sample {
	h.t.Helper()
	hc, err := rest.HTTPClientFor(h.env.Control.Admin)
	if err != nil {
		h.t.Fatal(err)
	}
	s := sample{at: time.Now(), requests: map[string]float64{}}
	api := h.families(ctx, hc, h.env.Control.URL+"/metrics")
	for _, m := range api["apiserver_request_total"].GetMetric() {
		l := labels(m)
		if l["resource"] == "" {
			continue
		}
		r := l["resource"]
		if l["subresource"] != "" {
			r += "/" + l["subresource"]
		}
		s.requests[l["verb"]+" "+r] += m.GetCounter().GetValue()
	}
	s.cpu = value(api["process_cpu_seconds_total"])
	s.rss = value(api["process_resident_memory_bytes"])
	etcd := h.families(ctx, http.DefaultClient, h.env.Control.EtcdURL+"/metrics")
	if p, ok := etcd["etcd_mvcc_put_total"]; ok {
		s.etcdPuts, s.etcdKnown = value(p)+value(etcd["etcd_mvcc_delete_total"]), true
	}
	return s
}

// families scrapes url; a loaded API server may cut a response short,
// so it tries a few times.
func (h *harness) families(ctx context.Context, hc *http.Client, url string) map[string]*dto.MetricFamily {
	h.t.Helper()
	var err error
	for range 5 {
		var fams map[string]*dto.MetricFamily
		if fams, err = scrapeOnce(ctx, hc, url); err == nil {
			return fams
		}
		time.Sleep(time.Second)
	}
	h.t.Fatalf("scrape %s: %v", url, err)
	return nil
}

func scrapeOnce(ctx context.Context, hc *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	return p.TextToMetricFamilies(resp.Body)
}

func labels(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// value sums a family's samples (counters and gauges).
func value(f *dto.MetricFamily) float64 {
	var v float64
	for _, m := range f.GetMetric() {
		v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return v
}

// diff is b minus a.
func diff(a, b sample) sample {
	d := sample{at: b.at, requests: map[string]float64{}, cpu: b.cpu - a.cpu, rss: b.rss, etcdPuts: b.etcdPuts - a.etcdPuts, etcdKnown: a.etcdKnown && b.etcdKnown}
	for k, v := range b.requests {
		if n := v - a.requests[k]; n > 0 {
			d.requests[k] = n
		}
	}
	return d
}

func isWrite(key string) bool {
	verb, _, _ := strings.Cut(key, " ")
	switch verb {
	case "CREATE", "UPDATE", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY", "POST", "PUT":
		return true
	}
	return false
}

func isRead(key string) bool {
	verb, _, _ := strings.Cut(key, " ")
	return verb == "GET" || verb == "LIST"
}

// idleResult is what the idle agents added, per second, over the API
// server alone.
type idleResult struct {
	agents                 int
	window                 time.Duration
	byKey                  map[string]float64 // requests/s by "VERB resource"
	reads, writes, watches float64            // requests/s
	etcdWrites             float64            // keys/s; -1 unknown
	cpu                    float64            // cores
	apiRSS, baseRSS        float64            // bytes
	agentRSS               int64              // bytes, summed
}

func measureIdle(agents int, b0, b1, s0, s1 sample, agentRSS int64) *idleResult {
	base, load := diff(b0, b1), diff(s0, s1)
	bs, ls := b1.at.Sub(b0.at).Seconds(), s1.at.Sub(s0.at).Seconds()
	r := &idleResult{agents: agents, window: s1.at.Sub(s0.at), byKey: map[string]float64{}, apiRSS: s1.rss, baseRSS: b1.rss, agentRSS: agentRSS, etcdWrites: -1}
	keys := map[string]bool{}
	for k := range base.requests {
		keys[k] = true
	}
	for k := range load.requests {
		keys[k] = true
	}
	for k := range keys {
		v := max(load.requests[k]/ls-base.requests[k]/bs, 0)
		if v == 0 {
			continue
		}
		r.byKey[k] = v
		switch {
		case isRead(k):
			r.reads += v
		case isWrite(k):
			r.writes += v
		case strings.HasPrefix(k, "WATCH"):
			r.watches += v
		}
	}
	r.cpu = load.cpu/ls - base.cpu/bs
	if load.etcdKnown && base.etcdKnown {
		r.etcdWrites = max(load.etcdPuts/ls-base.etcdPuts/bs, 0)
	}
	return r
}

func (r *idleResult) breakdown() string {
	keys := make([]string, 0, len(r.byKey))
	for k := range r.byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if v := r.byKey[k] / float64(r.agents); v >= 0.00005 { // the rest is the API server's own
			fmt.Fprintf(&b, "  %-40s %8.4f/s per agent\n", k, v)
		}
	}
	return b.String()
}

func (r *idleResult) String() string {
	n := float64(r.agents)
	return fmt.Sprintf("%d idle agents over %s, added to the API server alone: %.3f requests/s (%.4f per agent), reads %.2f per agent-minute, writes %.4f per agent-second, etcd writes %.2f/s, CPU %.2f%% of a core, RSS %s (alone %s); the agents' RSS %s (%s each)\n%s",
		r.agents, r.window.Round(time.Second), r.reads+r.writes+r.watches, (r.reads+r.writes+r.watches)/n, r.reads/n*60, r.writes/n, r.etcdWrites, r.cpu*100,
		mib(r.apiRSS), mib(r.baseRSS), mib(float64(r.agentRSS)), mib(float64(r.agentRSS)/n), r.breakdown())
}

func mib(b float64) string { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }

const (
	scaleBegin = "<!-- section:scale:begin: written by make bench-scale -->"
	scaleEnd   = "<!-- section:scale:end -->"
)

// writeReport puts the scale section into the report at path, in place of
// the old one (or before the hand-written notes).
func writeReport(path string, set settings, idle *idleResult, slot *slotResult) error {
	n := float64(idle.agents)
	renew := agent.DefaultLeaseDuration * 2 / 3 // the agent's renewPeriod
	var w strings.Builder
	md := func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }
	md("%s", scaleBegin)
	md("## A thousand databases: what idle agents cost the API server")
	md("")
	md("%d agents, each with its own AppBinding, Secret and BackupConfiguration, in one namespace on the real", idle.agents)
	md("kube-apiserver (with etcd and RBAC), idle for %s, from the API server's own `apiserver_request_total`,", idle.window.Round(time.Second))
	md("minus what it did alone for %s before they started. Written by `make bench-scale` on %s.", set.baseline, time.Now().UTC().Format("2006-01-02"))
	md("")
	md("| figure | total | per agent | bound |")
	md("|---|---|---|---|")
	md("| API requests | %.2f/s | %.4f/s | |", idle.reads+idle.writes+idle.watches, (idle.reads+idle.writes+idle.watches)/n)
	md("| GET and LIST (polling) | %.2f/min | %.2f/min | at most 1/min |", idle.reads*60, idle.reads/n*60)
	md("| writes (Lease renewals included) | %.3f/s | %.4f/s (one per %.1f s) | at most 1 per 10 s |", idle.writes, idle.writes/n, n/max(idle.writes, 1e-9))
	if idle.etcdWrites >= 0 {
		md("| etcd writes (keys put or deleted) | %.3f/s | %.4f/s | |", idle.etcdWrites, idle.etcdWrites/n)
	}
	md("| API server CPU | %.2f%% of a core | %.3f%% | under 2%% of a core for 100 |", idle.cpu*100, idle.cpu*100/n)
	md("| API server RSS | %s (alone: %s) | | |", mib(idle.apiRSS), mib(idle.baseRSS))
	md("| agents' RSS, summed | %s | %s | |", mib(float64(idle.agentRSS)), mib(float64(idle.agentRSS)/n))
	md("")
	md("By verb and resource, per agent:")
	md("")
	md("```")
	md("%s```", idle.breakdown())
	md("")
	central := 1 / renew.Seconds()
	md("One central controller serving the same %d configs would hold 4 watches instead of %d and renew one Lease:", idle.agents, 4*idle.agents)
	md("at this Lease timing %.3f writes/s against the agents' %.3f (%.0fx), and, at the CPU each request cost here,", central, idle.writes, idle.writes/central)
	if idle.writes > 0 {
		md("about %.3f%% of a core against %.2f%%.", idle.cpu*100*central/(idle.reads+idle.writes), idle.cpu*100)
	}
	md("The agents' cost grows with the number of databases; the central controller's does not. Both stay")
	md("small: at these figures a thousand idle agents would add about %.0f writes/s and %.0f%% of a core.", idle.writes/n*1000, idle.cpu*100/n*1000)
	if slot != nil {
		md("")
		md("### All due in one slot")
		md("")
		md("Every config then had the same hourly slot (%s): %d configs, %d sessions, %d succeeded, %d restic snapshots,", slot.slot.UTC().Format("15:04"), slot.configs, slot.sessions, slot.succeeded, slot.snapshots)
		md("run twice: %d. The slot settled (the last session completed) **%s** after it. All configs share one repository,", len(slot.twice), slot.settle)
		md("and each session's retention (`restic forget`) holds it exclusively in turn, queued on the Repository's")
		md("Lease (decision 61); every agent dumps the same small MariaDB on this 2-core machine. So the settle time is the")
		md("shared repository's and the CPU's, not the API server's: over the %s from the slot to the end it served", slot.window.Round(time.Second))
		md("%.1f requests/s (%.1f writes/s), at %.2f cores on average and %.2f at its peak (10 s windows).", slot.requests, slot.writes, slot.meanCPU, slot.peakCPU)
	}
	md("%s", scaleEnd)
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc := string(old)
	section := w.String()
	i, j := strings.Index(doc, scaleBegin), strings.Index(doc, scaleEnd)
	switch {
	case i >= 0 && j > i:
		doc = doc[:i] + strings.TrimSuffix(section, "\n") + doc[j+len(scaleEnd):]
	case strings.Contains(doc, "<!-- notes:begin"):
		k := strings.Index(doc, "<!-- notes:begin")
		doc = doc[:k] + section + "\n" + doc[k:]
	default:
		doc += "\n" + section
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}
