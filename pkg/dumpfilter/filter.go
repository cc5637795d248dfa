package dumpfilter

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/kubectl-stash/kubectl-stash/pkg/database"
)

// ErrNothingSelected: the rules select nothing the dump holds. Nothing was
// written, so the target was not changed.
var ErrNothingSelected = errors.New("the restore filter selects nothing in this snapshot")

// maxLine bounds the part of a line held to read or rename it. Data lines
// are recognised by their first bytes and never held.
const maxLine = 1 << 20

// decideAt is how much of a line is enough to tell a data line.
const decideAt = 16

var (
	flushPrivileges = []byte("/*! FLUSH PRIVILEGES */;")
	manifestTrailer = []byte("-- stash-manifest: ")
	useLine         = regexp.MustCompile("^USE `((?:[^`]|``)+)`;$")
	dropDatabase    = regexp.MustCompile("^(/\\*!40000 )?DROP DATABASE (?:IF EXISTS )?`((?:[^`]|``)+)`")
	createDatabase  = regexp.MustCompile("^(CREATE DATABASE (?:/\\*!32312 IF NOT EXISTS\\*/ |IF NOT EXISTS )?)`((?:[^`]|``)+)`")
	hostDatabase    = regexp.MustCompile(`^-- Host: .*\bDatabase: (.+)$`)
	references      = regexp.MustCompile("REFERENCES `((?:[^`]|``)+)`(?:\\.`((?:[^`]|``)+)`)? ?\\(")
	// Section titles, after "-- ".
	titleDatabase = regexp.MustCompile("^Current Database: `((?:[^`]|``)+)`$")
	titleTable    = regexp.MustCompile("^(?:Table structure for table|Dumping data for table) `((?:[^`]|``)+)`$")
	titleView     = regexp.MustCompile("^(?:Temporary table|Temporary view|Final view) structure for view `((?:[^`]|``)+)`$")
	titleSequence = regexp.MustCompile("^Sequence structure for `((?:[^`]|``)+)`$")
	titlePerDB    = regexp.MustCompile("^Dumping (routines|events) for database '((?:[^']|'')+)'$")
)

// Report says what a filtered stream held and what went through.
type Report struct {
	// Databases are the databases the dump holds, in dump order.
	Databases []string
	// Objects counts the tables, views and sequences the dump holds.
	Objects int
	// Restored are the tables, views and sequences passed on, by their
	// names in the dump ("db.name").
	Restored []string
	// RestoredDatabases are the databases passed on, as restored (renamed).
	RestoredDatabases []string
	// Routines lists the databases whose routines and events went through.
	Routines []string
	// Accounts: tables of the mysql schema's accounts and grants went
	// through, so the target's accounts are replaced.
	Accounts bool
	// Unmatched are include patterns that selected nothing.
	Unmatched []string
	// Warnings name what the selection may break: a foreign key to a table
	// left out, a section the filter did not know and left out.
	Warnings []string
}

// Writer filters a dump stream into another writer.
type Writer struct {
	w     io.Writer
	r     Rules
	renam *strings.Replacer
	// bare finds a renamed database's name unquoted before a dot, as
	// routine and trigger bodies keep it the way it was written.
	bare *regexp.Regexp
	// all: the rules are empty, so every byte goes through unchanged and
	// the Writer only reports what the dump holds.
	all bool

	held     []byte // the current line so far, while deciding or holding it
	passing  bool   // the rest of the current line goes through as is
	dropping bool   // the rest of the current line is dropped
	pending  []byte // a "--" line that may open a section

	delimDefault bool
	preamble     bool
	pre          bytes.Buffer // the preamble, written with the first selected section
	started      bool
	on           bool // the current section is passed on
	table        string
	db, hostDB   string
	sawDB        bool // a "Current Database" section was seen
	injected     bool
	// A selected database's own section (CREATE DATABASE, USE) is held
	// until one of its objects is selected: a filter that selects none of
	// them must not create it.
	holdDB bool
	dbBuf  bytes.Buffer

	matched   []bool
	exMatched []bool
	rep       Report
	dbSeen    map[string]bool
	objSeen   map[string]bool
	dbOut     map[string]bool
	err       error
}

// New returns a Writer that passes on to w what r selects.
func New(w io.Writer, r Rules) *Writer {
	var pairs []string
	for _, from := range sortedKeys(r.Rename) {
		to := r.Rename[from]
		pairs = append(pairs, database.QuoteName(from)+".", database.QuoteName(to)+".", "ALTER DATABASE "+database.QuoteName(from), "ALTER DATABASE "+database.QuoteName(to),
			"-- Current Database: "+database.QuoteName(from), "-- Current Database: "+database.QuoteName(to))
	}
	var bare *regexp.Regexp
	if len(r.Rename) > 0 {
		var names []string
		for _, from := range sortedKeys(r.Rename) {
			names = append(names, regexp.QuoteMeta(from))
		}
		bare = regexp.MustCompile("(^|[^0-9A-Za-z_$`.@])(" + strings.Join(names, "|") + ")\\.([0-9A-Za-z_$`])")
	}
	return &Writer{w: w, r: r, renam: strings.NewReplacer(pairs...), bare: bare, delimDefault: true, preamble: true, all: r.Empty(),
		matched: make([]bool, len(r.Include)), exMatched: make([]bool, len(r.Exclude)), dbSeen: map[string]bool{}, objSeen: map[string]bool{}, dbOut: map[string]bool{}}
}

// Write filters p; it keeps no reference to p.
func (f *Writer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && f.err == nil {
		i := bytes.IndexByte(p, '\n')
		end := len(p)
		if i >= 0 {
			end = i + 1
		}
		chunk := p[:end]
		p = p[end:]
		switch {
		case f.passing:
			f.out(chunk)
		case f.dropping:
		default:
			f.held = append(f.held, chunk...)
			if i < 0 {
				f.decidePartial()
				continue
			}
			f.line(f.held)
			f.held = f.held[:0]
		}
		if i >= 0 {
			f.passing, f.dropping = false, false
		}
	}
	if f.err != nil {
		return 0, f.err
	}
	return n, nil
}

// decidePartial looks at a line that has not ended yet: a data line, or
// one too long to hold, goes through (or is dropped) as it comes.
func (f *Writer) decidePartial() {
	data := len(f.held) >= decideAt && isData(f.held)
	if !data && len(f.held) < maxLine {
		return
	}
	if f.all || f.on && !f.preamble {
		f.flushPending()
		f.out(f.held)
		f.passing = true
	} else {
		f.dropping = true
	}
	f.held = f.held[:0]
}

func isData(l []byte) bool {
	return bytes.HasPrefix(l, []byte("INSERT ")) || bytes.HasPrefix(l, []byte("REPLACE "))
}

// Close ends the stream. It returns ErrNothingSelected when nothing was
// selected: then nothing was written.
func (f *Writer) Close() error {
	if f.err == nil && len(f.held) > 0 {
		f.line(f.held)
		f.held = f.held[:0]
	}
	if f.err == nil && len(f.pending) > 0 {
		f.flushPending()
	}
	for _, db := range f.rep.Databases {
		if f.dbOut[db] {
			f.rep.RestoredDatabases = append(f.rep.RestoredDatabases, f.r.As(db))
		}
	}
	for i, m := range f.matched {
		if !m {
			f.rep.Unmatched = append(f.rep.Unmatched, f.r.Include[i].String())
		}
	}
	for i, m := range f.exMatched {
		if !m {
			// A mistyped exclude restores what it meant to keep out.
			f.rep.Warnings = append(f.rep.Warnings, fmt.Sprintf("--exclude %s matched nothing in the snapshot, so it kept nothing out", f.r.Exclude[i]))
		}
	}
	if f.err != nil {
		return f.err
	}
	if !f.started {
		return fmt.Errorf("%w (%s); it holds %s", ErrNothingSelected, f.r, f.rep.holds())
	}
	return nil
}

// Report is valid after Close.
func (f *Writer) Report() Report { return f.rep }

// line handles one whole line (with its newline, if any).
func (f *Writer) line(l []byte) {
	t := bytes.TrimRight(l, "\r\n")
	if len(f.pending) > 0 {
		if bytes.HasPrefix(t, []byte("-- ")) && !bytes.HasPrefix(t, []byte("-- Host: ")) && f.delimDefault {
			f.header(string(t[3:]))
		}
		f.flushPending()
	}
	if f.delimDefault && bytes.Equal(t, []byte("--")) {
		f.pending = append(f.pending[:0], l...)
		return
	}
	if len(t) > 10 && bytes.EqualFold(t[:10], []byte("DELIMITER ")) {
		f.delimDefault = string(bytes.TrimSpace(t[10:])) == ";"
	}
	if f.preamble {
		if m := hostDatabase.FindSubmatch(t); m != nil {
			f.hostDB = strings.TrimSpace(string(m[1]))
			f.db = f.hostDB
		}
		if f.all {
			f.started = true
			f.emit(l)
			return
		}
		f.pre.Write(l)
		return
	}
	if f.all {
		f.emit(l)
		return
	}
	switch {
	case bytes.Equal(t, flushPrivileges):
		// Loads the accounts restored: only when they were.
		if f.rep.Accounts {
			f.emit(l)
		}
		return
	case bytes.HasPrefix(t, manifestTrailer):
		return // it describes the whole dump, not what is restored
	case f.delimDefault && bytes.HasPrefix(t, []byte("-- Dump completed")):
		if f.started {
			f.emit(l)
		}
		return
	}
	if !f.on {
		return
	}
	if f.table != "" {
		f.checkReferences(t)
	}
	if m := dropDatabase.FindSubmatchIndex(t); m != nil && f.table == "" {
		// A dump made with --add-drop-database drops each database before
		// it creates it: in a partial restore only a database restored
		// whole is dropped, under the name it is restored as, never the
		// original of a renamed one or one of which a table is restored.
		db := unquote(string(t[m[4]:m[5]]))
		if !f.r.SelectsWhole(db) {
			f.rep.Warnings = append(f.rep.Warnings, fmt.Sprintf("left out the dump's DROP DATABASE %s: the restore selects part of that database, so the target's other objects in it stay", database.QuoteName(db)))
			return
		}
		f.out([]byte(string(t[:m[4]-1]) + database.QuoteName(f.r.As(db)) + string(l[m[5]+1:])))
		return
	}
	f.out(f.rename(l, t))
}

// rename rewrites a line of a selected section for the databases renamed.
// Data lines are never rewritten.
func (f *Writer) rename(l, t []byte) []byte {
	if len(f.r.Rename) == 0 || isData(t) {
		return l
	}
	if m := useLine.FindSubmatch(t); m != nil {
		return []byte("USE " + database.QuoteName(f.r.As(unquote(string(m[1])))) + ";" + string(l[len(t):]))
	}
	if m := createDatabase.FindSubmatchIndex(t); m != nil {
		db := unquote(string(t[m[4]:m[5]]))
		return []byte(string(t[:m[2]]) + string(t[m[2]:m[3]]) + database.QuoteName(f.r.As(db)) + string(l[m[1]:]))
	}
	out := f.renam.Replace(string(l))
	out = f.bare.ReplaceAllStringFunc(out, func(m string) string {
		sub := f.bare.FindStringSubmatch(m)
		return sub[1] + f.r.As(sub[2]) + "." + sub[3]
	})
	return []byte(out)
}

// header starts a section.
func (f *Writer) header(title string) {
	f.preamble = false
	if m := titleTable.FindStringSubmatch(title); m != nil {
		name := unquote(m[1])
		if f.table == name && strings.HasPrefix(title, "Dumping data") {
			return // the data of the table whose structure came first
		}
		f.object(name)
		f.table = name
		if f.on && database.IsAccountTable(f.db, name) {
			f.rep.Accounts = true
		}
		return
	}
	f.table = ""
	switch {
	case titleDatabase.MatchString(title):
		f.db, f.sawDB = unquote(titleDatabase.FindStringSubmatch(title)[1]), true
		f.seeDB(f.db)
		f.on = f.r.SelectsDatabase(f.db)
		f.holdDB = f.on && !f.all
		f.dbBuf.Reset()
	case titleView.MatchString(title):
		f.object(unquote(titleView.FindStringSubmatch(title)[1]))
	case titleSequence.MatchString(title):
		f.object(unquote(titleSequence.FindStringSubmatch(title)[1]))
	case titlePerDB.MatchString(title):
		m := titlePerDB.FindStringSubmatch(title)
		db := strings.ReplaceAll(m[2], "''", "'")
		f.on = f.r.SelectsWhole(db)
		if f.on {
			f.begin()
			if !slices.Contains(f.rep.Routines, db) {
				f.rep.Routines = append(f.rep.Routines, db)
			}
		}
	default:
		// A section this filter does not know (a replication position,
		// say): left out of a partial restore, and said so.
		f.on = f.all
		if f.all {
			return
		}
		f.rep.Warnings = append(f.rep.Warnings, fmt.Sprintf("left out the dump's section %q, which a partial restore does not apply", title))
	}
}

// object starts the section of a table, view or sequence of the current
// database.
func (f *Writer) object(name string) {
	f.seeDB(f.db)
	f.on = f.r.Selects(f.db, name)
	k := qualify(f.db, name)
	if f.objSeen[k] {
		if f.on {
			f.begin() // a view's final structure, after its placeholder
		}
		return
	}
	f.objSeen[k] = true
	f.rep.Objects++
	for i, p := range f.r.Include {
		if !f.matched[i] && p.Match(f.db, name) {
			f.matched[i] = true
		}
	}
	for i, p := range f.r.Exclude {
		if !f.exMatched[i] && p.Match(f.db, name) {
			f.exMatched[i] = true
		}
	}
	if !f.on {
		return
	}
	f.begin()
	f.rep.Restored = append(f.rep.Restored, k)
}

func (f *Writer) seeDB(db string) {
	if db != "" && !f.dbSeen[db] {
		f.dbSeen[db] = true
		f.rep.Databases = append(f.rep.Databases, db)
	}
}

// begin writes the preamble before the first selected section, and, for a
// dump of one database without its own CREATE DATABASE, selects the
// renamed database.
func (f *Writer) begin() {
	if !f.started {
		f.started = true
		f.emit(f.pre.Bytes())
		f.pre = bytes.Buffer{}
	}
	if f.holdDB {
		f.holdDB = false
		f.emit(f.dbBuf.Bytes())
		f.dbBuf.Reset()
	}
	if !f.sawDB && !f.injected && f.hostDB != "" && f.r.As(f.hostDB) != f.hostDB {
		f.injected = true
		to := database.QuoteName(f.r.As(f.hostDB))
		f.emit([]byte("CREATE DATABASE IF NOT EXISTS " + to + ";\nUSE " + to + ";\n"))
	}
	f.dbOut[f.db] = true
}

// checkReferences warns of a foreign key to a table the restore leaves out.
func (f *Writer) checkReferences(t []byte) {
	for _, m := range references.FindAllSubmatch(t, -1) {
		db, table := f.db, unquote(string(m[1]))
		if len(m[2]) > 0 {
			db, table = table, unquote(string(m[2]))
		}
		if !f.r.Selects(db, table) {
			f.rep.Warnings = append(f.rep.Warnings, fmt.Sprintf("%s has a foreign key to %s, which this restore leaves out: its rows are loaded unchecked and may point at rows that are not there",
				qualify(f.db, f.table), qualify(db, table)))
		}
	}
}

func (f *Writer) flushPending() {
	p := f.pending
	f.pending = f.pending[:0]
	if len(p) == 0 {
		return
	}
	if f.all {
		f.emit(p)
	} else if f.preamble {
		f.pre.Write(p)
	} else if f.on || f.all {
		f.out(p)
	}
}

// out writes a selected section's bytes, or holds them with its database's.
func (f *Writer) out(p []byte) {
	if f.holdDB {
		f.dbBuf.Write(p)
		return
	}
	f.emit(p)
}

func (f *Writer) emit(p []byte) {
	if f.err != nil || len(p) == 0 {
		return
	}
	if _, err := f.w.Write(p); err != nil {
		f.err = err
	}
}

// holds says in a few words what the dump holds.
func (r Report) holds() string {
	if len(r.Databases) == 0 {
		return "no database sections"
	}
	dbs := r.Databases
	more := ""
	if len(dbs) > 20 {
		dbs, more = dbs[:20], fmt.Sprintf(" and %d more", len(r.Databases)-20)
	}
	return fmt.Sprintf("%d tables, views and sequences in databases %s%s (list them with `kubectl stash snapshots REPO --contents SNAPSHOT`)", r.Objects, strings.Join(dbs, ", "), more)
}

func unquote(s string) string { return strings.ReplaceAll(s, "``", "`") }

func qualify(db, name string) string {
	if db == "" {
		return name
	}
	return db + "." + name
}
