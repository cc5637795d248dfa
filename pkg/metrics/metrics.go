// Package metrics builds the Prometheus metrics of the backup agent.
//
// Metric names follow Stash so existing Grafana dashboards and alerts keep
// working: every gauge is emitted twice, once with the legacy "stash_" name
// and once with the newer "stash_appscode_com_" name, with identical labels
// and values.
//
// Labels:
//   - every metric: invoker_kind, invoker_name, namespace, driver,
//     repository, plus the user's Extra labels;
//   - target metrics add kind, group, name (the backed-up or restored target);
//   - host metrics add kind, group, name and hostname;
//   - repository metrics set namespace and repository to the repository's
//     and add name (= repository), backend, bucket and prefix.
//
// Extra labels whose name is not a classic Prometheus label name, starts with
// "__", or is one of the labels above or "job"/"instance" (owned by the
// Pushgateway) are dropped; check them up front with CheckExtraLabels.
//
// The package knows nothing about Kubernetes; callers fill the result types.
package metrics

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Name prefixes: legacy Stash names and the API-group based ones.
const (
	LegacyPrefix = "stash_"
	Prefix       = "stash_appscode_com_"
)

// Common holds the labels every metric carries.
type Common struct {
	InvokerKind string // e.g. BackupConfiguration, RestoreSession
	InvokerName string
	Namespace   string // the invoker's namespace
	Driver      string // e.g. Restic
	Repository  string // the Repository's name
	Extra       map[string]string
}

// Target is the object a session backs up or restores.
type Target struct {
	Kind, Group, Name string
}

// BackupResult is the outcome of one backup session on one host. A failed
// backup is still reported: Success false and the stats known, zeros otherwise.
type BackupResult struct {
	Common
	Target   Target
	Hostname string

	Success         bool
	Start, End      time.Time // of the session; zero: not emitted
	SessionDuration time.Duration
	HostDuration    time.Duration

	DataSizeBytes, DataUploadedBytes int64
	ProcessingTime                   time.Duration

	FilesTotal, FilesNew, FilesModified, FilesUnmodified int64

	// LastSuccess is zero if the invoker never succeeded;
	// last_success_time_seconds is only emitted when it is set.
	LastSuccess time.Time

	// TargetCount and HostCount are the session's targets and the target's
	// hosts; 0 means 1, the usual single-target, single-host case.
	TargetCount, HostCount int
}

// RestoreResult is the outcome of one restore session on one host.
type RestoreResult struct {
	Common
	Target   Target
	Hostname string

	Success                       bool
	SessionDuration, HostDuration time.Duration
	Start, End                    time.Time // of the session; zero: unknown

	// 0 means 1, as in BackupResult.
	TargetCount, HostCount int
}

// RepositoryResult describes a repository after a backup or check.
// Name and Namespace default to Common.Repository and Common.Namespace.
type RepositoryResult struct {
	Common
	Name, Namespace         string
	Backend, Bucket, Prefix string

	// Integrity is the verdict of the last check or verification; nil
	// before either (a backup alone proves nothing about it), and the
	// integrity gauge is then left out.
	Integrity                                  *bool
	SizeBytes, SnapshotCount, SnapshotsCleaned int64
}

// PITRResult is a binlog archive's state after a commit.
type PITRResult struct {
	Common
	LastEventTime    time.Time // of the last archived event; zero: none yet
	RecoverableFrom  time.Time // the window's start, the first full backup it replays from; zero: not open
	RecoverableUntil time.Time // the archive holds every event up to it
	Lag              time.Duration
	Gaps             int
	ArchivedBytes    int64
	Interval         time.Duration // how often the archive commits
	GapInWindow      bool          // a gap lies inside the restorable window
}

// ConfigResult is what a BackupConfiguration expects of its backups.
type ConfigResult struct {
	Common
	// MaxAge is how old the last successful backup may get; 0: no
	// expectation (paused, no schedule), pushed as +Inf.
	MaxAge time.Duration
	// VerifyMaxAge is how old the last verification may get, the same way.
	VerifyMaxAge time.Duration
	// Created is when the config was created: a config none of whose
	// backups ever succeeded is overdue from then.
	Created time.Time
	// Invalid: the spec is refused, so no backup runs.
	Invalid bool
}

// VerificationResult is a verification's outcome.
type VerificationResult struct {
	Common
	Succeeded  bool
	End        time.Time
	Duration   time.Duration // the whole verification
	Restore    time.Duration // the restore into the scratch server: the RTO
	Tables     int
	Mismatches int
}

// reserved reports labels set by this package or the Pushgateway, which
// Extra cannot override.
func reserved(name string) bool {
	switch name {
	case "invoker_kind", "invoker_name", "namespace", "driver", "repository",
		"kind", "group", "name", "hostname",
		"backend", "bucket", "prefix",
		"job", "instance":
		return true
	}
	return false
}

// CheckExtraLabels reports the first extra label that would be dropped.
func CheckExtraLabels(extra map[string]string) error {
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch {
		case !validLabelName(k):
			return fmt.Errorf("label %q: not a valid Prometheus label name", k)
		case reserved(k):
			return fmt.Errorf("label %q: reserved", k)
		}
	}
	return nil
}

// validLabelName is the classic [a-zA-Z_][a-zA-Z0-9_]* rule without the "__"
// prefix; stricter than UTF-8 names so any Pushgateway or scraper accepts it.
func validLabelName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i, c := range s {
		ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return false
		}
	}
	return true
}

// labels is the label set every metric of c carries.
func (c Common) labels() prometheus.Labels {
	l := prometheus.Labels{}
	for k, v := range c.Extra {
		if validLabelName(k) && !reserved(k) {
			l[k] = cleanValue(v)
		}
	}
	return with(l,
		"invoker_kind", c.InvokerKind, "invoker_name", c.InvokerName,
		"namespace", c.Namespace, "driver", c.Driver, "repository", c.Repository)
}

// with returns a copy of l plus the given name/value pairs.
func with(l prometheus.Labels, kv ...string) prometheus.Labels {
	out := make(prometheus.Labels, len(l)+len(kv)/2)
	for k, v := range l {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = cleanValue(kv[i+1])
	}
	return out
}

// cleanValue makes v valid UTF-8; Prometheus rejects metrics otherwise.
func cleanValue(v string) string { return strings.ToValidUTF8(v, "\uFFFD") }

func (t Target) labels(l prometheus.Labels) prometheus.Labels {
	return with(l, "kind", t.Kind, "group", t.Group, "name", t.Name)
}

// samples is a fixed batch of gauge values; a recorded result never changes,
// so constant metrics are enough.
type samples []prometheus.Metric

// add appends one gauge under its legacy and current names.
func (s *samples) add(legacy, current, help string, l prometheus.Labels, v float64) {
	for _, name := range []string{LegacyPrefix + legacy, Prefix + current} {
		d := prometheus.NewDesc(name, help, nil, l)
		*s = append(*s, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v))
	}
}

// startEnd adds a session's start and completion times, those known. A
// session runs while its start is newer than its completion.
func (s *samples) startEnd(legacy, current string, l prometheus.Labels, start, end time.Time) {
	if !start.IsZero() {
		s.add(legacy+"_session_start_time_seconds", current+"_start_time_seconds", "Unix time the last "+legacy+" session started.", l, unixSeconds(start))
	}
	if !end.IsZero() {
		s.add(legacy+"_session_completion_time_seconds", current+"_completion_time_seconds", "Unix time the last "+legacy+" session ended.", l, unixSeconds(end))
	}
}

func (s samples) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range s {
		ch <- m.Desc()
	}
}

func (s samples) Collect(ch chan<- prometheus.Metric) {
	for _, m := range s {
		ch <- m
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func count(n int) float64 {
	if n <= 0 {
		return 1
	}
	return float64(n)
}

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

func backupSamples(r BackupResult) samples {
	var s samples
	session := r.Common.labels()
	target := r.Target.labels(session)
	host := with(target, "hostname", r.Hostname)
	ok := boolValue(r.Success)

	s.add("backup_session_success", "backupsession_success", "Whether the backup session succeeded (1) or failed (0).", session, ok)
	s.add("backup_session_duration_seconds", "backupsession_duration_seconds", "Duration of the whole backup session in seconds.", session, r.SessionDuration.Seconds())
	s.add("backup_target_count_total", "backupsession_target_count_total", "Number of targets in the backup session.", session, count(r.TargetCount))
	s.startEnd("backup", "backupsession", session, r.Start, r.End)
	if !r.LastSuccess.IsZero() {
		s.add("backup_last_success_time_seconds", "backupsession_last_success_time_seconds", "Unix time of the invoker's last successful backup.", session, unixSeconds(r.LastSuccess))
	}

	s.add("backup_target_success", "backupsession_target_success", "Whether the target's backup succeeded (1) or failed (0).", target, ok)
	s.add("backup_target_host_count_total", "backupsession_target_host_count_total", "Number of hosts of the backup target.", target, count(r.HostCount))
	if !r.LastSuccess.IsZero() {
		s.add("backup_target_last_success_time_seconds", "backupsession_target_last_success_time_seconds", "Unix time of the target's last successful backup.", target, unixSeconds(r.LastSuccess))
	}

	s.add("backup_host_backup_success", "backupsession_host_backup_success", "Whether the host's backup succeeded (1) or failed (0).", host, ok)
	s.add("backup_host_backup_duration_seconds", "backupsession_host_backup_duration_seconds", "Duration of the host's backup in seconds.", host, r.HostDuration.Seconds())
	s.add("backup_host_data_size_bytes", "backupsession_host_data_size_bytes", "Size of the host's backed-up data in bytes.", host, float64(r.DataSizeBytes))
	s.add("backup_host_data_uploaded_bytes", "backupsession_host_data_uploaded_bytes", "Bytes the host uploaded to the repository.", host, float64(r.DataUploadedBytes))
	s.add("backup_host_data_processing_time_seconds", "backupsession_host_data_processing_time_seconds", "Time the backup tool spent processing the host's data, in seconds.", host, r.ProcessingTime.Seconds())
	s.add("backup_host_files_total", "backupsession_host_files_total", "Number of files in the host's backup.", host, float64(r.FilesTotal))
	s.add("backup_host_files_new", "backupsession_host_files_new", "Number of new files in the host's backup.", host, float64(r.FilesNew))
	s.add("backup_host_files_modified", "backupsession_host_files_modified", "Number of modified files in the host's backup.", host, float64(r.FilesModified))
	s.add("backup_host_files_unmodified", "backupsession_host_files_unmodified", "Number of unmodified files in the host's backup.", host, float64(r.FilesUnmodified))
	return s
}

func restoreSamples(r RestoreResult) samples {
	var s samples
	session := r.Common.labels()
	target := r.Target.labels(session)
	host := with(target, "hostname", r.Hostname)
	ok := boolValue(r.Success)

	s.add("restore_session_success", "restoresession_success", "Whether the restore session succeeded (1) or failed (0).", session, ok)
	s.add("restore_session_duration_seconds", "restoresession_duration_seconds", "Duration of the whole restore session in seconds.", session, r.SessionDuration.Seconds())
	s.startEnd("restore", "restoresession", session, r.Start, r.End)
	s.add("restore_target_count_total", "restoresession_target_count_total", "Number of targets in the restore session.", session, count(r.TargetCount))
	s.add("restore_target_success", "restoresession_target_success", "Whether the target's restore succeeded (1) or failed (0).", target, ok)
	s.add("restore_target_host_count_total", "restoresession_target_host_count_total", "Number of hosts of the restore target.", target, count(r.HostCount))
	s.add("restore_host_restore_success", "restoresession_host_restore_success", "Whether the host's restore succeeded (1) or failed (0).", host, ok)
	s.add("restore_host_restore_duration_seconds", "restoresession_host_restore_duration_seconds", "Duration of the host's restore in seconds.", host, r.HostDuration.Seconds())
	return s
}

// repositoryLabels puts the repository's identity where the invoker's was.
func repositoryLabels(r RepositoryResult) prometheus.Labels {
	name, ns := r.Name, r.Namespace
	if name == "" {
		name = r.Repository
	}
	if ns == "" {
		ns = r.Common.Namespace
	}
	return with(r.Common.labels(),
		"repository", name, "name", name, "namespace", ns,
		"backend", r.Backend, "bucket", r.Bucket, "prefix", r.Prefix)
}

func repositorySamples(r RepositoryResult) samples {
	var s samples
	l := repositoryLabels(r)
	if r.Integrity != nil {
		s.add("repository_integrity", "repository_integrity", "Whether the repository passed its last integrity check or verification (1) or not (0).", l, boolValue(*r.Integrity))
	}
	s.add("repository_size_bytes", "repository_size_bytes", "Size of the repository in bytes.", l, float64(r.SizeBytes))
	s.add("repository_snapshot_count", "repository_snapshot_count", "Number of snapshots in the repository.", l, float64(r.SnapshotCount))
	s.add("repository_snapshot_cleaned", "repository_snapshot_cleaned", "Number of snapshots removed by the last retention run.", l, float64(r.SnapshotsCleaned))
	return s
}

func pitrSamples(r PITRResult) samples {
	var s samples
	l := r.Common.labels()
	if !r.LastEventTime.IsZero() {
		s.add("pitr_last_archived_event_time_seconds", "pitr_last_archived_event_time_seconds", "Unix time of the last binlog event archived.", l, unixSeconds(r.LastEventTime))
	}
	if !r.RecoverableFrom.IsZero() {
		s.add("pitr_recoverable_from_time_seconds", "pitr_recoverable_from_time_seconds", "Unix time the restorable window starts: the oldest full backup the archive replays from.", l, unixSeconds(r.RecoverableFrom))
	}
	if !r.RecoverableUntil.IsZero() {
		s.add("pitr_recoverable_until_time_seconds", "pitr_recoverable_until_time_seconds", "Unix time up to which the binlog archive holds every event.", l, unixSeconds(r.RecoverableUntil))
	}
	s.add("pitr_archive_lag_seconds", "pitr_archive_lag_seconds", "Seconds between now and the end of the binlog archive, at the last commit.", l, r.Lag.Seconds())
	s.add("pitr_gaps_total", "pitr_gaps_total", "Stretches of time the binlog archive does not cover.", l, float64(r.Gaps))
	s.add("pitr_window_gap", "pitr_window_gap", "1 when a gap lies inside the restorable window (restores into it are refused), else 0.", l, boolValue(r.GapInWindow))
	s.add("pitr_archived_bytes", "pitr_archived_bytes", "Bytes of binlog files archived.", l, float64(r.ArchivedBytes))
	if r.Interval > 0 {
		s.add("pitr_archive_interval_seconds", "pitr_archive_interval_seconds", "How often the binlog archive commits, in seconds.", l, r.Interval.Seconds())
	}
	return s
}

// PITRRegistry returns a fresh registry holding r's metrics.
func PITRRegistry(r PITRResult) *prometheus.Registry { return registryOf(pitrSamples(r)) }

func verificationSamples(r VerificationResult) samples {
	var s samples
	l := r.Common.labels()
	ok := 0.0
	if r.Succeeded {
		ok = 1
		s.add("verification_last_success_time_seconds", "verification_last_success_time_seconds", "Unix time of the last verification that succeeded.", l, unixSeconds(r.End))
	}
	s.add("verification_success", "verification_success", "1 when the last verification succeeded, 0 when it failed.", l, ok)
	s.add("verification_duration_seconds", "verification_duration_seconds", "Seconds the last verification took.", l, r.Duration.Seconds())
	s.add("verification_restore_duration_seconds", "verification_restore_duration_seconds", "Seconds the last verification's restore took: the measured recovery time.", l, r.Restore.Seconds())
	s.add("verification_tables_checked", "verification_tables_checked", "Tables the last verification compared.", l, float64(r.Tables))
	s.add("verification_mismatches", "verification_mismatches", "Differences the last verification found.", l, float64(r.Mismatches))
	s.add("verification_last_time_seconds", "verification_last_time_seconds", "Unix time the last verification ended.", l, unixSeconds(r.End))
	return s
}

func configSamples(r ConfigResult) samples {
	var s samples
	s.add("backup_max_age_seconds", "backupconfiguration_max_age_seconds", "How old the last successful backup may get before it is overdue (+Inf: no schedule, or paused).", r.Common.labels(), secondsOrInf(r.MaxAge))
	s.add("verification_max_age_seconds", "verification_max_age_seconds", "How old the last verification may get before it is overdue (+Inf: verification not scheduled, or paused).", r.Common.labels(), secondsOrInf(r.VerifyMaxAge))
	if !r.Created.IsZero() {
		s.add("backupconfiguration_creation_time_seconds", "backupconfiguration_creation_time_seconds", "Unix time the BackupConfiguration was created: with no successful backup yet, it is overdue counted from then.", r.Common.labels(), unixSeconds(r.Created))
	}
	s.add("backupconfiguration_invalid", "backupconfiguration_invalid", "1 when the BackupConfiguration's spec is refused, so no backup runs (its ValidationPassed condition says why).", r.Common.labels(), boolValue(r.Invalid))
	return s
}

// secondsOrInf is d in seconds, +Inf for 0 (no bound).
func secondsOrInf(d time.Duration) float64 {
	if d <= 0 {
		return math.Inf(1)
	}
	return d.Seconds()
}

// ConfigRegistry returns a fresh registry holding r's metrics.
func ConfigRegistry(r ConfigResult) *prometheus.Registry { return registryOf(configSamples(r)) }

// VerificationRegistry returns a fresh registry holding r's metrics.
func VerificationRegistry(r VerificationResult) *prometheus.Registry {
	return registryOf(verificationSamples(r))
}

func registryOf(s samples) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	// Cannot fail: names are fixed, label names filtered, values valid UTF-8.
	reg.MustRegister(s)
	return reg
}

// BackupRegistry returns a fresh registry holding r's backup metrics.
func BackupRegistry(r BackupResult) *prometheus.Registry { return registryOf(backupSamples(r)) }

// StartRegistry returns a fresh registry holding the start time alone of a
// backup (kind "backup") or restore ("restore") session of c, pushed when
// it starts so a session that runs too long can alert.
func StartRegistry(kind string, c Common, start time.Time) *prometheus.Registry {
	var s samples
	s.startEnd(kind, kind+"session", c.labels(), start, time.Time{})
	return registryOf(s)
}

// RestoreRegistry returns a fresh registry holding r's restore metrics.
func RestoreRegistry(r RestoreResult) *prometheus.Registry { return registryOf(restoreSamples(r)) }

// IntegrityRegistry returns a fresh registry holding r's integrity gauge
// alone: a check or verification knows nothing new of the size.
func IntegrityRegistry(r RepositoryResult) *prometheus.Registry {
	var s samples
	if r.Integrity != nil {
		s.add("repository_integrity", "repository_integrity", "Whether the repository passed its last integrity check or verification (1) or not (0).", repositoryLabels(r), boolValue(*r.Integrity))
	}
	return registryOf(s)
}

// RepositoryRegistry returns a fresh registry holding r's repository metrics.
func RepositoryRegistry(r RepositoryResult) *prometheus.Registry {
	return registryOf(repositorySamples(r))
}
