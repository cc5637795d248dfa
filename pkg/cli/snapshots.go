package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/repository"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
	"github.com/kubectl-stash/kubectl-stash/pkg/session"
)

// ErrNoRestic is returned when restic cannot be found locally.
var ErrNoRestic = errors.New("restic not found")

// localRepo opens a Repository from this machine: restic runs here with the
// credentials read from the Repository's Secret, passed in its environment.
func localRepo(ctx context.Context, c *Clients, name string) (*restic.Repo, func(), error) {
	repo, err := c.Stash.Repositories(c.Namespace).Get(ctx, name)
	if apierrors.IsNotFound(err) {
		return nil, nil, usageErr("Repository %s not found in namespace %s", name, c.Namespace)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read Repository %s/%s: %w", c.Namespace, name, err)
	}
	sec, err := c.Kube.CoreV1().Secrets(c.Namespace).Get(ctx, repo.Spec.Backend.StorageSecretName, metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("read Secret %s/%s of Repository %s: %w", c.Namespace, repo.Spec.Backend.StorageSecretName, name, err)
	}
	if l := repo.Spec.Backend.Local; l != nil {
		if _, err := os.Stat(filepath.Join(l.MountPath, l.SubPath)); err != nil {
			return nil, nil, usageErr("Repository %s is a local volume (%s) that is not mounted on this machine: run restic where it is mounted", name, l.MountPath)
		}
	}
	bin, err := findRestic()
	if err != nil {
		return nil, nil, err
	}
	scratch, err := os.MkdirTemp("", "kubectl-stash-")
	if err != nil {
		return nil, nil, err
	}
	rr, cleanup, err := repository.Config(repo, sec.Data, scratch, bin)
	if err != nil {
		os.RemoveAll(scratch)
		return nil, nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	rr.CacheDir = ""
	return rr, func() { cleanup(); os.RemoveAll(scratch) }, nil
}

// findRestic looks next to the plugin binary, then on PATH.
func findRestic() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "restic")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("restic"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w on PATH or next to kubectl-stash: install restic 0.17 or newer (https://restic.readthedocs.io/en/stable/020_installation.html, or `go install github.com/restic/restic/cmd/restic@v0.18.1`)", ErrNoRestic)
}

// SnapshotsOptions lists a repository's snapshots.
type SnapshotsOptions struct {
	factory    *Factory
	streams    genericiooptions.IOStreams
	Output     string
	Repository string
	// Binlog lists the archived binlog files as well as the dumps.
	Binlog bool
	// Contents lists what one snapshot holds instead.
	Contents string
}

func newSnapshotsCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &SnapshotsOptions{factory: f, streams: streams}
	cmd := &cobra.Command{
		Use:   "snapshots REPOSITORY [-o json|yaml]",
		Short: "List a Repository's snapshots (restic runs on this machine with the Repository's credentials)",
		Example: `  kubectl stash snapshots s3-repo
  kubectl stash snapshots s3-repo -o json
  kubectl stash snapshots s3-repo --contents 4bf6100f     # databases, tables with rows and sizes, views, routines, triggers, events`,
		Args:              exactName,
		ValidArgsFunction: completeNames(f, "repositories"),
		RunE:              runE(o),
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "output format: json or yaml; a table when empty")
	cmd.Flags().StringVar(&o.Contents, "contents", "", "list what this snapshot (an ID, or latest) holds, without restoring it: from its manifest, else by reading its dump")
	cmd.Flags().BoolVar(&o.Binlog, "binlog", false, "list the archived binlog files of point-in-time recovery too (host "+contract.BinlogHost+")")
	return cmd
}

// Complete takes the Repository's name.
func (o *SnapshotsOptions) Complete(args []string) error {
	o.Repository = args[0]
	return nil
}

// Validate checks -o.
func (o *SnapshotsOptions) Validate() error {
	switch o.Output {
	case "", "json", "yaml":
		return nil
	}
	return usageErr("-o %q is not supported: use json or yaml", o.Output)
}

// Snapshot is one row of `kubectl stash snapshots`.
type Snapshot struct {
	ID         string    `json:"id"`
	Time       time.Time `json:"time"`
	Host       string    `json:"host"`
	Size       int64     `json:"size"`
	Tags       []string  `json:"tags,omitempty"`
	Paths      []string  `json:"paths,omitempty"`
	Repository string    `json:"repository"`
}

// Run lists.
func (o *SnapshotsOptions) Run(ctx context.Context) error {
	c, err := o.factory.Clients()
	if err != nil {
		return err
	}
	name := o.Repository
	rr, cleanup, err := localRepo(ctx, c, name)
	if err != nil {
		return err
	}
	defer cleanup()
	snaps, err := rr.Snapshots(ctx, "", nil)
	if err != nil {
		return fmt.Errorf("list snapshots of Repository %s: %w", name, err)
	}
	if o.Contents != "" {
		return o.contents(ctx, rr, snaps)
	}
	rows := make([]Snapshot, 0, len(snaps))
	hidden := 0
	for _, s := range snaps {
		if !o.Binlog && contract.IsBinlogSnapshot(s) {
			hidden++
			continue
		}
		r := Snapshot{ID: s.ShortID, Time: s.Time, Host: s.Hostname, Tags: s.Tags, Paths: s.Paths, Repository: name}
		if s.Summary != nil {
			r.Size = int64(s.Summary.TotalBytesProcessed)
		}
		rows = append(rows, r)
	}
	if hidden > 0 {
		fmt.Fprintf(o.streams.ErrOut, "%d archived binlog files of point-in-time recovery not shown: --binlog lists them\n", hidden)
	}
	return printSnapshots(o.streams.Out, o.Output, rows)
}

func printSnapshots(out io.Writer, format string, rows []Snapshot) error {
	switch format {
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
	t := &table{}
	for _, c := range []string{"ID", "Time", "Host", "Size", "Tags"} {
		t.column(c, 0)
	}
	for _, r := range rows {
		t.row(r.ID, r.Time.UTC().Format(time.RFC3339), r.Host, session.HumanBytes(r.Size), strings.Join(r.Tags, ","))
	}
	return t.print(out, false)
}

// DownloadOptions writes a snapshot's dump to a local file.
type DownloadOptions struct {
	factory    *Factory
	streams    genericiooptions.IOStreams
	Repository string
	Snapshot   string
	// ToFile is the file to write: "" for <snapshot>.sql, - for stdout.
	ToFile string
	// Output is -o, which is an output format everywhere else and so is
	// refused here: an old `-o FILE` must fail, not write a file named json.
	Output string
}

func newDownloadCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &DownloadOptions{factory: f, streams: streams}
	cmd := &cobra.Command{
		Use:   "download REPOSITORY --snapshot ID [--to-file FILE]",
		Short: "Write a snapshot's SQL dump to a local file (or stdout with --to-file -)",
		Example: `  kubectl stash download s3-repo --snapshot latest --to-file mysql.sql
  kubectl stash download s3-repo --snapshot 4bf6100f --to-file - | head`,
		Args:              exactName,
		ValidArgsFunction: completeNames(f, "repositories"),
		RunE:              runE(o),
	}
	cmd.Flags().StringVar(&o.Snapshot, "snapshot", "", "snapshot ID, or latest")
	cmd.Flags().StringVar(&o.ToFile, "to-file", "", "file to write (default: <snapshot>.sql; - for stdout)")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "not supported: download writes a file; use --to-file")
	_ = cmd.Flags().MarkHidden("output")
	return cmd
}

// Complete takes the Repository's name.
func (o *DownloadOptions) Complete(args []string) error {
	o.Repository = args[0]
	return nil
}

// Validate checks flags.
func (o *DownloadOptions) Validate() error {
	if o.Output != "" {
		return usageErr("download has no -o/--output: -o is an output format in kubectl stash, and download writes a file; use --to-file %s (or --to-file - for stdout)", o.Output)
	}
	if o.Snapshot == "" {
		return usageErr("--snapshot is required (an ID from `kubectl stash snapshots %s`, or latest)", o.Repository)
	}
	return nil
}

// Run downloads.
func (o *DownloadOptions) Run(ctx context.Context) error {
	c, err := o.factory.Clients()
	if err != nil {
		return err
	}
	name := o.Repository
	rr, cleanup, err := localRepo(ctx, c, name)
	if err != nil {
		return err
	}
	defer cleanup()
	snaps, err := rr.Snapshots(ctx, "", nil)
	if err != nil {
		return fmt.Errorf("list snapshots of Repository %s: %w", name, err)
	}
	if o.Snapshot == contract.Latest {
		// The newest dump: the binlog archive commits far more often.
		snaps = slices.DeleteFunc(snaps, contract.IsBinlogSnapshot)
	}
	pick, ok := contract.FindSnapshot(snaps, o.Snapshot, time.Time{})
	if !ok {
		return usageErr("snapshot %q not found in Repository %s: list them with `kubectl stash snapshots %s`", o.Snapshot, name, name)
	}
	file := "/dumpfile.sql"
	if len(pick.Paths) > 0 {
		file = pick.Paths[0]
	}
	out := o.ToFile
	if out == "" {
		out = pick.ShortID + ".sql"
		if contract.IsBinlogSnapshot(pick) {
			out = pick.ShortID + ".binlog" // the raw file, for mariadb-binlog
		}
	}
	var w io.Writer = o.streams.Out
	if out != "-" {
		tmp := out + ".part"
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("create %s: %w", out, err)
		}
		err = rr.Dump(ctx, pick.ID, file, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
			return fmt.Errorf("download snapshot %s of Repository %s: %w", pick.ShortID, name, err)
		}
		if err := os.Rename(tmp, out); err != nil {
			return err
		}
		st, _ := os.Stat(out)
		fmt.Fprintf(o.streams.ErrOut, "snapshot %s (%s) written to %s (%s)\n", pick.ShortID, file, out, session.HumanBytes(st.Size()))
		return nil
	}
	if err := rr.Dump(ctx, pick.ID, file, w); err != nil {
		return fmt.Errorf("download snapshot %s of Repository %s: %w", pick.ShortID, name, err)
	}
	return nil
}
