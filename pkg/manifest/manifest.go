// Package manifest records what a mysqldump (mariadb-dump) stream holds —
// databases, tables with their row counts and an order-independent digest
// of the rows' text, views, routines, triggers, events and sequences — in
// one pass over the dump bytes. A verification dumps a restored scratch
// server with the same options, builds the same manifest the same way and
// compares the two.
package manifest

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Version is the manifest format Marshal writes and Parse accepts.
const Version = 1

// Manifest is what one dump holds. Object names are "db.name"; routines
// are "db.PROCEDURE name" / "db.FUNCTION name" (also PACKAGE, PACKAGE BODY).
type Manifest struct {
	Version int `json:"version"`
	// Complete: the dump ended with mysqldump's "-- Dump completed"
	// trailer. A truncated dump restores to the same truncated data, so
	// the trailer is the only sign of it a comparison can see.
	Complete  bool     `json:"complete"`
	Databases []string `json:"databases"`
	Tables    []Table  `json:"tables"`
	Views     []string `json:"views,omitempty"`
	Routines  []string `json:"routines,omitempty"`
	Triggers  []string `json:"triggers,omitempty"`
	Events    []string `json:"events,omitempty"`
	Sequences []string `json:"sequences,omitempty"`
}

// Table is one base table's data in the dump.
type Table struct {
	Database string `json:"database"`
	Name     string `json:"name"`
	Rows     int64  `json:"rows"`
	// Bytes is the length of the rows' text, parentheses included.
	Bytes int64 `json:"bytes"`
	// Digest is the sum mod 2^128 of each row's 128-bit hash, in hex: a
	// sum does not depend on row order (tables without a primary key come
	// back in any order), and unlike xor duplicate rows do not cancel.
	Digest string `json:"digest"`
}

// Marshal encodes m as indented JSON.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Parse decodes a manifest written by Marshal, refusing other versions:
// digests of another format would all differ, which looks like corruption.
func Parse(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if m.Version != Version {
		return nil, fmt.Errorf("manifest: version %d is not supported (this build reads version %d)", m.Version, Version)
	}
	return &m, nil
}

// DefaultIgnore reports the tables whose content the server itself
// maintains, so that it legitimately differs after a restore:
//   - mysql.innodb_index_stats, mysql.innodb_table_stats: InnoDB
//     recomputes persistent statistics (and their timestamps) as the
//     restore loads and analyzes tables;
//   - mysql.table_stats, mysql.column_stats, mysql.index_stats:
//     engine-independent statistics, rewritten by ANALYZE TABLE;
//   - mysql.gtid_slave_pos: replication position of the server that holds
//     it, not of the data;
//   - mysql.general_log, mysql.slow_log: server logs (CSV), not data;
//   - mysql.transaction_registry: commit history of the server's own
//     transactions (system-versioned tables), which the restore adds to;
//   - mysql.proc, mysql.event: the dump loads their rows, then recreates
//     every routine and event with CREATE, which stamps them with the
//     restore's time (columns created, modified). The routines and events
//     themselves are still compared, by name.
func DefaultIgnore(db, table string) bool {
	if db != "mysql" {
		return false
	}
	switch table {
	case "innodb_index_stats", "innodb_table_stats",
		"table_stats", "column_stats", "index_stats",
		"gtid_slave_pos", "general_log", "slow_log", "transaction_registry",
		"proc", "event":
		return true
	}
	return false
}

// Compare lists how got differs from want, one short sentence per table or
// object, in a stable order; it is empty when they match. ignore (nil for
// none) skips tables whose content may legitimately differ, such as
// DefaultIgnore; it applies to tables only.
func Compare(want, got *Manifest, ignore func(db, table string) bool) []string {
	var out []string
	if want.Complete && !got.Complete {
		out = append(out, `dump incomplete: no "-- Dump completed" trailer`)
	} else if !want.Complete && got.Complete {
		out = append(out, `reference dump incomplete: no "-- Dump completed" trailer`)
	}
	out = append(out, diffSet("database", want.Databases, got.Databases)...)

	type key struct{ db, name string }
	gotT := make(map[key]Table, len(got.Tables))
	for _, t := range got.Tables {
		gotT[key{t.Database, t.Name}] = t
	}
	skip := func(t Table) bool { return ignore != nil && ignore(t.Database, t.Name) }
	for _, w := range want.Tables {
		if skip(w) {
			continue
		}
		k := key{w.Database, w.Name}
		g, ok := gotT[k]
		delete(gotT, k)
		name := qualify(w.Database, w.Name)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("table %s missing", name))
		case g.Rows != w.Rows:
			out = append(out, fmt.Sprintf("table %s: %d rows, want %d", name, g.Rows, w.Rows))
		case g.Digest != w.Digest && g.Bytes != w.Bytes:
			out = append(out, fmt.Sprintf("table %s: data differs (digest; %d bytes, want %d)", name, g.Bytes, w.Bytes))
		case g.Digest != w.Digest || g.Bytes != w.Bytes:
			out = append(out, fmt.Sprintf("table %s: data differs (digest)", name))
		}
	}
	var extra []string
	for _, g := range got.Tables {
		if _, ok := gotT[key{g.Database, g.Name}]; ok && !skip(g) {
			extra = append(extra, fmt.Sprintf("extra table %s", qualify(g.Database, g.Name)))
		}
	}
	out = append(out, extra...)
	out = append(out, diffSet("view", want.Views, got.Views)...)
	out = append(out, diffSet("routine", want.Routines, got.Routines)...)
	out = append(out, diffSet("trigger", want.Triggers, got.Triggers)...)
	out = append(out, diffSet("event", want.Events, got.Events)...)
	out = append(out, diffSet("sequence", want.Sequences, got.Sequences)...)
	return out
}

// diffSet names what is missing from got, then what got has in addition.
func diffSet(kind string, want, got []string) []string {
	in := func(s []string) map[string]bool {
		m := make(map[string]bool, len(s))
		for _, v := range s {
			m[v] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var missing, extra []string
	for v := range w {
		if !g[v] {
			missing = append(missing, kind+" "+v+" missing")
		}
	}
	for v := range g {
		if !w[v] {
			extra = append(extra, "extra "+kind+" "+v)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return append(missing, extra...)
}

// qualify is "db.name", or the bare name for a dump without a database
// (mysqldump db, which writes no USE).
func qualify(db, name string) string {
	if db == "" {
		return name
	}
	return db + "." + name
}
