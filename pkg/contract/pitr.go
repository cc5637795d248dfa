package contract

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
)

// Point-in-time recovery is switched on per BackupConfiguration by
// annotations, so Stash YAML stays valid and a Stash object without them
// keeps its meaning.
const (
	// AnnotationPITR turns binlog archiving on ("true") or off ("false").
	AnnotationPITR = "stash.appscode.com/pitr"
	// AnnotationPITRInterval is how often what was received is committed
	// to the Repository (a Go duration, at least 1s; default 30s).
	AnnotationPITRInterval = "stash.appscode.com/pitr-interval"
)

// A restore to a transaction: the binlog is replayed up to the one with
// this GTID, and through it unless AnnotationRestoreGTIDExclusive is "true".
const (
	AnnotationRestoreToGTID        = "stash.appscode.com/restore-to-gtid"
	AnnotationRestoreGTIDExclusive = "stash.appscode.com/restore-gtid-exclusive"
	// AnnotationRestoreAllowGap "true" replays the archive across a gap
	// (events the archive never received are missing from the result);
	// without it a restore that would cross one is refused.
	AnnotationRestoreAllowGap = "stash.appscode.com/restore-allow-gap"
	// AnnotationRestoreReadOnly holds the target read-only for every other
	// client while the restore runs: "true" by default for a restore to a
	// point in time, "false" for a plain one.
	AnnotationRestoreReadOnly = "stash.appscode.com/restore-read-only"
	// AnnotationRestoreRenameDatabase restores databases under other
	// names: "shop=shop_restored,crm=crm_copy".
	AnnotationRestoreRenameDatabase = "stash.appscode.com/restore-rename-database"
	// AnnotationRestoreSkipBinlog "true" keeps the restore out of the
	// target's binlog (sql_log_bin=0), for a target whose replicas will
	// be seeded again; "false" (the default) replicates it.
	AnnotationRestoreSkipBinlog = "stash.appscode.com/restore-skip-binlog"
)

// ParseGTID reads a MariaDB GTID, domain-server-sequence.
func ParseGTID(s string) (domain, server uint32, seq uint64, err error) {
	parts := strings.Split(strings.TrimSpace(s), "-")
	if len(parts) == 3 {
		d, err1 := strconv.ParseUint(parts[0], 10, 32)
		sv, err2 := strconv.ParseUint(parts[1], 10, 32)
		n, err3 := strconv.ParseUint(parts[2], 10, 64)
		if err1 == nil && err2 == nil && err3 == nil {
			return uint32(d), uint32(sv), n, nil
		}
	}
	return 0, 0, 0, fmt.Errorf("GTID %q: want domain-server-sequence, such as 0-1-4711", s)
}

// DefaultPITRInterval is the commit interval without AnnotationPITRInterval.
const DefaultPITRInterval = 30 * time.Second

// PITR is a config's point-in-time recovery setting.
type PITR struct {
	On       bool
	Interval time.Duration
}

// ParsePITR reads the annotations; an error names the annotation and the fix.
func ParsePITR(annotations map[string]string) (PITR, error) {
	p := PITR{Interval: DefaultPITRInterval}
	v, ok := annotations[AnnotationPITR]
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "enabled", "on":
		p.On = true
	case "false", "disabled", "off":
	case "":
		if ok {
			return p, fmt.Errorf("annotation %s is empty: set it to \"true\" or \"false\"", AnnotationPITR)
		}
	default:
		return p, fmt.Errorf("annotation %s=%q: want \"true\" or \"false\"", AnnotationPITR, v)
	}
	if s, ok := annotations[AnnotationPITRInterval]; ok {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d < time.Second || d > time.Hour {
			return p, fmt.Errorf("annotation %s=%q: want a duration from 1s to 1h, such as 30s", AnnotationPITRInterval, s)
		}
		if !p.On {
			return p, fmt.Errorf("annotation %s is set but %s is not \"true\": turn point-in-time recovery on, or remove the interval", AnnotationPITRInterval, AnnotationPITR)
		}
		p.Interval = d
	}
	return p, nil
}

// BinlogHost is the restic host of archived binlog files: apart from the
// dumps (BackupHost), so that neither's lookups or retention see the other.
const BinlogHost = "binlog-0"

// TagPITR marks every archived binlog snapshot.
const TagPITR = "pitr"

// IsBinlogSnapshot says whether a snapshot is an archived binlog file
// rather than a dump.
func IsBinlogSnapshot(s restic.Snapshot) bool {
	return s.Hostname == BinlogHost || slices.Contains(s.Tags, TagPITR)
}

// ScopeTag says what a dump with binlog coordinates holds, so that a
// replay on top of it applies the same: "scope=all", "scope=db:NAME" (one
// whole database), or "scope=partial" (several databases, or some tables).
func ScopeTag(all bool, db string) string {
	switch {
	case all:
		return "scope=all"
	case db != "" && !strings.Contains(db, ","): // restic splits tags on commas
		return "scope=db:" + db
	}
	return "scope=partial"
}

// TagBinlogCoordinates marks a dump that records the binlog position of
// its snapshot (--master-data=2): a point-in-time restore can start there.
const TagBinlogCoordinates = "binlog-coordinates"

// BinlogFile is the path of an archived binlog file inside its snapshot.
func BinlogFile(appBinding, file string) string {
	return "/binlog/" + strings.Trim(DumpFile(appBinding), "/") + "/" + file
}

// BinlogVersion is one archived version of a binlog file: the file up to
// its last whole event, committed at one time. A growing file is
// committed again and again; each version is a prefix of the next.
type BinlogVersion struct {
	Snapshot string // restic snapshot ID (empty before it is written)
	File     string // the server's file name, e.g. mysql-bin.000003
	Size     int64  // bytes, up to the end of the last whole event
	// First and Last are the times of its first and last event; Committed
	// is when the version was cut: the stream was live then, so the
	// archive is complete up to that moment.
	First, Last, Committed time.Time
	FirstGTID, LastGTID    string
	Transactions           int
	Closed                 bool // the server rotated away from it
}

// Tags encode a version as restic tags (no commas).
func (v BinlogVersion) Tags(appBinding string) []string {
	t := []string{TagPITR, "appbinding=" + appBinding, "binlog=" + v.File, "size=" + strconv.FormatInt(v.Size, 10),
		"first=" + unix(v.First), "last=" + unix(v.Last), "committed=" + unix(v.Committed), "trx=" + strconv.Itoa(v.Transactions)}
	if v.FirstGTID != "" {
		t = append(t, "first-gtid="+v.FirstGTID, "last-gtid="+v.LastGTID)
	}
	if v.Closed {
		t = append(t, "closed=true")
	}
	return t
}

func unix(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.Unix(), 10)
}

// ParseBinlogVersion reads a version back from a snapshot's tags.
func ParseBinlogVersion(id string, tags []string) (BinlogVersion, bool) {
	v := BinlogVersion{Snapshot: id}
	pitr := false
	at := func(s string) time.Time {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n == 0 {
			return time.Time{}
		}
		return time.Unix(n, 0).UTC()
	}
	for _, t := range tags {
		k, val, _ := strings.Cut(t, "=")
		switch k {
		case TagPITR:
			pitr = true
		case "binlog":
			v.File = val
		case "size":
			v.Size, _ = strconv.ParseInt(val, 10, 64)
		case "first":
			v.First = at(val)
		case "last":
			v.Last = at(val)
		case "committed":
			v.Committed = at(val)
		case "trx":
			v.Transactions, _ = strconv.Atoi(val)
		case "first-gtid":
			v.FirstGTID = val
		case "last-gtid":
			v.LastGTID = val
		case "closed":
			v.Closed = val == "true"
		}
	}
	return v, pitr && v.File != "" && v.Size > 0
}

// LatestVersions keeps the newest (largest) version of each file, in the
// order they were written, and returns the superseded ones apart. A file is its name and its
// start: after a binlog reset (or on another server) the same name is
// another file, kept apart, after the older one.
func LatestVersions(vs []BinlogVersion) (latest, superseded []BinlogVersion) {
	by := map[string]BinlogVersion{}
	for _, v := range vs {
		key := v.File + "@" + unix(v.First)
		cur, ok := by[key]
		switch {
		case !ok:
			by[key] = v
		case v.Size > cur.Size || (v.Size == cur.Size && v.Committed.After(cur.Committed)):
			by[key] = v
			superseded = append(superseded, cur)
		default:
			superseded = append(superseded, v)
		}
	}
	for _, v := range by {
		latest = append(latest, v)
	}
	// In the order the server wrote them: a file starts when the one
	// before ended (its format event's time), and a new server's after an
	// old one's; names break ties within a second.
	sort.Slice(latest, func(i, j int) bool {
		if !latest[i].First.Equal(latest[j].First) {
			return latest[i].First.Before(latest[j].First)
		}
		return BinlogLess(latest[i].File, latest[j].File)
	})
	return latest, superseded
}

// BinlogLess orders binlog file names by their numeric suffix, which is
// how the server numbers them (name.000009 < name.000010 < name.1000000).
func BinlogLess(a, b string) bool {
	ab, an := splitBinlog(a)
	bb, bn := splitBinlog(b)
	if ab != bb {
		return ab < bb
	}
	return an < bn
}

// NextBinlog says b is the file the server writes after a.
func NextBinlog(a, b string) bool {
	ab, an := splitBinlog(a)
	bb, bn := splitBinlog(b)
	return ab == bb && an >= 0 && bn == an+1
}

func splitBinlog(name string) (string, int64) {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return name, -1
	}
	n, err := strconv.ParseInt(name[i+1:], 10, 64)
	if err != nil {
		return name, -1
	}
	return name[:i], n
}
