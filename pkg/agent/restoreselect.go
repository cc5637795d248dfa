package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/dumpfilter"
	"github.com/kubectl-stash/kubectl-stash/pkg/dumptee"
	"github.com/kubectl-stash/kubectl-stash/pkg/manifest"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
	"github.com/kubectl-stash/kubectl-stash/pkg/sqlload"
)

// restoreRule is the one rule a database restore reads: the target's, else
// the deprecated top-level one.
func restoreRule(rs *stashv1beta1.RestoreSession) (stashv1beta1.Rule, int) {
	rules := rs.Spec.Rules
	if rs.Spec.Target != nil && len(rs.Spec.Target.Rules) > 0 {
		rules = rs.Spec.Target.Rules
	}
	if len(rules) == 0 {
		return stashv1beta1.Rule{}, 0
	}
	return rules[0], len(rules)
}

// restoreSelection reads what a restore selects: its rule's include and
// exclude (object patterns, db.table) and the rename annotation. Rule
// fields a database restore cannot honour are refused, never ignored.
func restoreSelection(rs *stashv1beta1.RestoreSession) (dumpfilter.Rules, error) {
	rule, n := restoreRule(rs)
	switch {
	case n > 1:
		return dumpfilter.Rules{}, fmt.Errorf("%w: RestoreSession %s has %d rules: a database restore takes one (one snapshot, with include and exclude choosing what of it)", ErrInvalid, rs.Name, n)
	case len(rule.Snapshots) > 1:
		return dumpfilter.Rules{}, fmt.Errorf("%w: RestoreSession %s names %d snapshots: a database restore restores one; restore them one after another, or one with --include", ErrInvalid, rs.Name, len(rule.Snapshots))
	case len(rule.TargetHosts) > 0 && !slices.Contains(rule.TargetHosts, contract.BackupHost):
		return dumpfilter.Rules{}, fmt.Errorf("%w: RestoreSession %s: rule targetHosts %v do not include %s, the only host of a database, so the rule would restore nothing: leave targetHosts out", ErrInvalid, rs.Name, rule.TargetHosts, contract.BackupHost)
	}
	var rename []string
	if v := strings.TrimSpace(rs.Annotations[contract.AnnotationRestoreRenameDatabase]); v != "" {
		rename = strings.Split(v, ",")
	}
	sel, err := dumpfilter.ParseRules(rule.Include, rule.Exclude, rename)
	if err != nil {
		return sel, fmt.Errorf("%w: RestoreSession %s: %w (include and exclude are DATABASE.TABLE patterns, annotation %s is FROM=TO[,FROM=TO])", ErrInvalid, rs.Name, err, contract.AnnotationRestoreRenameDatabase)
	}
	return sel, nil
}

// restoreAnnotations are the annotations a RestoreSession may carry.
var restoreAnnotations = []string{contract.AnnotationRestoreAt, contract.AnnotationRestoreToGTID, contract.AnnotationRestoreGTIDExclusive,
	contract.AnnotationRestoreAllowGap, contract.AnnotationRestoreReadOnly, contract.AnnotationRestoreRenameDatabase, contract.AnnotationRestoreSkipBinlog}

// checkRestoreSpec refuses a RestoreSession whose driver a database restore
// cannot be, and lists the fields it cannot apply: a restore runs in the
// agent's long-lived Pod, so Pod and container settings per restore have
// nowhere to go.
func checkRestoreSpec(rs *stashv1beta1.RestoreSession) (unapplied []string, err error) {
	if rs.Spec.Driver == stashv1beta1.DriverVolumeSnapshotter {
		return nil, fmt.Errorf("%w: RestoreSession %s: driver VolumeSnapshotter restores volume snapshots; a database is restored from its dump with driver Restic: leave driver out (the database was not changed)", ErrInvalid, rs.Name)
	}
	for k := range rs.Annotations {
		name, ours := strings.CutPrefix(k, "stash.appscode.com/")
		if ours && (strings.Contains(name, "restore") || strings.Contains(name, "rename")) && !slices.Contains(restoreAnnotations, k) {
			// A mistyped rename or point in time would restore the whole
			// snapshot in place.
			return nil, fmt.Errorf("%w: RestoreSession %s: annotation %s is not one a restore reads (%s): fix its name (the database was not changed)", ErrInvalid, rs.Name, k, strings.Join(restoreAnnotations, ", "))
		}
	}
	if rs.Spec.RuntimeSettings.Container != nil || rs.Spec.RuntimeSettings.Pod != nil {
		unapplied = append(unapplied, "spec.runtimeSettings")
	}
	if t := rs.Spec.TempDir; t.Medium != "" || t.SizeLimit != nil || t.DisableCaching {
		unapplied = append(unapplied, "spec.tempDir")
	}
	if t := rs.Spec.Target; t != nil {
		if len(t.VolumeMounts) > 0 {
			unapplied = append(unapplied, "spec.target.volumeMounts")
		}
		if t.Replicas != nil {
			unapplied = append(unapplied, "spec.target.replicas")
		}
	}
	return unapplied, nil
}

// checkRuleSources refuses rules given twice over: in both spec.rules and
// target.rules (the deprecated list would be ignored), or a rule snapshot
// and a different one in the task's params.
func checkRuleSources(rs *stashv1beta1.RestoreSession, step StepOptions) error {
	if len(rs.Spec.Rules) > 0 && rs.Spec.Target != nil && len(rs.Spec.Target.Rules) > 0 {
		return fmt.Errorf("%w: RestoreSession %s has rules in both spec.rules (deprecated) and spec.target.rules: keep them in spec.target.rules alone (the database was not changed)", ErrInvalid, rs.Name)
	}
	rule, _ := restoreRule(rs)
	if step.Snapshot != "" && len(rule.Snapshots) > 0 && rule.Snapshots[0] != "" && rule.Snapshots[0] != step.Snapshot {
		return fmt.Errorf("%w: RestoreSession %s: its rule restores snapshot %s and its task params snapshot %s: name the snapshot in one place (the database was not changed)", ErrInvalid, rs.Name, rule.Snapshots[0], step.Snapshot)
	}
	return nil
}

// oneDatabaseArg returns the mysql option among args that restricts a
// load to one database (-o, --one-database), or "".
func oneDatabaseArg(args []string) string {
	for _, a := range args {
		switch a {
		case "-o", "--one-database", "--one_database":
			return a
		}
	}
	return ""
}

// checkRulePaths refuses rule paths other than the snapshot's dump file:
// a database snapshot holds one file, and tables are chosen with include.
func checkRulePaths(rs *stashv1beta1.RestoreSession, file string) error {
	rule, _ := restoreRule(rs)
	for _, p := range rule.Paths {
		if p != "/" && strings.TrimPrefix(p, "/") != strings.TrimPrefix(file, "/") {
			return fmt.Errorf("%w: RestoreSession %s: rule path %q is not in the snapshot, which holds one file, %s: choose tables with include and exclude (DATABASE.TABLE), and leave paths out", ErrInvalid, rs.Name, p, file)
		}
	}
	return nil
}

// snapshotManifest reads the manifest a dump ends with from the dump's
// last blobs alone, without reading the rest of it.
func snapshotManifest(ctx context.Context, rr *restic.Repo, snap restic.Snapshot, file string) (*dumptee.Record, error) {
	tail, err := rr.Tail(ctx, snap.ID, file, 0, func(b []byte) bool { return bytes.Contains(b, dumptee.TailMarker) })
	if err != nil {
		return nil, err
	}
	rec, found, err := dumptee.FromTail(tail)
	if err == nil && !found {
		err = fmt.Errorf("snapshot %s is tagged %s but its dump does not end with one", shortID(snap.ID), contract.TagManifest)
	}
	return rec, err
}

// checkSelection refuses, before anything changes, include patterns that
// select nothing the snapshot's manifest lists, and names what it holds.
func checkSelection(sel dumpfilter.Rules, m *manifest.Manifest, snapID string) error {
	names := contentsNames(m)
	var missing []string
	for _, p := range sel.Include {
		if !slices.ContainsFunc(names, func(n [2]string) bool { return p.Match(n[0], n[1]) }) {
			missing = append(missing, "--include "+p.String())
		}
	}
	if !slices.ContainsFunc(names, func(n [2]string) bool { return sel.Selects(n[0], n[1]) }) && len(missing) == 0 {
		missing = append(missing, sel.String())
	}
	for from := range sel.Rename {
		if !slices.Contains(m.Databases, from) {
			missing = append(missing, "--rename-database "+from+"=...")
		}
	}
	// An exclude whose database is not in the snapshot is a typo that would
	// restore what it meant to keep out (`msyql.*`: the accounts).
	for _, p := range sel.Exclude {
		if !slices.ContainsFunc(m.Databases, func(db string) bool { ok, _ := path.Match(p.DB, db); return ok }) {
			missing = append(missing, "--exclude "+p.String())
		}
	}
	if len(missing) == 0 {
		return nil
	}
	dbs := m.Databases
	more := ""
	if len(dbs) > 20 {
		dbs, more = dbs[:20], fmt.Sprintf(" and %d more", len(m.Databases)-20)
	}
	return fmt.Errorf("%w: the restore filter selects nothing for %s in snapshot %s, so nothing was restored and the database was not changed; it holds databases %s%s (list its tables with `kubectl stash snapshots REPO --contents %s`)",
		ErrInvalid, strings.Join(missing, ", "), shortID(snapID), strings.Join(dbs, ", "), more, shortID(snapID))
}

// contentsNames lists a manifest's tables, views and sequences as
// (database, name).
func contentsNames(m *manifest.Manifest) [][2]string {
	var out [][2]string
	for _, t := range m.Tables {
		out = append(out, [2]string{t.Database, t.Name})
	}
	for _, list := range [][]string{m.Views, m.Sequences} {
		for _, q := range list {
			db, name, _ := strings.Cut(q, ".")
			out = append(out, [2]string{db, name})
		}
	}
	return out
}

// restoredContents is the status's account of what a restore applied.
func restoredContents(sel dumpfilter.Rules, rep dumpfilter.Report) *stashv1beta1.RestoredContents {
	rc := &stashv1beta1.RestoredContents{Selection: sel.String(), Databases: rep.RestoredDatabases, Objects: len(rep.Restored), Available: rep.Objects, Accounts: rep.Accounts}
	rc.Warnings = rep.Warnings[:min(len(rep.Warnings), 20)]
	for _, p := range rep.Unmatched {
		rc.Warnings = append(rc.Warnings, fmt.Sprintf("--include %s selected nothing in the snapshot", p))
	}
	return rc
}

// checkCredentials says, after a restore replaced the target's accounts
// with the snapshot's, whether the AppBinding's Secret still logs in: ""
// when it does, else what to update.
func (a *Agent) checkCredentials(ctx context.Context, ab *appcatalog.AppBinding, conn database.Conn, client database.Client, files *database.Files) string {
	err := client.WaitReady(ctx, files, a.childEnv(), 15*time.Second, time.Second)
	if err == nil {
		return ""
	}
	secret := "its Secret"
	if ab.Spec.Secret != nil {
		secret = "Secret " + ab.Spec.Secret.Name
	}
	if errors.Is(err, database.ErrAccessDenied) {
		return fmt.Sprintf("the snapshot's accounts replaced the target's, and user %s of AppBinding %s no longer logs in with %s: update %s to the snapshot's password for %s (a restore with --exclude 'mysql.*' keeps the target's accounts)",
			conn.User, ab.Name, secret, secret, conn.User)
	}
	return fmt.Sprintf("the snapshot's accounts replaced the target's, and logging in as user %s of AppBinding %s could not be checked afterwards: %v", conn.User, ab.Name, err)
}

// loadConnections is how many connections load a restore: the agent's
// setting, or with 0, two per CPU of the target server (sqlload.AutoConnections).
func (a *Agent) loadConnections(ctx context.Context, client database.Client, files *database.Files) int {
	if a.cfg.RestoreConnections > 0 {
		return a.cfg.RestoreConnections
	}
	n, ok := client.ServerCPUs(ctx, files, a.childEnv())
	if !ok {
		n = 0
	}
	return sqlload.AutoConnections(n)
}

// skipBinlogArgs are the client arguments that keep a restore out of the
// target's binlog when the session asks for it.
func skipBinlogArgs(rs *stashv1beta1.RestoreSession) ([]string, error) {
	switch v := rs.Annotations[contract.AnnotationRestoreSkipBinlog]; v {
	case "", "false":
		return nil, nil
	case "true":
		return []string{"--init-command=SET SESSION sql_log_bin=0"}, nil
	default:
		return nil, fmt.Errorf("%w: annotation %s=%q of RestoreSession %s is neither true nor false (the database was not changed)", ErrInvalid, contract.AnnotationRestoreSkipBinlog, v, rs.Name)
	}
}
