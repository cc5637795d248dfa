package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/dumptee"
	"github.com/kubectl-stash/kubectl-stash/pkg/manifest"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
	"github.com/kubectl-stash/kubectl-stash/pkg/session"
)

// Contents is what `kubectl stash snapshots REPO --contents ID` prints.
type Contents struct {
	Snapshot string    `json:"snapshot"`
	Time     time.Time `json:"time"`
	// Source says where the list came from: the manifest the backup
	// stored, or a read of the whole dump.
	Source string `json:"source"`
	// Accounts is how many accounts the dump's mysql schema holds, when
	// it holds one.
	Accounts *int64             `json:"accounts,omitempty"`
	Manifest *manifest.Manifest `json:"manifest"`
}

// contents lists what one snapshot holds: its manifest, read from the
// dump's last blobs, or the dump read whole when it has none.
func (o *SnapshotsOptions) contents(ctx context.Context, rr *restic.Repo, snaps []restic.Snapshot) error {
	if o.Contents == contract.Latest {
		snaps = slices.DeleteFunc(snaps, contract.IsBinlogSnapshot)
	}
	pick, ok := contract.FindSnapshot(snaps, o.Contents, time.Time{})
	switch {
	case !ok:
		return usageErr("snapshot %q not found in Repository %s: list them with `kubectl stash snapshots %s`", o.Contents, o.Repository, o.Repository)
	case contract.IsBinlogSnapshot(pick):
		return usageErr("snapshot %s is an archived binlog file, not a dump: its contents are events, which `kubectl stash download %s --snapshot %s` and mariadb-binlog show", pick.ShortID, o.Repository, pick.ShortID)
	}
	file := "/dumpfile.sql"
	if len(pick.Paths) > 0 {
		file = pick.Paths[0]
	}
	c := Contents{Snapshot: pick.ShortID, Time: pick.Time}
	if slices.Contains(pick.Tags, contract.TagManifest) {
		tail, err := rr.Tail(ctx, pick.ID, file, 0, func(b []byte) bool { return bytes.Contains(b, dumptee.TailMarker) })
		if err != nil {
			return fmt.Errorf("read the manifest of snapshot %s: %w", pick.ShortID, err)
		}
		rec, found, err := dumptee.FromTail(tail)
		if err == nil && found {
			c.Source, c.Manifest = "manifest", rec.Manifest
		}
	}
	if c.Manifest == nil {
		fmt.Fprintf(o.streams.ErrOut, "snapshot %s has no manifest (taken before verification existed): reading its dump (%s)\n", pick.ShortID, file)
		b := manifest.NewBuilder()
		if err := rr.Dump(ctx, pick.ID, file, b); err != nil {
			return fmt.Errorf("read snapshot %s of Repository %s: %w", pick.ShortID, o.Repository, err)
		}
		c.Source, c.Manifest = "dump", b.Manifest()
	}
	for _, t := range c.Manifest.Tables {
		if t.Database == "mysql" && t.Name == "global_priv" {
			n := t.Rows
			c.Accounts = &n
		}
	}
	switch o.Output {
	case "json":
		enc := json.NewEncoder(o.streams.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(c)
	case "yaml":
		b, err := yaml.Marshal(c)
		if err != nil {
			return err
		}
		_, err = o.streams.Out.Write(b)
		return err
	}
	t := &table{}
	for _, col := range []string{"Database", "Kind", "Name", "Rows", "Size"} {
		t.column(col, 0)
	}
	m := c.Manifest
	for _, db := range m.Databases {
		t.row(db, "database", "", "", "")
		for _, tb := range m.Tables {
			if tb.Database == db {
				t.row(db, "table", tb.Name, strconv.FormatInt(tb.Rows, 10), session.HumanBytes(tb.Bytes))
			}
		}
		for _, l := range []struct {
			kind  string
			names []string
		}{{"view", m.Views}, {"sequence", m.Sequences}, {"routine", m.Routines}, {"trigger", m.Triggers}, {"event", m.Events}} {
			for _, q := range l.names {
				if d, name, _ := strings.Cut(q, "."); d == db {
					t.row(db, l.kind, name, "", "")
				}
			}
		}
	}
	if err := t.print(o.streams.Out, false); err != nil {
		return err
	}
	if c.Accounts != nil {
		fmt.Fprintf(o.streams.ErrOut, "snapshot %s holds the mysql schema with %d accounts: a full restore replaces the target's accounts (--exclude 'mysql.*' keeps them)\n", pick.ShortID, *c.Accounts)
	}
	return nil
}
