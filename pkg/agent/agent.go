// Package agent is the per-database agent: it watches its namespace for the
// BackupConfigurations, BackupSessions and RestoreSessions of one AppBinding,
// schedules backups, and runs sessions. Only the Lease holder acts.
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/kubectl-stash/kubectl-stash/pkg/agent/election"
	"github.com/kubectl-stash/kubectl-stash/pkg/agent/lifecycle"
	"github.com/kubectl-stash/kubectl-stash/pkg/agent/schedule"
	"github.com/kubectl-stash/kubectl-stash/pkg/apihealth"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/client"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/metrics"
)

// Config is the agent's settings, from flags.
type Config struct {
	Namespace   string
	AppBinding  string
	ScratchDir  string
	Listen      string
	LeaseName   string
	PodName     string
	Pushgateway string
	ResticBin   string
	// ProgressEvery bounds how often progress is written to a status.
	ProgressEvery time.Duration
	// LeaseDuration of the leader Lease: a crashed leader is replaced
	// after it; the leader renews every two thirds of it (decision 60).
	LeaseDuration time.Duration
	// SessionLease is how long a running session's heartbeat may be still
	// before another agent settles it as an orphan; it beats every fifth.
	SessionLease time.Duration
	// BackendTimeout stops restic when the backend keeps failing this long.
	BackendTimeout time.Duration
	// StallTimeout stops a backup or restore stream that has not moved
	// for this long while its processes live; 0 disables.
	StallTimeout time.Duration
	// SessionTimeout bounds a session whose spec.timeOut is not set; 0
	// means no limit.
	SessionTimeout time.Duration
	// ShutdownGrace is how long running sessions may go on after SIGTERM
	// before they are stopped and marked Failed; keep it under the pod's
	// terminationGracePeriodSeconds.
	ShutdownGrace time.Duration
	// RestoreConnections is how many client connections load a restore's
	// tables at once, 0 to follow the target server's CPUs; RestoreSpool bounds the bytes of the dump waiting in
	// ScratchDir for a free connection.
	RestoreConnections int
	RestoreSpool       int64
	// RestoreKeepIndexes loads InnoDB tables with their secondary keys in
	// place, instead of adding them after the data (sqlload.DeferIndexes).
	RestoreKeepIndexes bool
	// RestoreWholeTables loads each table on one connection, instead of
	// spreading a large table's INSERTs over them (sqlload.SplitTables).
	RestoreWholeTables bool
	// HookExecPod is the database's Pod, where exec hooks run; empty: the
	// user did not opt in, and exec hooks are refused.
	HookExecPod string
	// VerifyServerArgs are extra mariadbd options for the scratch server
	// verifications restore into (to match the source's settings).
	VerifyServerArgs []string
	// Self is the agent's own binary: backups run mysqldump through its
	// dump-tee command, which appends the dump's manifest. Empty: no manifest.
	Self string
}

// Agent runs one database's backups.
type Agent struct {
	cfg      Config
	kube     *client.Core // Secrets, Events, the Lease
	stash    *client.Stash
	log      *slog.Logger
	clock    func() time.Time
	identity string
	metrics  *metrics.Store
	api      *apihealth.Tracker // does the API server answer?
	rc       *rest.Config       // for exec hooks
	// The shared session lifecycle, one per session kind.
	backups  *lifecycle.Lifecycle[*stashv1beta1.BackupSession]
	restores *lifecycle.Lifecycle[*stashv1beta1.RestoreSession]
	verifies *lifecycle.Lifecycle[*stashv1beta1.VerificationSession]

	// workCtx is what sessions run under: it outlives a lost Lease (a
	// running backup finishes and writes its status) and ends only when
	// the agent stops, after the shutdown grace period.
	workCtx context.Context
	work    sync.WaitGroup
	// archiving counts the binlog archives: they end with the term, after
	// their last commit, and the agent waits for them before it exits.
	archiving sync.WaitGroup
	// archiveDone is each config's newest archive's end, across terms; guarded by mu.
	archiveDone map[string]chan struct{}

	mu       sync.Mutex
	t        *term
	running  map[string]string // config (or "restore/"+name) -> running session
	ready    bool
	draining bool
	// repoLocks holds a lock per repository URL for work under the
	// Repository's Lease: a channel with room for one, so a waiter can
	// give up when its context ends.
	repoLocks map[string]chan struct{}
	// when each repository's stats were last read, by restic URL.
	repos map[string]repoStats
	// locked marks repositories where a restic run was cut short and may
	// have left its lock (it could not remove it with the backend down).
	locked map[string]bool
	// maxAge is each config's backup and verification max age as last pushed.
	maxAge map[string]configAges
}

// markLocked notes that a run against url may have left a stale lock.
func (a *Agent) markLocked(url string, v bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if v {
		a.locked[url] = true
	} else {
		delete(a.locked, url)
	}
}

func (a *Agent) mayBeLocked(url string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.locked[url]
}

// The leader renews every two thirds of the Lease (30 s of 45), retries a
// failed renewal every 2 s, and gives up at eight ninths (40 s), before a
// follower may take over at the full duration (decision 60).
func renewPeriod(lease time.Duration) time.Duration   { return lease * 2 / 3 }
func renewDeadline(lease time.Duration) time.Duration { return lease * 8 / 9 }

// elector campaigns for the Lease name in namespace as this agent, with
// the timings of its leader election.
func (a *Agent) elector(namespace, name string) *election.Elector {
	return &election.Elector{
		Leases: a.kube.Leases(namespace), Namespace: namespace, Name: name, Identity: a.identity,
		LeaseDuration: a.cfg.LeaseDuration,
		RenewDeadline: renewDeadline(a.cfg.LeaseDuration),
		RenewPeriod:   renewPeriod(a.cfg.LeaseDuration),
		RetryPeriod:   min(2*time.Second, a.cfg.LeaseDuration/7),
		Log:           a.log,
	}
}

// repoStats are a repository's size and snapshot count as last known.
type repoStats struct {
	at    time.Time // when restic stats last read them; zero: never
	size  uint64
	count int
}

// nextStats returns the stats after a backup that added one snapshot of
// added bytes: read afresh by read() when due (never read, older than
// statsEvery, or retention removed snapshots), else counted forward.
// Counting forward is exact unless something else writes to the
// repository, and then only until the next read.
func (a *Agent) nextStats(url string, added uint64, removed bool, read func() (uint64, int, error)) (repoStats, error) {
	a.mu.Lock()
	st, ok := a.repos[url]
	a.mu.Unlock()
	if !ok || removed || a.clock().Sub(st.at) >= statsEvery {
		size, count, err := read()
		if err != nil {
			return repoStats{}, err
		}
		st = repoStats{at: a.clock(), size: size, count: count}
	} else {
		st.size += added
		st.count++
	}
	a.mu.Lock()
	a.repos[url] = st
	a.mu.Unlock()
	return st, nil
}

// term is the state of one leadership term: caches, queue and scheduler
// are built when the Lease is won and dropped when it is lost.
type term struct {
	configs  cache.Indexer
	sessions cache.Indexer
	restores cache.Indexer
	verifies cache.Indexer
	queue    workqueue.TypedRateLimitingInterface[string]
	sched    *schedule.Scheduler
	// sightings of other agents' Running sessions, used only by the
	// queue's worker (recoverOrphans, syncSession).
	sightings *lifecycle.Sightings
	// archives are the running binlog archives, by config; guarded by a.mu.
	archives map[string]*archiveHandle
}

// cur is the current (or last) term.
func (a *Agent) cur() *term {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.t
}

// ErrShutdown is the cause of sessions stopped because the agent was
// asked to stop (SIGTERM) and its grace period ended.
var ErrShutdown = errors.New("the agent was stopped (SIGTERM) and its shutdown grace period ended")

// New builds an agent from a rest config.
func New(cfg Config, rc *rest.Config, log *slog.Logger) (*Agent, error) {
	if cfg.Namespace == "" || cfg.AppBinding == "" {
		return nil, fmt.Errorf("the agent needs a namespace (POD_NAMESPACE or --namespace) and --appbinding")
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 3 * time.Second
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.SessionLease <= 0 {
		cfg.SessionLease = DefaultSessionLease
	}
	if cfg.ShutdownGrace < 0 {
		cfg.ShutdownGrace = 0
	}
	if cfg.RestoreConnections < 0 {
		cfg.RestoreConnections = 1
	}
	if cfg.LeaseName == "" {
		// The rendered Deployment passes the same name; this is for agents run by hand.
		cfg.LeaseName = contract.AgentName(cfg.AppBinding)
	}
	// Readiness follows whether the API server answers this agent. The
	// Lease renewals keep the answer fresh (a little longer than their
	// period), so an idle agent's probes add no request.
	api := apihealth.New(time.Now, renewPeriod(cfg.LeaseDuration)+cfg.LeaseDuration/9)
	rc = rest.CopyConfig(rc)
	rc.Wrap(api.Wrap)
	kube, err := client.NewCore(rc)
	if err != nil {
		return nil, err
	}
	api.SetProbe(kube.Ping)
	st, err := client.NewStash(rc)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	pod := cfg.PodName
	if pod == "" {
		pod = "stash-agent"
	}
	a := &Agent{
		cfg: cfg, kube: kube, stash: st, log: log, clock: time.Now, api: api, rc: rc,
		identity:  pod + "_" + hex.EncodeToString(b),
		metrics:   metrics.NewStore(),
		running:   map[string]string{},
		repos:     map[string]repoStats{},
		repoLocks: map[string]chan struct{}{},
		locked:    map[string]bool{},
		maxAge:    map[string]configAges{},
		workCtx:   context.Background(),
	}
	a.backups = &lifecycle.Lifecycle[*stashv1beta1.BackupSession]{Kind: a.backupKind(), Identity: a.identity, Clock: a.clock, Lease: cfg.SessionLease, Log: log}
	a.restores = &lifecycle.Lifecycle[*stashv1beta1.RestoreSession]{Kind: a.restoreKind(), Identity: a.identity, Clock: a.clock, Lease: cfg.SessionLease, Log: log}
	a.verifies = &lifecycle.Lifecycle[*stashv1beta1.VerificationSession]{Kind: a.verifyKind(), Identity: a.identity, Clock: a.clock, Lease: cfg.SessionLease, Log: log}
	return a, nil
}

// Run serves health and metrics, then campaigns for the Lease and, while
// leading, schedules and runs sessions. When ctx ends (SIGTERM) it claims
// nothing new, lets running sessions go on for the shutdown grace period,
// then stops them (each writes its Failed status; restic removes its lock)
// and releases the Lease.
func (a *Agent) Run(ctx context.Context) error {
	workCtx, stopWork := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopWork(nil)
	a.workCtx = workCtx
	leCtx, stopLeading := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLeading()
	go func() {
		select {
		case <-ctx.Done():
		case <-leCtx.Done():
			return
		}
		a.drain(a.cfg.ShutdownGrace)
		stopWork(ErrShutdown)
		a.work.Wait()
		stopLeading()
	}()

	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.Listen, err)
	}
	srv := &http.Server{Handler: a.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	a.log.Info("agent starting", "namespace", a.cfg.Namespace, "appbinding", a.cfg.AppBinding, "identity", a.identity, "listen", ln.Addr().String())

	le := a.elector(a.cfg.Namespace, a.cfg.LeaseName)
	lead := func(ctx context.Context) {
		a.log.Info("leading", "lease", a.cfg.LeaseName)
		if err := a.lead(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("agent stopped leading with an error", "err", err)
		}
		a.log.Info("stopped leading", "lease", a.cfg.LeaseName)
	}
	a.setReady(true) // serving; leadership is not needed to be ready
	for leCtx.Err() == nil {
		le.Run(leCtx, lead) // returns when the term ends; campaign again
		// A term that ended at once (lead failed) must not spin.
		select {
		case <-leCtx.Done():
		case <-time.After(le.RetryPeriod):
		}
	}
	a.work.Wait()
	a.archiving.Wait()
	a.log.Info("agent stopped")
	return nil
}

// drain stops claiming sessions and waits, at most grace, for the running
// ones to end.
func (a *Agent) drain(grace time.Duration) {
	a.mu.Lock()
	a.draining = true
	n := len(a.running)
	a.mu.Unlock()
	if n == 0 {
		return
	}
	a.log.Info("stopping: running sessions may finish within the grace period", "running", n, "grace", grace.String())
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, grace, true, func(context.Context) (bool, error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		n = len(a.running)
		return n == 0, nil
	})
	if err != nil {
		a.log.Info("stopping: the grace period ended; stopping running sessions", "running", n)
	}
}

func (a *Agent) setReady(v bool) {
	a.mu.Lock()
	a.ready = v
	a.mu.Unlock()
}

func (a *Agent) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", a.metrics.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		ok := a.ready
		a.mu.Unlock()
		if !ok {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		// Unready, not dead: liveness stays up, so a backup running while
		// the API server is away is never killed.
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := a.api.Ready(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	return mux
}

// lead runs the informers, the scheduler and the worker until ctx ends.
func (a *Agent) lead(ctx context.Context) error {
	ns := a.cfg.Namespace
	bcInf := newInformer(a.stash.BackupConfigurations(ns), &stashv1beta1.BackupConfiguration{})
	bsInf := newInformer(a.stash.BackupSessions(ns), &stashv1beta1.BackupSession{})
	rsInf := newInformer(a.stash.RestoreSessions(ns), &stashv1beta1.RestoreSession{})
	// Verifications are newer than the other kinds: a cluster whose CRDs
	// or Role predate them (no `kubectl stash install` since) still gets
	// its backups and restores, and the agent says what is missing.
	var vsInf cache.SharedIndexInformer
	if _, err := a.stash.VerificationSessions(ns).List(ctx, metav1.ListOptions{Limit: 1}); apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
		a.log.Warn("verifications are off: the VerificationSession CRD is not installed, or the agent's Role predates it; run `kubectl stash install` and re-apply the agent (`kubectl stash agent apply`)", "err", err.Error())
	} else {
		vsInf = newInformer(a.stash.VerificationSessions(ns), &stashv1beta1.VerificationSession{})
	}
	verifies := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	if vsInf != nil {
		verifies = vsInf.GetIndexer()
	}
	t := &term{configs: bcInf.GetIndexer(), sessions: bsInf.GetIndexer(), restores: rsInf.GetIndexer(), verifies: verifies, sightings: lifecycle.NewSightings(),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
	enq := func(prefix string) cache.ResourceEventHandlerFuncs {
		add := func(obj any) {
			if k, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
				t.queue.Add(prefix + k)
			}
		}
		return cache.ResourceEventHandlerFuncs{
			AddFunc:    add,
			UpdateFunc: func(_, n any) { add(n) },
			DeleteFunc: func(obj any) {
				if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
					t.queue.Add(prefix + k)
				}
			},
		}
	}
	_, _ = bcInf.AddEventHandler(enq("bc/"))
	_, _ = bsInf.AddEventHandler(enq("bs/"))
	_, _ = rsInf.AddEventHandler(enq("rs/"))
	synced := []cache.InformerSynced{bcInf.HasSynced, bsInf.HasSynced, rsInf.HasSynced}
	if vsInf != nil {
		_, _ = vsInf.AddEventHandler(enq("vs/"))
		go vsInf.Run(ctx.Done())
		synced = append(synced, vsInf.HasSynced)
	}
	go bcInf.Run(ctx.Done())
	go bsInf.Run(ctx.Done())
	go rsInf.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return ctx.Err()
	}
	sched, err := schedule.New(ctx, a.fireSlot, a.clock)
	if err != nil {
		return err
	}
	t.sched = sched
	defer func() { _ = sched.Stop() }()
	a.mu.Lock()
	a.t = t
	a.mu.Unlock()
	// Schedules first, then catch-up: a slot passing in between is then
	// fired by one or found by the other (the slot's name keeps it to one
	// session), never missed by both.
	for _, key := range t.configs.ListKeys() {
		if err := a.syncConfig(ctx, key); err != nil {
			a.log.Info("config sync before catch-up failed; the queue retries it", "key", key, "err", err)
		}
	}
	a.recoverOrphans(ctx)
	a.catchUp(ctx)

	go func() {
		<-ctx.Done()
		t.queue.ShutDown()
	}()
	for {
		key, quit := t.queue.Get()
		if quit {
			return nil
		}
		if err := a.sync(ctx, key); err != nil {
			a.log.Error("sync failed; retrying", "key", key, "err", err)
			t.queue.AddRateLimited(key)
		} else {
			t.queue.Forget(key)
		}
		t.queue.Done(key)
	}
}

// newInformer list-watches one kind in the namespace through the typed client.
func newInformer[T runtime.Object, L runtime.Object](r *client.Resource[T, L], obj runtime.Object) cache.SharedIndexInformer {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return r.List(ctx, o) },
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return r.Watch(ctx, o)
		},
	}
	return cache.NewSharedIndexInformer(lw, obj, 10*time.Minute, cache.Indexers{})
}
