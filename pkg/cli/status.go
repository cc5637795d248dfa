package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	cschedule "github.com/kubectl-stash/kubectl-stash/pkg/contract/schedule"
)

// StatusOptions shows one view per BackupConfiguration.
type StatusOptions struct {
	factory       *Factory
	streams       genericiooptions.IOStreams
	AllNamespaces bool
	Output        string
	Name          string
	Now           func() time.Time
}

// ConfigStatus is one BackupConfiguration's health.
type ConfigStatus struct {
	Namespace      string     `json:"namespace"`
	Name           string     `json:"name"`
	Target         string     `json:"target"`
	Schedule       string     `json:"schedule,omitempty"`
	Paused         bool       `json:"paused"`
	LastSession    string     `json:"lastSession,omitempty"`
	LastPhase      string     `json:"lastPhase,omitempty"`
	LastTime       *time.Time `json:"lastTime,omitempty"`
	LastSuccess    *time.Time `json:"lastSuccess,omitempty"`
	NextSchedule   *time.Time `json:"nextSchedule,omitempty"`
	LastSnapshot   string     `json:"lastSnapshot,omitempty"` // the newest snapshot a session of it made
	ClaimedBy      string     `json:"claimedBy,omitempty"`    // the agent instance that claimed the last session
	Agent          string     `json:"agent"`
	AgentPod       string     `json:"agentPod,omitempty"` // the Lease's holder: the agent pod that acts
	AgentHealthy   bool       `json:"agentHealthy"`
	AgentReason    string     `json:"agentReason,omitempty"` // why its Deployment has no available pod
	Repository     string     `json:"repository"`
	RepositorySize string     `json:"repositorySize,omitempty"`
	SnapshotCount  int64      `json:"snapshotCount"`
	// PITR is set when the binlog is archived: the restorable window.
	PITR             bool       `json:"pitr,omitempty"`
	RecoverableFrom  *time.Time `json:"recoverableFrom,omitempty"`
	RecoverableUntil *time.Time `json:"recoverableUntil,omitempty"`
	// RecoveryPoint is the newest moment a restore reaches now: the
	// archive's end with PITR on, else the last successful backup.
	RecoveryPoint *time.Time `json:"recoveryPoint,omitempty"`
	// The last verification: its session, phase, end and measured RTO.
	LastVerification  string     `json:"lastVerification,omitempty"`
	VerificationPhase string     `json:"verificationPhase,omitempty"`
	LastVerified      *time.Time `json:"lastVerified,omitempty"`
	RTO               string     `json:"rto,omitempty"`
	// Health is one word, the worst found: ok, no-backup, paused, overdue,
	// failing, no-access, no-agent or invalid; Reason says why in a few
	// words, and Problems each say what is wrong and the fix.
	Health   string   `json:"health"`
	Reason   string   `json:"reason,omitempty"`
	Problems []string `json:"problems,omitempty"`
}

// Health words, the worst first.
const (
	HealthInvalid  = "invalid"
	HealthNoAgent  = "no-agent"
	HealthNoAccess = "no-access"
	HealthFailing  = "failing"
	HealthOverdue  = "overdue"
	HealthPaused   = "paused"
	HealthNoBackup = "no-backup"
	HealthOK       = "ok"
)

func healthRank(word string) int {
	for i, w := range []string{HealthInvalid, HealthNoAgent, HealthNoAccess, HealthFailing, HealthOverdue, HealthPaused, HealthNoBackup} {
		if w == word {
			return i
		}
	}
	return 100
}

// flag records a problem: its health word, a few words for the row, and
// the whole story with the fix, printed under the table.
func (r *ConfigStatus) flag(word, reason, detail string) {
	if detail != "" {
		r.Problems = append(r.Problems, detail)
	}
	if r.Health == "" || healthRank(word) < healthRank(r.Health) {
		r.Health, r.Reason = word, reason
	}
}

func newStatusCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &StatusOptions{factory: f, streams: streams, Now: time.Now}
	cmd := &cobra.Command{
		Use:     "status [BACKUPCONFIG]",
		Aliases: []string{"describe"},
		Short:   "Show each BackupConfiguration's health, last good backup, next slot, recovery point, restorable window and last verification, and what to fix",
		Example: `  kubectl stash status
  kubectl stash status mysql-nightly
  kubectl stash status -o wide   # also the agent, repository, window's ends, next slot's time, last snapshot, agent pod, claimed-by, target
  kubectl stash status -A -o yaml`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeNames(f, "backupconfigurations"),
		RunE:              runE(o),
	}
	cmd.Flags().BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "every namespace")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "output format: json, yaml or wide; a table when empty")
	return cmd
}

// Complete takes the optional BackupConfiguration name.
func (o *StatusOptions) Complete(args []string) error {
	if len(args) == 1 {
		o.Name = args[0]
	}
	return nil
}

// Validate checks -o.
func (o *StatusOptions) Validate() error {
	switch o.Output {
	case "", "json", "yaml", "wide":
		return nil
	}
	return usageErr("-o %q is not supported: use json, yaml or wide", o.Output)
}

// Run collects and prints.
func (o *StatusOptions) Run(ctx context.Context) error {
	c, err := o.factory.Clients()
	if err != nil {
		return err
	}
	rows, err := o.Collect(ctx, c, o.Name)
	if err != nil {
		return err
	}
	return o.Print(o.streams.Out, rows)
}

// Collect reads configs, sessions, agents, leases and repositories.
func (o *StatusOptions) Collect(ctx context.Context, c *Clients, only string) ([]ConfigStatus, error) {
	ns := c.Namespace
	if o.AllNamespaces {
		ns = ""
	}
	bcs, err := c.Stash.BackupConfigurations(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list BackupConfigurations: %w", err)
	}
	sessions, err := c.Stash.BackupSessions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list BackupSessions: %w", err)
	}
	repos, err := c.Stash.Repositories(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Repositories: %w", err)
	}
	deps, err := c.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: contract.AgentSelectorString()})
	if err != nil {
		return nil, fmt.Errorf("list agent Deployments: %w", err)
	}
	leases, err := c.Kube.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsForbidden(err) {
		return nil, fmt.Errorf("list Leases: %w", err)
	}
	depBy := map[string]*appsv1.Deployment{}
	for i := range deps.Items {
		depBy[deps.Items[i].Namespace+"/"+deps.Items[i].Name] = &deps.Items[i]
	}
	leaseBy := map[string]*coordinationv1.Lease{}
	if leases != nil {
		for i := range leases.Items {
			leaseBy[leases.Items[i].Namespace+"/"+leases.Items[i].Name] = &leases.Items[i]
		}
	}
	latest := map[string]*stashv1beta1.BackupSession{}
	// lastSnap is the newest session of each config that names a snapshot.
	lastSnap := map[string]*stashv1beta1.BackupSession{}
	for i := range sessions.Items {
		s := &sessions.Items[i]
		k := s.Namespace + "/" + s.Spec.Invoker.Name
		if cur, ok := latest[k]; !ok || cur.CreationTimestamp.Before(&s.CreationTimestamp) {
			latest[k] = s
		}
		if snapshotOf(s) == "" {
			continue
		}
		if cur, ok := lastSnap[k]; !ok || cur.CreationTimestamp.Before(&s.CreationTimestamp) {
			lastSnap[k] = s
		}
	}
	now := o.Now()
	noPod := map[string]string{} // by namespace/agent
	var rows []ConfigStatus
	for i := range bcs.Items {
		bc := &bcs.Items[i]
		if only != "" && bc.Name != only {
			continue
		}
		r := ConfigStatus{Namespace: bc.Namespace, Name: bc.Name, Schedule: bc.Spec.Schedule, Paused: bc.Spec.Paused, Repository: bc.Spec.Repository.Name}
		target := ""
		if bc.Spec.Target != nil {
			target = bc.Spec.Target.Ref.Name
			r.Target = strings.ToLower(bc.Spec.Target.Ref.Kind) + "/" + target
		}
		if c := meta.FindStatusCondition(bc.Status.Conditions, stashv1beta1.ConditionValidationPassed); c != nil && c.Status == metav1.ConditionFalse {
			r.flag(HealthInvalid, "config invalid", "invalid: "+c.Message+": fix the BackupConfiguration and apply it again")
		}
		if s := lastSnap[bc.Namespace+"/"+bc.Name]; s != nil {
			r.LastSnapshot = snapshotOf(s)
		}
		if s := latest[bc.Namespace+"/"+bc.Name]; s != nil {
			r.LastSession, r.LastPhase, r.ClaimedBy = s.Name, string(s.Status.Phase), s.Status.ClaimedBy
			t := s.CreationTimestamp.Time
			r.LastTime = &t
			switch s.Status.Phase {
			case stashv1beta1.BackupSessionFailed:
				r.flag(HealthFailing, "last backup failed", fmt.Sprintf("last session %s failed: %s (fix the cause, then `kubectl stash trigger %s -n %s --wait`)", s.Name, s.Status.Message, bc.Name, bc.Namespace))
			case "", stashv1beta1.BackupSessionPending:
				if c := meta.FindStatusCondition(s.Status.Conditions, stashv1beta1.ConditionAccessGranted); c != nil && c.Status == metav1.ConditionFalse {
					// The agent runs; its Role does not grant what the session needs.
					r.flag(HealthNoAccess, "agent cannot read a Secret", fmt.Sprintf("session %s waits for access: %s", s.Name, c.Message))
				} else if now.Sub(t) > 2*time.Minute {
					r.flag(HealthOverdue, "session pending", fmt.Sprintf("session %s has been Pending for %s: is the agent running?", s.Name, duration.HumanDuration(now.Sub(t))))
				}
			}
		}
		if bc.Status.LastSuccessTime != nil {
			t := bc.Status.LastSuccessTime.Time
			r.LastSuccess = &t
		}
		assess(&r, bc, now)
		if bc.Status.NextSchedule != nil && !bc.Spec.Paused && bc.Spec.Schedule != "" {
			t := bc.Status.NextSchedule.Time
			r.NextSchedule = &t
			if now.Sub(t) > 5*time.Minute {
				r.flag(HealthNoAgent, "agent not scheduling", fmt.Sprintf("the slot at %s passed %s ago with no newer schedule: the agent may be down (`kubectl get pods -n %s -l %s`)", t.UTC().Format(time.RFC3339), duration.HumanDuration(now.Sub(t)), bc.Namespace, contract.AgentSelectorString()))
			}
		}
		agentName := contract.AgentName(target)
		d := depBy[bc.Namespace+"/"+agentName]
		switch {
		case d == nil:
			r.Agent = "missing"
			r.flag(HealthNoAgent, "no agent", fmt.Sprintf("no agent Deployment %s: run `kubectl stash agent apply --target appbinding/%s -n %s`", agentName, target, bc.Namespace))
		default:
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			r.Agent = fmt.Sprintf("%d/%d ready", d.Status.ReadyReplicas, want)
			r.AgentHealthy = d.Status.ReadyReplicas > 0
			if l := leaseBy[bc.Namespace+"/"+agentName]; l != nil && l.Spec.RenewTime != nil && l.Spec.LeaseDurationSeconds != nil {
				age := now.Sub(l.Spec.RenewTime.Time)
				fresh := age < 2*time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second
				holder := ""
				if l.Spec.HolderIdentity != nil {
					holder = *l.Spec.HolderIdentity
				}
				if fresh {
					// The holder is POD_NAME "_" a random suffix (Pod names have no "_").
					pod, _, _ := strings.Cut(holder, "_")
					r.AgentHealthy, r.AgentPod = true, pod
					r.Agent += fmt.Sprintf(", leader %s", holder)
				} else {
					r.Agent += fmt.Sprintf(", lease stale %s", duration.HumanDuration(age))
				}
			}
			why := ""
			if d.Status.AvailableReplicas == 0 {
				// Asked once per Deployment: many configs share one agent.
				var asked bool
				if why, asked = noPod[bc.Namespace+"/"+agentName]; !asked {
					why = AgentNoPodReason(ctx, c.Kube, d)
					noPod[bc.Namespace+"/"+agentName] = why
				}
			}
			switch {
			case why != "":
				r.AgentReason = why
				r.flag(HealthNoAgent, "agent has no pod", fmt.Sprintf("agent %s has no pod: %s", agentName, why))
			case !r.AgentHealthy:
				r.flag(HealthNoAgent, "agent not running", fmt.Sprintf("agent %s is not running (no ready replica, no fresh Lease): check `kubectl describe deployment %s -n %s`", agentName, agentName, bc.Namespace))
			}
		}
		found := false
		for _, repo := range repos.Items {
			if repo.Name == bc.Spec.Repository.Name && (repo.Namespace == bc.Namespace || repo.Namespace == bc.Spec.Repository.Namespace) {
				found = true
				r.RepositorySize, r.SnapshotCount = repo.Status.TotalSize, repo.Status.SnapshotCount
				if repo.Status.Integrity != nil && !*repo.Status.Integrity {
					r.flag(HealthFailing, "repository damaged", fmt.Sprintf("Repository %s failed its last integrity check (`kubectl stash check` or a verification): snapshots in it may not restore; `kubectl stash check %s -n %s` names the damage, and a backup into a new Repository keeps you covered meanwhile", repo.Name, repo.Name, repo.Namespace))
				}
			}
		}
		if !found && (bc.Spec.Repository.Namespace == "" || bc.Spec.Repository.Namespace == bc.Namespace) {
			r.flag(HealthInvalid, "Repository missing", fmt.Sprintf("Repository %s not found: create it (`kubectl stash create repository %s -n %s ...`) or point the config at another", bc.Spec.Repository.Name, bc.Spec.Repository.Name, bc.Namespace))
		}
		r.settle()
		rows = append(rows, r)
	}
	if only != "" && len(rows) == 0 {
		return nil, usageErr("BackupConfiguration %s not found in namespace %s", only, c.Namespace)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Namespace+"/"+rows[i].Name < rows[j].Namespace+"/"+rows[j].Name })
	return rows, nil
}

// Print writes a table (with problems under it), or JSON/YAML. -o wide
// adds the columns of priority 1.
func (o *StatusOptions) Print(out io.Writer, rows []ConfigStatus) error {
	switch o.Output {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case "yaml":
		b, err := yaml.Marshal(rows)
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	}
	if len(rows) == 0 {
		fmt.Fprintln(out, "No BackupConfigurations found.")
		return nil
	}
	if err := o.table(rows).print(out, o.Output == "wide"); err != nil {
		return err
	}
	for _, r := range rows {
		for _, p := range r.Problems {
			fmt.Fprintf(out, "%s/%s: %s\n", r.Namespace, r.Name, p)
		}
	}
	return nil
}

func (o *StatusOptions) table(rows []ConfigStatus) *table {
	now := o.Now()
	ago := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		if t.After(now) {
			return "in " + duration.HumanDuration(t.Sub(now))
		}
		return duration.HumanDuration(now.Sub(*t)) + " ago"
	}
	at := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	t := &table{}
	t.column("Health", 0)
	if o.AllNamespaces {
		t.column("Namespace", 0)
	}
	t.column("Name", 0)
	t.column("Last Session", 0)
	t.column("Last Success", 0)
	t.column("Next", 0)
	t.column("Recovery Point", 0)
	t.column("Window", 0)
	t.column("Verified", 0)
	t.column("Reason", 0)
	t.column("Agent", 1)
	t.column("Repository", 1)
	t.column("Size", 1)
	t.column("Snapshots", 1)
	t.column("Recoverable From", 1)
	t.column("Recoverable Until", 1)
	t.column("Next Schedule", 1)
	t.column("Last Snapshot", 1)
	t.column("Agent Pod", 1)
	t.column("Claimed By", 1)
	t.column("Target", 1)
	for _, r := range rows {
		last := "-"
		if r.LastSession != "" {
			last = fmt.Sprintf("%s %s", phaseOr(r.LastPhase, "Pending"), ago(r.LastTime))
		}
		next, nextAt := ago(r.NextSchedule), at(r.NextSchedule)
		if r.Paused {
			next, nextAt = "paused", "paused"
		} else if r.Schedule == "" {
			next, nextAt = "trigger-only", "trigger-only"
		}
		cells := []any{orDash(r.Health)}
		if o.AllNamespaces {
			cells = append(cells, r.Namespace)
		}
		until, from := "-", "-"
		if r.PITR {
			until, from = ago(r.RecoverableUntil), at(r.RecoverableFrom)
		}
		cells = append(cells, r.Name, last, ago(r.LastSuccess), next, ago(r.RecoveryPoint), window(r), verified(r, ago), orDash(r.Reason),
			r.Agent, r.Repository, orDash(r.RepositorySize), r.SnapshotCount,
			from, until, nextAt, orDash(r.LastSnapshot), orDash(r.AgentPod), orDash(r.ClaimedBy), orDash(r.Target))
		t.row(cells...)
	}
	return t
}

// window is how far back a restore can go: the archive's window with PITR
// on (a restore to any second in it), else the snapshots kept.
func window(r ConfigStatus) string {
	if r.PITR {
		if r.RecoverableFrom == nil || r.RecoverableUntil == nil {
			return "-"
		}
		return "PITR " + duration.HumanDuration(r.RecoverableUntil.Sub(*r.RecoverableFrom))
	}
	if r.SnapshotCount == 0 {
		return "-"
	}
	if r.SnapshotCount == 1 {
		return "1 snapshot"
	}
	return fmt.Sprintf("%d snapshots", r.SnapshotCount)
}

// verified is the last verification: when, and the recovery time it
// measured, or that it failed.
func verified(r ConfigStatus, ago func(*time.Time) string) string {
	switch {
	case r.VerificationPhase == string(stashv1beta1.VerificationFailed):
		return "failed " + ago(r.LastVerified)
	case r.LastVerified == nil:
		return "-"
	case r.RTO != "":
		return ago(r.LastVerified) + ", RTO " + r.RTO
	}
	return ago(r.LastVerified)
}

// snapshotOf is the snapshot a BackupSession made, "" if none.
func snapshotOf(s *stashv1beta1.BackupSession) string {
	for _, tg := range s.Status.Targets {
		for _, st := range tg.Stats {
			for _, sn := range st.Snapshots {
				if sn.Name != "" {
					return sn.Name
				}
			}
		}
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// assess judges what the config's own status says: its window, the age of
// its last backup and verification, and whether it is paused.
func assess(r *ConfigStatus, bc *stashv1beta1.BackupConfiguration, now time.Time) {
	pitrStatus(r, bc, now)
	backupAge(r, bc, now)
	verificationStatus(r, bc, now)
	if bc.Spec.Paused {
		r.flag(HealthPaused, "paused", fmt.Sprintf("paused: no backups are taken; `kubectl stash resume backupconfig %s -n %s` resumes the schedule", bc.Name, bc.Namespace))
	}
}

// settle gives the health once every problem is flagged: with none, ok if
// there is something to restore.
func (r *ConfigStatus) settle() {
	if r.RecoveryPoint == nil {
		r.flag(HealthNoBackup, "nothing to restore yet", "")
	}
	if r.Health == "" {
		r.Health = HealthOK
	}
}

// pitrStatus fills the restorable window of a config whose binlog is
// archived, and flags what is wrong with the archive.
func pitrStatus(r *ConfigStatus, bc *stashv1beta1.BackupConfiguration, now time.Time) {
	p, err := contract.ParsePITR(bc.Annotations)
	if err != nil || !p.On {
		return
	}
	r.PITR = true
	if ps := bc.Status.PointInTimeRecovery; ps != nil {
		if ps.FirstRecoverableTime != nil {
			t := ps.FirstRecoverableTime.Time
			r.RecoverableFrom = &t
		}
		if ps.LastRecoverableTime != nil && r.RecoverableFrom != nil {
			t := ps.LastRecoverableTime.Time
			r.RecoverableUntil, r.RecoveryPoint = &t, &t
			if lag := now.Sub(t); lag > 3*p.Interval+time.Minute {
				r.flag(HealthOverdue, "binlog archive behind", fmt.Sprintf("the binlog archive is %s behind (it commits every %s): see the BinlogArchiving condition and the agent's log (`kubectl logs -n %s deploy/%s`)", duration.HumanDuration(lag), p.Interval, bc.Namespace, contract.AgentName(targetName(bc))))
			}
		}
		if n := len(ps.Gaps); n > 0 {
			g := ps.Gaps[n-1]
			if ps.FirstRecoverableTime == nil || g.To == nil || ps.FirstRecoverableTime.Before(g.To) {
				r.flag(HealthFailing, "gap in the binlog archive", fmt.Sprintf("the binlog archive has a gap since %s (%s): take a full backup to open the window again (`kubectl stash trigger %s -n %s`)", g.From.UTC().Format(time.RFC3339), g.Reason, bc.Name, bc.Namespace))
			}
		}
	}
	if c := meta.FindStatusCondition(bc.Status.Conditions, stashv1beta1.ConditionBinlogArchiving); c != nil && c.Status == metav1.ConditionFalse {
		r.flag(HealthFailing, "binlog archive stopped", "binlog archive: "+c.Message)
	}
	if r.RecoverableFrom == nil {
		r.flag(HealthNoBackup, "no point-in-time window yet", fmt.Sprintf("no point-in-time window yet: it opens with the first full backup after the archive started (`kubectl stash trigger %s -n %s`)", bc.Name, bc.Namespace))
	}
}

// backupAge sets the recovery point from the last successful backup (when
// the archive did not), and flags a backup older than the schedule allows.
func backupAge(r *ConfigStatus, bc *stashv1beta1.BackupConfiguration, now time.Time) {
	if r.RecoveryPoint == nil && r.LastSuccess != nil {
		t := *r.LastSuccess
		r.RecoveryPoint = &t
	}
	if bc.Spec.Paused {
		return
	}
	// The annotation bounds a config with no schedule too (backups
	// triggered from elsewhere); a bad one falls back to the schedule's
	// bound, as the agent's alerts do.
	limit, err := cschedule.MaxAge(bc.Spec.Schedule, bc.Annotations, now)
	if err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("%v: fix it on BackupConfiguration %s; meanwhile the schedule's own bound is used", err, bc.Name))
		limit, _ = cschedule.MaxAge(bc.Spec.Schedule, nil, now)
	}
	if limit == 0 {
		return
	}
	since := bc.CreationTimestamp.Time
	if r.LastSuccess != nil {
		since = *r.LastSuccess
	}
	if age := now.Sub(since); !since.IsZero() && age > limit {
		r.flag(HealthOverdue, "backup overdue", fmt.Sprintf("no successful backup for %s; the schedule allows %s: see the sessions (`kubectl get backupsessions -n %s`), or take one now (`kubectl stash trigger %s -n %s --wait`)",
			duration.HumanDuration(age), duration.HumanDuration(limit), bc.Namespace, bc.Name, bc.Namespace))
	}
}

// verificationStatus fills the last verification and flags one that
// failed, or that is older than the config's verification asks.
func verificationStatus(r *ConfigStatus, bc *stashv1beta1.BackupConfiguration, now time.Time) {
	var last time.Time
	if v := bc.Status.Verification; v != nil {
		r.LastVerification, r.VerificationPhase, r.RTO = v.LastSession, string(v.LastPhase), v.LastRestoreDuration
		if v.LastVerifiedTime != nil {
			t := v.LastVerifiedTime.Time
			r.LastVerified, last = &t, t
		}
		if v.LastPhase == stashv1beta1.VerificationFailed {
			r.flag(HealthFailing, "verification failed", fmt.Sprintf("the last verification, %s, failed: the backups are not proven restorable; `kubectl describe verificationsession %s -n %s` says why", v.LastSession, v.LastSession, bc.Namespace))
		}
	}
	v, err := contract.ParseVerify(bc.Annotations, cschedule.Check)
	if err != nil {
		r.flag(HealthInvalid, "verification annotation invalid", fmt.Sprintf("no verification is scheduled: %v: fix it on BackupConfiguration %s", err, bc.Name))
		return
	}
	if bc.Spec.Paused {
		return
	}
	limit := cschedule.VerifyMaxAge(bc.Spec.Schedule, v.Schedule, v.Every, now)
	if limit == 0 || r.LastSuccess == nil {
		return
	}
	if last.IsZero() {
		last = bc.CreationTimestamp.Time
	}
	if age := now.Sub(last); !last.IsZero() && age > limit {
		r.flag(HealthOverdue, "verification overdue", fmt.Sprintf("no verification for %s; its annotations allow %s: `kubectl stash verify %s -n %s --wait` runs one now", duration.HumanDuration(age), duration.HumanDuration(limit), bc.Name, bc.Namespace))
	}
}

// targetName is the config's AppBinding's name.
func targetName(bc *stashv1beta1.BackupConfiguration) string {
	if bc.Spec.Target == nil {
		return ""
	}
	return bc.Spec.Target.Ref.Name
}
