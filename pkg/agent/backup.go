package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
	"github.com/kubectl-stash/kubectl-stash/pkg/session"
)

// backupRun collects what one session learned, for status, metrics and events.
type backupRun struct {
	bc      *stashv1beta1.BackupConfiguration
	bs      *stashv1beta1.BackupSession
	repo    *stashv1alpha1.Repository
	summary *restic.Summary
	start   time.Time
	removed int
	conds   []metav1.Condition
	pre     []string
	post    []string
	// host is the database's host, where http and tcp hooks go; set once
	// the hooks were found runnable.
	host     string
	snapshot string
	// limit and deadline bound the session; zero when it has none.
	limit    sessionLimit
	deadline time.Time
	// progress receives restic's progress; the reporter writes it.
	progress func(restic.Status)
	// rr and cleanup are the opened repository and what removes its
	// files; afterBackup uses and then cleans them up.
	rr      *restic.Repo
	cleanup func()
	// reported: this agent wrote the session's outcome (no other agent
	// settled it first).
	reported bool
}

func (r *backupRun) cond(typ string, ok bool, reason, msg string) {
	st := metav1.ConditionTrue
	if !ok {
		st = metav1.ConditionFalse
	}
	meta.SetStatusCondition(&r.conds, metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg})
}

// runBackup runs one claimed session: its time limit, the backup job, the
// postBackup hook, and the report of the outcome. What is left once the
// config is free for its next session (history, the Repository's status)
// is afterBackup's.
func (a *Agent) runBackup(ctx context.Context, bc *stashv1beta1.BackupConfiguration, bs *stashv1beta1.BackupSession) *backupRun {
	progress, stopProgress := a.progressWriter(ctx, bs.Name)
	defer stopProgress()
	run := &backupRun{bc: bc, bs: bs, start: a.clock(), progress: progress}
	log := a.log.With("session", bs.Name, "config", bc.Name)
	a.pushStart(ctx, "backup", a.common(bc), run.start)
	limit, err := a.sessionLimit(bc.Spec.TimeOut, stashv1beta1.KindBackupConfiguration, bc.Name)
	if err != nil {
		a.finishBackup(context.WithoutCancel(ctx), run, err, log)
		return run
	}
	if limit.d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit.d)
		defer cancel()
		run.limit, run.deadline = limit, run.start.Add(limit.d)
		_ = a.updateSessionStatus(context.WithoutCancel(ctx), bs.Name, func(s *stashv1beta1.BackupSession) {
			s.Status.SessionDeadline = &metav1.Time{Time: run.deadline}
		})
	}
	err = a.backup(ctx, run, log)
	stopProgress() // before the final status, which it must not follow
	if run.host != "" {
		final := bc.Spec.RetryConfig == nil || bs.Spec.RetryLeft <= 0 || errors.Is(err, ErrInvalid)
		err = a.postHook(context.WithoutCancel(ctx), postBackupHook(bc), run.host, err, final, &run.conds)
	}
	if err != nil && errors.Is(context.Cause(ctx), ErrShutdown) {
		err = fmt.Errorf("%w (%s) before the backup finished: restic was stopped and removed its lock, and no snapshot was saved: %w", ErrShutdown, a.cfg.ShutdownGrace, err)
	}
	// Status, metrics and events are written even when ctx ended.
	a.finishBackup(context.WithoutCancel(ctx), run, err, log)
	return run
}

// backup is the backup's data path, top to bottom. It writes no status:
// what it learns goes into run, its progress to run.progress.
func (a *Agent) backup(ctx context.Context, run *backupRun, log interface{ Info(string, ...any) }) error {
	bc := run.bc
	// 1. The task and its params.
	ab, conn, err := a.connection(ctx)
	if err != nil {
		return err
	}
	taskName, step, err := resolveTask(bc.Spec.Task, ab, false)
	if err != nil {
		return err
	}
	if err := a.checkHooks(preBackupHook(bc), postBackupHook(bc)); err != nil {
		return err
	}
	// 2. The repository and its credentials.
	repo, rr, cleanupRepo, err := a.openRepo(ctx, bc.Spec.Repository, step.EnableCache)
	if err != nil {
		return err
	}
	run.repo, run.rr, run.cleanup = repo, rr, cleanupRepo
	// Configs may share a repository: a backup waits while another
	// config's retention holds it exclusively, and a retention while
	// others back up, rather than fail (100 configs in one slot: 38 of
	// 100 failed on a lock without the wait).
	rr.RetryLock = lockWait
	dbFiles, err := conn.WriteFiles(a.cfg.ScratchDir)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dbFiles.Dir)
	client, err := database.FindClient()
	if err != nil {
		return err
	}
	// 3. Wait for the database.
	log.Info("waiting for the database", "host", conn.Host, "port", conn.Port, "task", taskName)
	if err := client.WaitReady(ctx, dbFiles, a.childEnv(), step.WaitTimeout, 2*time.Second); err != nil {
		return dbError(ab, err)
	}
	run.host = conn.Host
	if c, err := a.runHook(ctx, preBackupHook(bc), conn.Host); c != nil {
		meta.SetStatusCondition(&run.conds, *c)
		if err != nil {
			return fmt.Errorf("%w; no dump was started and no snapshot saved", err)
		}
	}
	if a.mayBeLocked(rr.URL) {
		// An earlier run was cut short while the backend was down: its lock
		// may still be there. restic removes it only if provably stale.
		if err := rr.Unlock(ctx, false); err == nil {
			a.markLocked(rr.URL, false)
			log.Info("removed stale locks left by an interrupted run", "repository", repo.Name)
		}
	}

	// 4. Stream mysqldump into restic: a failed dump leaves no snapshot.
	// The repository is not checked first (a restic run, about a second of
	// key derivation, between the slot and the dump): restic opens it
	// before it starts the dump and exits 10 when it does not exist; only
	// then is it initialised and the backup run again.
	args := step.Args
	if len(args) == 0 {
		args = []string{"--all-databases"}
	}
	args = a.historyArgs(ctx, client, dbFiles, args, run, log)
	a.consistency(ctx, client, dbFiles, args, run, log)
	tags := contract.SessionTags(a.cfg.AppBinding, run.bs.Name, string(run.bs.UID))
	if pitr, _ := contract.ParsePITR(bc.Annotations); pitr.On {
		// The dump records the binlog position of its snapshot, where a
		// point-in-time restore starts its replay.
		var coords bool
		args, coords = a.binlogCoordinates(ctx, client, dbFiles, args, log)
		if coords {
			tags = append(tags, contract.TagBinlogCoordinates, contract.ScopeTag(database.WholeDatabase(args)))
		}
	}
	argv := client.DumpArgv(dbFiles, args)
	if a.cfg.Self != "" {
		// The manifest of what was dumped, built in the same pass and
		// appended to the dump, for verifications.
		argv = append([]string{a.cfg.Self, "dump-tee", "--"}, argv...)
		tags = append(tags, contract.TagManifest)
	}
	opts := restic.BackupOptions{
		Host:          contract.BackupHost,
		StdinFilename: strings.TrimPrefix(contract.DumpFile(a.cfg.AppBinding), "/"),
		Command:       argv,
		Tags:          tags,
		Progress:      run.progress,
		ExtraEnv:      envMap(dbFiles.Env),
	}
	run.pre = append(run.pre, stashv1beta1.ActionInitializeBackendRepository)
	sum, err := rr.Backup(ctx, opts)
	msg := "the repository exists"
	if errors.Is(err, restic.ErrRepoNotExist) {
		// Two sessions (two configs sharing a repository) must not both
		// init it: concurrent inits leave a config and keys that do not match.
		created, ierr := a.initRepo(ctx, repo, rr)
		if ierr != nil {
			run.cond(stashv1beta1.ConditionBackendRepositoryInitialized, false, "InitFailed", repoErr(repo, ierr).Error())
			return repoErr(repo, ierr)
		}
		if created {
			msg = "the repository was initialised"
		}
		log.Info(msg, "repository", repo.Name)
		sum, err = rr.Backup(ctx, opts)
	}
	if !errors.Is(err, restic.ErrRepoNotExist) && !errors.Is(err, restic.ErrWrongPassword) && !errors.Is(err, restic.ErrBackend) && !errors.Is(err, restic.ErrCertificate) {
		run.cond(stashv1beta1.ConditionBackendRepositoryInitialized, true, "Initialized", msg)
	}
	if err != nil {
		if errors.Is(err, restic.ErrBackend) || errors.Is(err, restic.ErrInterrupted) || errors.Is(err, restic.ErrStalled) {
			a.markLocked(rr.URL, true)
		}
		if errors.Is(err, restic.ErrStalled) {
			return fmt.Errorf("the backup stalled, so restic and mysqldump were stopped and no snapshot was saved: %w%s", err, a.tempDirHint(err))
		}
		if errors.Is(err, restic.ErrCommandFailed) {
			why := dbFiles.DumpError()
			if why == "" {
				return fmt.Errorf("mysqldump failed, so no snapshot was saved: %w", err)
			}
			if kind := database.Classify(why); kind != nil {
				err = dbError(ab, fmt.Errorf("%w: %w", kind, err))
			}
			return fmt.Errorf("mysqldump failed (%s), so no snapshot was saved: %w", why, err)
		}
		return repoErr(repo, err)
	}
	run.summary, run.snapshot = sum, sum.SnapshotID
	log.Info("snapshot saved", "snapshot", sum.SnapshotID, "bytes", sum.TotalBytesProcessed)

	// 6. Retention.
	if p := policy(bc.Spec.RetentionPolicy); p != nil {
		var removed []string
		err := a.underRepoLease(ctx, repo, rr.URL, "apply the retention policy", lockWait, func() {
			removed, err = rr.Forget(ctx, *p)
		})
		if err != nil {
			run.cond(stashv1beta1.ConditionRetentionPolicyApplied, false, "ForgetFailed", err.Error())
			return fmt.Errorf("the backup succeeded (snapshot %s) but the retention policy failed: %w", sum.SnapshotID, repoErr(repo, err))
		}
		run.removed = len(removed)
		run.post = append(run.post, stashv1beta1.ActionApplyRetentionPolicy)
		run.cond(stashv1beta1.ConditionRetentionPolicyApplied, true, "Applied", fmt.Sprintf("retention policy %s removed %d snapshots", bc.Spec.RetentionPolicy.Name, len(removed)))
	}
	// 7. The Repository's status follows in afterBackup, once the session's
	// own is written: it is bookkeeping (a restic run at most once a
	// minute), not the outcome.
	run.post = append(run.post, stashv1beta1.ActionSendRepositoryMetrics)
	return nil
}

// initRepo initialises the repository once across every agent that uses
// it. restic init is not safe against itself: two inits at once both pass
// restic's checks, both write a key and a config, and the repository keeps
// one config that the other key cannot open. So the agents init under the
// Repository's Lease, and whoever comes second finds the repository there.
func (a *Agent) initRepo(ctx context.Context, repo *stashv1alpha1.Repository, rr *restic.Repo) (created bool, err error) {
	// A holder that died is taken over after a lease duration; the bound
	// leaves room for that and for the holder's own init.
	lerr := a.underRepoLease(ctx, repo, rr.URL, "initialise the repository", 4*a.cfg.LeaseDuration+2*time.Minute, func() {
		// Checks again under the Lease. It runs on the session's context,
		// not the term's: an init cut short between its key and its config
		// leaves a repository that needs repair by hand, while a Lease lost
		// in the second an init takes rarely meets another init.
		created, err = rr.Init(ctx)
	})
	if lerr != nil {
		return false, lerr
	}
	return created, err
}

func policy(p stashv1alpha1.RetentionPolicy) *restic.Policy {
	if p.KeepLast == 0 && p.KeepHourly == 0 && p.KeepDaily == 0 && p.KeepWeekly == 0 && p.KeepMonthly == 0 && p.KeepYearly == 0 && len(p.KeepTags) == 0 {
		return nil // no policy: keep everything
	}
	return &restic.Policy{KeepLast: int(p.KeepLast), KeepHourly: int(p.KeepHourly), KeepDaily: int(p.KeepDaily), KeepWeekly: int(p.KeepWeekly),
		KeepMonthly: int(p.KeepMonthly), KeepYearly: int(p.KeepYearly), KeepTags: p.KeepTags, Prune: p.Prune, DryRun: p.DryRun, Host: contract.BackupHost}
}

func dbError(ab *appcatalog.AppBinding, err error) error {
	secret := ""
	if ab.Spec.Secret != nil {
		secret = ab.Spec.Secret.Name
	}
	switch {
	case errors.Is(err, database.ErrAccessDenied):
		return fmt.Errorf("the database refused the credentials in Secret %s (AppBinding %s): fix username/password in that Secret: %w", secret, ab.Name, err)
	case errors.Is(err, database.ErrTLS):
		return fmt.Errorf("TLS to the database of AppBinding %s failed: check clientConfig.caBundle: %w", ab.Name, err)
	case errors.Is(err, database.ErrConnectionLost):
		return fmt.Errorf("the database of AppBinding %s answered, then closed the connection mid-query: it restarted, was killed, or ended the query (its error log says which; net_write_timeout and the server's max_allowed_packet are the usual limits; the agent's clients allow packets up to 1 GiB): %w", ab.Name, err)
	case errors.Is(err, database.ErrPacketTooLarge):
		return fmt.Errorf("a row or statement of the database of AppBinding %s is larger than the server's max_allowed_packet: raise it (`SET GLOBAL max_allowed_packet=1073741824`, and in the server's configuration): %w", ab.Name, err)
	default:
		return fmt.Errorf("the database of AppBinding %s did not answer: %w", ab.Name, err)
	}
}

func repoErr(repo *stashv1alpha1.Repository, err error) error {
	switch {
	case errors.Is(err, restic.ErrWrongPassword):
		return fmt.Errorf("repository %s: RESTIC_PASSWORD in Secret %s does not open the repository: %w", repo.Name, repo.Spec.Backend.StorageSecretName, err)
	case errors.Is(err, restic.ErrLocked):
		return fmt.Errorf("repository %s stayed locked by another restic process (another session's retention or backup, a check, or a lock left by a killed one) for as long as the agent waits, %s; if none runs, use `kubectl stash unlock %s`: %w", repo.Name, lockWait, repo.Name, err)
	case errors.Is(err, restic.ErrCertificate):
		return fmt.Errorf("repository %s: the backend's TLS certificate is not trusted: set CA_CERT_DATA in Secret %s to the CA that signed it: %w", repo.Name, repo.Spec.Backend.StorageSecretName, err)
	case errors.Is(err, restic.ErrBackend):
		return fmt.Errorf("repository %s: the backend is unreachable: %w", repo.Name, err)
	}
	return fmt.Errorf("repository %s: %w", repo.Name, err)
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

var retrySuffix = regexp.MustCompile(`-retry-[0-9]+$`)

// scheduleRetry creates the next attempt of a failed session per the
// config's retryConfig. The retry is a BackupSession with a not-before
// annotation, so it survives an agent restart. Invalid sessions (a missing
// Secret, an unknown Task) are not retried: waiting will not fix them.
func (a *Agent) scheduleRetry(ctx context.Context, bc *stashv1beta1.BackupConfiguration, bs *stashv1beta1.BackupSession, cause error) {
	rc := bc.Spec.RetryConfig
	if rc == nil || bs.Spec.RetryLeft <= 0 || errors.Is(cause, ErrInvalid) {
		return
	}
	attempt := rc.MaxRetry - bs.Spec.RetryLeft + 1
	base := retrySuffix.ReplaceAllString(bs.Name, "")
	name := fmt.Sprintf("%s-retry-%d", base, attempt)
	if len(name) > 63 {
		name = contract.ShortName(name, 63)
	}
	at := a.clock().Add(rc.Delay.Duration)
	next := session.NewBackup(bc, name)
	next.Spec.RetryLeft = bs.Spec.RetryLeft - 1
	next.Annotations = map[string]string{contract.AnnotationNotBefore: at.UTC().Format(time.RFC3339), contract.AnnotationRetryOf: bs.Name}
	if _, err := a.stash.BackupSessions(a.cfg.Namespace).Create(ctx, next, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		a.log.Error("could not create the retry session", "session", bs.Name, "err", err)
		return
	}
	_ = a.updateSessionStatus(ctx, bs.Name, func(s *stashv1beta1.BackupSession) {
		s.Status.Retried = ptr.To(true)
		s.Status.NextRetry = &metav1.Time{Time: at}
	})
	a.log.Info("retry scheduled", "session", bs.Name, "retry", name, "at", at.UTC().Format(time.RFC3339))
}

// historyArgs adds --dump-history when the dumped databases have
// system-versioned tables and the client can dump their history, and says
// in the HistoryBackedUp condition whether their history is in the backup:
// a backup that keeps only current rows is never silent about it.
func (a *Agent) historyArgs(ctx context.Context, client database.Client, f *database.Files, args []string, run *backupRun, log interface{ Info(string, ...any) }) []string {
	tables, err := client.VersionedTables(ctx, f, a.childEnv(), args)
	if err != nil {
		log.Info("could not list system-versioned tables", "err", err.Error())
		return args
	}
	if len(tables) == 0 {
		return args
	}
	var names, precise []string
	for _, t := range tables {
		names = append(names, t.Table)
		if t.Precise {
			precise = append(precise, t.Table)
		}
	}
	const cond = stashv1beta1.ConditionHistoryBackedUp
	switch {
	case !client.DumpsHistory(ctx):
		run.cond(cond, false, "ClientCannotDumpHistory", fmt.Sprintf("%s has no --dump-history (MariaDB 10.11 and later have it), so the backup holds only the current rows of %d system-versioned tables: %s", client.Dump, len(names), listNames(names)))
	case len(precise) > 0:
		run.cond(cond, false, "TransactionPreciseHistory", fmt.Sprintf("mariadb-dump cannot dump transaction-precise history, so the backup holds only the current rows of the system-versioned tables: %s (%d with transaction-precise history: %s)", listNames(names), len(precise), listNames(precise)))
	default:
		run.cond(cond, true, "HistoryDumped", fmt.Sprintf("the history of %d system-versioned tables is in the backup (restored with its original ROW_START and ROW_END on MariaDB 10.11 and later): %s", len(names), listNames(names)))
		return append(append([]string(nil), args...), "--dump-history")
	}
	return args
}

// listNames lists at most ten names, then how many more.
func listNames(names []string) string {
	if len(names) <= 10 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:10], ", "), len(names)-10)
}

// consistency says in the ConsistentDump condition whether the dump is one
// consistent snapshot: --single-transaction covers transactional tables
// only, so MyISAM, Aria or MEMORY tables are read as they change unless the
// user chose --lock-all-tables (a global read lock for the dump's length).
func (a *Agent) consistency(ctx context.Context, client database.Client, f *database.Files, args []string, run *backupRun, log interface{ Info(string, ...any) }) {
	const cond = stashv1beta1.ConditionConsistentDump
	if database.LocksAllTables(args) {
		run.cond(cond, true, "LockedAllTables", "--lock-all-tables held a global read lock for the whole dump: every table is consistent with the others")
		return
	}
	tables, err := client.NonTransactionalTables(ctx, f, a.childEnv(), args)
	if err != nil {
		log.Info("could not list non-transactional tables", "err", err.Error())
		return
	}
	if len(tables) == 0 {
		run.cond(cond, true, "SingleTransaction", "every table dumped is transactional: one --single-transaction snapshot")
		return
	}
	run.cond(cond, false, "NonTransactionalTables", fmt.Sprintf("%d tables are not transactional, so --single-transaction does not make them consistent with the rest: %s; to lock every table for the dump's length instead (writes wait), add --lock-all-tables to the task's args param", len(tables), listNames(tables)))
}
