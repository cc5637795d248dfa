package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
)

// defaultPushTimeout bounds a push when the caller gave no client, since
// http.DefaultClient would wait forever on a context without deadline.
const defaultPushTimeout = 30 * time.Second

// JobName is the Pushgateway job for an invoker: lower-cased
// "<namespace>-<invoker-kind>-<invoker-name>", as Stash names it, so alerts
// keyed on job keep matching. Backup, restore and repository metrics of one
// invoker share the job; their names differ, so pushes do not clash.
func JobName(c Common) string {
	return strings.ToLower(c.Namespace + "-" + c.InvokerKind + "-" + c.InvokerName)
}

// Grouping is the grouping key below the job: instance=<hostname>, so hosts
// of one target (e.g. StatefulSet replicas) each keep their own host metrics
// instead of replacing one another's. Each host's group then also holds its
// own copy of the session-level gauges (differing only in instance); query
// them with max/min by the invoker labels. Empty hostname means no extra key.
func Grouping(hostname string) map[string]string {
	if hostname == "" {
		return nil
	}
	return map[string]string{"instance": hostname}
}

// Pusher sends metrics to a Pushgateway with "add" (POST) semantics: only
// metrics with the same names in the job/grouping group are replaced.
type Pusher struct {
	URL      string // e.g. http://pushgateway:9091; user:password@ becomes basic auth
	Job      string // see JobName
	Client   *http.Client
	Grouping map[string]string // see Grouping
}

// Push sends g's metrics, bounded by ctx. Errors name the URL without
// credentials.
func (p *Pusher) Push(ctx context.Context, g prometheus.Gatherer) error {
	pu, where, err := p.pusher()
	if err != nil {
		return err
	}
	if err := pu.Gatherer(g).AddContext(ctx); err != nil {
		return fmt.Errorf("push metrics to %s (job %q): %w", where, p.Job, err)
	}
	return nil
}

// Delete removes the job's group: a deleted config's last values would
// otherwise stay in the Pushgateway, and keep its alerts firing, forever.
// It is bounded by the client's timeout.
func (p *Pusher) Delete() error {
	pu, where, err := p.pusher()
	if err != nil {
		return err
	}
	if err := pu.Delete(); err != nil {
		return fmt.Errorf("delete metrics group of job %q at %s: %w", p.Job, where, err)
	}
	return nil
}

// pusher is the push library's client for p, and the URL without
// credentials, for errors.
func (p *Pusher) pusher() (*push.Pusher, string, error) {
	raw := p.URL
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse errors quote the whole input, password included.
		return nil, "", errors.New("push metrics: invalid Pushgateway URL")
	}
	user := u.User
	// Keep credentials out of the URL the push library puts in its errors.
	u.User = nil
	where := u.String()
	if u.Host == "" {
		return nil, "", fmt.Errorf("push metrics to %s: no host in Pushgateway URL", where)
	}
	if p.Job == "" {
		return nil, "", fmt.Errorf("push metrics to %s: empty job name", where)
	}

	client := p.Client
	if client == nil {
		client = &http.Client{Timeout: defaultPushTimeout}
	}
	pu := push.New(where, p.Job).Client(client)
	if user != nil {
		pass, _ := user.Password()
		pu = pu.BasicAuth(user.Username(), pass)
	}
	for k, v := range p.Grouping {
		pu = pu.Grouping(k, v)
	}
	return pu, where, nil
}
