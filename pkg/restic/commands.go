package restic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Exists reports whether the repository exists (`restic cat config`).
// A wrong password is an error wrapping ErrWrongPassword.
func (r *Repo) Exists(ctx context.Context) (bool, error) {
	err := r.run(ctx, "cat config", []string{"cat", "config"}, nil, nil)
	if errors.Is(err, ErrRepoNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Init creates the repository unless it exists; created says whether it did.
func (r *Repo) Init(ctx context.Context) (created bool, err error) {
	exists, err := r.Exists(ctx)
	if err != nil || exists {
		return false, err
	}
	if err := r.run(ctx, "init", []string{"init"}, nil, nil); err != nil {
		// Someone else may have created it since we looked.
		if exists, _ := r.Exists(ctx); exists {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// BackupOptions describes one backup of a command's output.
type BackupOptions struct {
	Host          string            // --host; "" means restic's default (the hostname)
	StdinFilename string            // --stdin-filename; "" means restic's default
	Command       []string          // run by restic after --stdin-from-command --, no shell
	Stdin         io.Reader         // or, without Command, read by restic --stdin
	Tags          []string          // --tag each; no commas
	Compression   string            // --compression when non-empty: auto, off, max
	PackSize      int               // --pack-size in MiB when > 0
	Progress      func(Status)      // called for each status line, from one goroutine; may be nil
	ExtraEnv      map[string]string // extra environment for restic and Command; may hold secrets
}

// Backup stores the standard output of o.Command as one file in a new
// snapshot (`restic backup --stdin-from-command`). A failing Command gives
// an error wrapping ErrCommandFailed and no snapshot. Canceling ctx sends
// SIGTERM to restic and Command, then kills them after 10s.
//
// If restic exits 3 (snapshot written, source incomplete) both the summary
// and an error wrapping ErrIncomplete are returned. With Repo.StallTimeout,
// a stream that stopped moving (restic not reading a dump blocked on its
// pipe) is stopped with an error wrapping ErrStalled and restic's cause.
//
// Command's arguments are visible to other local processes: pass its
// secrets through ExtraEnv. Command also sees Repo.Env.
func (r *Repo) Backup(ctx context.Context, o BackupOptions) (*Summary, error) {
	if (len(o.Command) == 0) == (o.Stdin == nil) {
		return nil, errors.New("restic backup: give a command or stdin")
	}
	if err := checkTags(o.Tags); err != nil {
		return nil, fmt.Errorf("restic backup: %w", err)
	}
	watch := r.newStallWatch(true)
	args := []string{"backup"}
	if o.Progress == nil && watch == nil {
		args = append(args, "--quiet") // the summary is still printed
	}
	if o.Host != "" {
		args = append(args, "--host="+o.Host)
	}
	if o.StdinFilename != "" {
		args = append(args, "--stdin-filename="+o.StdinFilename)
	}
	for _, t := range o.Tags {
		args = append(args, "--tag="+t)
	}
	if o.Compression != "" {
		args = append(args, "--compression="+o.Compression)
	}
	if o.PackSize > 0 {
		args = append(args, "--pack-size="+strconv.Itoa(o.PackSize))
	}
	if o.Stdin != nil {
		args = append(args, "--stdin")
	} else {
		args = append(args, "--stdin-from-command", "--")
		args = append(args, o.Command...)
	}

	var summary *Summary
	out := &lineSplitter{max: maxLine, emit: func(line []byte, tooLong bool) {
		if tooLong {
			return
		}
		ev, err := DecodeLine(line)
		if err != nil {
			return // garbled lines are not worth failing a backup for
		}
		switch {
		case ev.Status != nil:
			if watch != nil {
				watch.progress.Store(ev.Status.BytesDone)
			}
			if o.Progress != nil {
				o.Progress(*ev.Status)
			}
		case ev.Summary != nil:
			summary = ev.Summary
		}
	}}
	err := r.runWatched(ctx, "backup", args, o.ExtraEnv, o.Stdin, out, watch)
	out.flush()
	if err != nil {
		if errors.Is(err, ErrIncomplete) {
			return summary, err // a snapshot was written anyway
		}
		return nil, err
	}
	if summary == nil {
		return nil, errors.New("restic backup: exited 0 without a summary")
	}
	return summary, nil
}

func checkTags(tags []string) error {
	for _, t := range tags {
		// restic splits tag values on commas.
		if t == "" || strings.Contains(t, ",") {
			return fmt.Errorf("invalid tag %q", t)
		}
	}
	return nil
}

// Snapshot is one entry of `restic snapshots --json`.
type Snapshot struct {
	ID             string           `json:"id"`
	ShortID        string           `json:"short_id"`
	Time           time.Time        `json:"time"`
	Parent         string           `json:"parent,omitempty"`
	Tree           string           `json:"tree"`
	Hostname       string           `json:"hostname"`
	Username       string           `json:"username"`
	Paths          []string         `json:"paths"`
	Tags           []string         `json:"tags"`
	ProgramVersion string           `json:"program_version"`
	Summary        *SnapshotSummary `json:"summary"` // restic 0.17+
}

// SnapshotSummary is the backup summary stored in a snapshot.
type SnapshotSummary struct {
	BackupStart         time.Time `json:"backup_start"`
	BackupEnd           time.Time `json:"backup_end"`
	FilesNew            uint64    `json:"files_new"`
	FilesChanged        uint64    `json:"files_changed"`
	FilesUnmodified     uint64    `json:"files_unmodified"`
	DirsNew             uint64    `json:"dirs_new"`
	DirsChanged         uint64    `json:"dirs_changed"`
	DirsUnmodified      uint64    `json:"dirs_unmodified"`
	DataBlobs           uint64    `json:"data_blobs"`
	TreeBlobs           uint64    `json:"tree_blobs"`
	DataAdded           uint64    `json:"data_added"`
	DataAddedPacked     uint64    `json:"data_added_packed"`
	TotalFilesProcessed uint64    `json:"total_files_processed"`
	TotalBytesProcessed uint64    `json:"total_bytes_processed"`
}

// BackupSummary is the summary restic printed when it saved the snapshot,
// rebuilt from the copy stored in it; nil for snapshots of restic < 0.17.
func (s Snapshot) BackupSummary() *Summary {
	m := s.Summary
	if m == nil {
		return nil
	}
	return &Summary{
		SnapshotID: s.ID, FilesNew: m.FilesNew, FilesChanged: m.FilesChanged, FilesUnmodified: m.FilesUnmodified,
		DirsNew: m.DirsNew, DirsChanged: m.DirsChanged, DirsUnmodified: m.DirsUnmodified,
		DataBlobs: m.DataBlobs, TreeBlobs: m.TreeBlobs, DataAdded: m.DataAdded, DataAddedPacked: m.DataAddedPacked,
		TotalFilesProcessed: m.TotalFilesProcessed, TotalBytesProcessed: m.TotalBytesProcessed,
		TotalDuration: m.BackupEnd.Sub(m.BackupStart).Seconds(), BackupStart: m.BackupStart, BackupEnd: m.BackupEnd,
	}
}

// Snapshots lists snapshots, oldest first. host filters when set; tags
// filters to snapshots carrying all of them.
func (r *Repo) Snapshots(ctx context.Context, host string, tags []string) ([]Snapshot, error) {
	if err := checkTags(tags); err != nil {
		return nil, fmt.Errorf("restic snapshots: %w", err)
	}
	args := []string{"snapshots"}
	if host != "" {
		args = append(args, "--host="+host)
	}
	if len(tags) > 0 {
		args = append(args, "--tag="+strings.Join(tags, ",")) // one list: AND
	}
	var snaps []Snapshot
	if err := r.runJSON(ctx, "snapshots", args, &snaps); err != nil {
		return nil, err
	}
	return snaps, nil
}

// Policy says which snapshots Forget keeps. Snapshots are grouped the
// restic way (by host and paths).
type Policy struct {
	KeepLast    int
	KeepHourly  int
	KeepDaily   int
	KeepWeekly  int
	KeepMonthly int
	KeepYearly  int
	KeepTags    []string
	Prune       bool   // also prune data no snapshot uses any more
	DryRun      bool   // only report what would be removed
	Host        string // only consider this host's snapshots
}

// Forget removes the snapshots the policy does not keep and returns their
// IDs (those that would be removed, with DryRun). An empty policy is an
// error rather than "remove everything".
//
// With Prune it runs `forget --prune` in one restic run (one lock) and
// decodes only the first JSON value on stdout, since prune's plain-text
// report follows it.
func (r *Repo) Forget(ctx context.Context, p Policy) (removed []string, err error) {
	keeps := []struct {
		flag string
		n    int
	}{
		{"--keep-last", p.KeepLast}, {"--keep-hourly", p.KeepHourly}, {"--keep-daily", p.KeepDaily},
		{"--keep-weekly", p.KeepWeekly}, {"--keep-monthly", p.KeepMonthly}, {"--keep-yearly", p.KeepYearly},
	}
	var rules []string
	for _, k := range keeps {
		if k.n < 0 {
			return nil, fmt.Errorf("restic forget: %s must not be negative", k.flag)
		}
		if k.n > 0 {
			rules = append(rules, k.flag+"="+strconv.Itoa(k.n))
		}
	}
	if err := checkTags(p.KeepTags); err != nil {
		return nil, fmt.Errorf("restic forget: %w", err)
	}
	for _, t := range p.KeepTags {
		rules = append(rules, "--keep-tag="+t)
	}
	if len(rules) == 0 {
		return nil, errors.New("restic forget: empty policy would remove every snapshot")
	}
	// --quiet keeps prune's report short; the JSON is printed regardless.
	args := append([]string{"forget", "--quiet"}, rules...)
	if p.Host != "" {
		args = append(args, "--host="+p.Host)
	}
	if p.Prune {
		args = append(args, "--prune")
	}
	if p.DryRun {
		args = append(args, "--dry-run")
	}

	var groups []struct {
		Remove []Snapshot `json:"remove"`
	}
	if err := r.runJSON(ctx, "forget", args, &groups); err != nil {
		return nil, err
	}
	for _, g := range groups {
		for _, s := range g.Remove {
			removed = append(removed, s.ID)
		}
	}
	return removed, nil
}

// Stats returns the repository's stored size and snapshot count
// (`restic stats --mode raw-data`).
func (r *Repo) Stats(ctx context.Context) (totalSize uint64, snapshots int, err error) {
	var st struct {
		TotalSize      uint64 `json:"total_size"`
		SnapshotsCount int    `json:"snapshots_count"`
	}
	if err := r.runJSON(ctx, "stats", []string{"stats", "--mode=raw-data"}, &st); err != nil {
		return 0, 0, err
	}
	return st.TotalSize, st.SnapshotsCount, nil
}

// Dump streams one file of a snapshot into w (`restic dump`). snapshot may
// be an ID, a short ID or "latest".
func (r *Repo) Dump(ctx context.Context, snapshot, filename string, w io.Writer) error {
	if snapshot == "" || filename == "" {
		return errors.New("restic dump: snapshot and filename are required")
	}
	return r.dump(ctx, []string{"dump", "--", snapshot, filename}, w)
}

// DumpTar writes dir of snapshot to w as a tar archive; "/" is the whole
// snapshot.
func (r *Repo) DumpTar(ctx context.Context, snapshot, dir string, w io.Writer) error {
	if snapshot == "" || dir == "" {
		return errors.New("restic dump: snapshot and dir are required")
	}
	return r.dump(ctx, []string{"dump", "--archive=tar", "--", snapshot, dir}, w)
}

// dump runs restic dump with args into w; when w failed, w's error is the
// cause worth reporting.
func (r *Repo) dump(ctx context.Context, args []string, w io.Writer) error {
	ew := &errWriter{w: w}
	var out io.Writer = ew
	watch := r.newStallWatch(false)
	if watch != nil {
		out = meterWriter{w: ew, watch: watch}
	}
	err := r.runWatched(ctx, "dump", args, nil, nil, out, watch)
	if ew.err != nil {
		return fmt.Errorf("restic dump: write: %w", ew.err)
	}
	return err
}

// Unlock removes stale locks, or all locks with removeAll.
func (r *Repo) Unlock(ctx context.Context, removeAll bool) error {
	args := []string{"unlock"}
	if removeAll {
		args = append(args, "--remove-all")
	}
	return r.run(ctx, "unlock", args, nil, nil)
}

// Check verifies the repository; readDataSubset, when set, is passed to
// --read-data-subset (e.g. "5%", "1/10").
func (r *Repo) Check(ctx context.Context, readDataSubset string) error {
	args := []string{"check"}
	if readDataSubset != "" {
		args = append(args, "--read-data-subset="+readDataSubset)
	}
	return r.run(ctx, "check", args, nil, nil)
}

// runJSON runs a command and decodes the first JSON value of its stdout
// into v; empty output leaves v alone.
func (r *Repo) runJSON(ctx context.Context, op string, args []string, v any) error {
	out := &capBuffer{max: maxJSONOutput}
	if err := r.run(ctx, op, args, nil, out); err != nil {
		return err
	}
	if out.overflow {
		return fmt.Errorf("restic %s: output exceeds %d bytes", op, maxJSONOutput)
	}
	err := json.NewDecoder(bytes.NewReader(out.buf.Bytes())).Decode(v)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("restic %s: decode output: %w", op, err)
	}
	return nil
}

// capBuffer keeps up to max bytes and silently drops the rest, so restic
// is never stopped by a broken pipe; overflow is reported afterwards.
type capBuffer struct {
	buf      bytes.Buffer
	max      int
	overflow bool
}

func (b *capBuffer) Write(p []byte) (int, error) {
	if b.overflow || b.buf.Len()+len(p) > b.max {
		b.overflow = true
		return len(p), nil
	}
	return b.buf.Write(p)
}

// errWriter remembers the first write error of w.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// ForgetIDs removes the given snapshots, and their data with prune. Nothing
// happens without IDs: forgetting everything must be spelled out.
func (r *Repo) ForgetIDs(ctx context.Context, ids []string, prune bool) error {
	if len(ids) == 0 {
		return errors.New("restic forget: no snapshot IDs given")
	}
	args := []string{"forget", "--quiet"}
	if prune {
		args = append(args, "--prune")
	}
	args = append(args, "--")
	args = append(args, ids...)
	return r.run(ctx, "forget", args, nil, io.Discard)
}
