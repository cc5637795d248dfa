// Package dumpfilter restores part of a mysqldump (mariadb-dump) stream:
// it passes on the sections of the databases, tables, views and sequences
// a user selects, renames databases as asked, and drops the rest, reading
// the stream once. It relies on the section comments mysqldump writes
// ("-- Table structure for table `t`" and the like).
package dumpfilter

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/kubectl-stash/kubectl-stash/pkg/database"
)

// ErrBadRule marks a pattern or rename the user wrote wrongly.
var ErrBadRule = errors.New("invalid restore filter")

// Pattern selects objects by database and name, each a shell glob
// (`*`, `?`, `[...]`, as path.Match). "shop" alone means "shop.*".
type Pattern struct{ DB, Name string }

// ParsePattern reads "db.name", "db.*" or "db". A database or table whose
// name holds a dot is written with backticks: "`my.db`.t".
func ParsePattern(s string) (Pattern, error) {
	s = strings.TrimSpace(s)
	db, rest, err := splitIdent(s)
	if err != nil {
		return Pattern{}, fmt.Errorf("%w: %q: %v", ErrBadRule, s, err)
	}
	p := Pattern{DB: db, Name: "*"}
	if rest != "" {
		if !strings.HasPrefix(rest, ".") || len(rest) == 1 {
			return Pattern{}, fmt.Errorf("%w: %q: write DATABASE.TABLE, DATABASE.* or DATABASE", ErrBadRule, s)
		}
		name, tail, err := splitIdent(rest[1:])
		if err != nil || tail != "" {
			return Pattern{}, fmt.Errorf("%w: %q: write DATABASE.TABLE, DATABASE.* or DATABASE", ErrBadRule, s)
		}
		p.Name = name
	}
	for _, g := range []string{p.DB, p.Name} {
		if _, err := path.Match(g, ""); err != nil {
			return Pattern{}, fmt.Errorf("%w: %q: %q is not a valid pattern", ErrBadRule, s, g)
		}
	}
	if p.DB == "" || p.Name == "" {
		return Pattern{}, fmt.Errorf("%w: %q: empty database or table", ErrBadRule, s)
	}
	return p, nil
}

// splitIdent takes one identifier (plain up to a dot, or in backticks)
// off the front of s.
func splitIdent(s string) (ident, rest string, err error) {
	if !strings.HasPrefix(s, "`") {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			return s, "", nil
		}
		return s[:i], s[i:], nil
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '`' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '`' {
			b.WriteByte('`')
			i++
			continue
		}
		return b.String(), s[i+1:], nil
	}
	return "", "", errors.New("unclosed backtick")
}

// Match reports whether p selects db.name.
func (p Pattern) Match(db, name string) bool {
	okDB, _ := path.Match(p.DB, db)
	okName, _ := path.Match(p.Name, name)
	return okDB && okName
}

// wholeDB reports whether p selects every object of db.
func (p Pattern) wholeDB(db string) bool { return p.Name == "*" && p.Match(db, "") }

func (p Pattern) String() string { return p.DB + "." + p.Name }

// Rules say what to restore. The zero Rules restore everything.
type Rules struct {
	// Include selects objects; empty selects everything.
	Include []Pattern
	// Exclude leaves objects out, even when included.
	Exclude []Pattern
	// Rename maps a database of the dump to the name it is restored as.
	Rename map[string]string
}

// ParseRules reads include and exclude patterns and "from=to" renames.
func ParseRules(include, exclude, rename []string) (Rules, error) {
	var r Rules
	for _, s := range include {
		p, err := ParsePattern(s)
		if err != nil {
			return r, err
		}
		r.Include = append(r.Include, p)
	}
	for _, s := range exclude {
		p, err := ParsePattern(s)
		if err != nil {
			return r, err
		}
		r.Exclude = append(r.Exclude, p)
	}
	to := map[string]string{}
	for _, s := range rename {
		from, dst, ok := strings.Cut(s, "=")
		from, dst = strings.TrimSpace(from), strings.TrimSpace(dst)
		switch {
		case !ok || from == "" || dst == "":
			return r, fmt.Errorf("%w: rename %q: write FROM=TO, two database names", ErrBadRule, s)
		case strings.ContainsAny(from+dst, "*?[`/\\.") || len(dst) > 64:
			return r, fmt.Errorf("%w: rename %q: database names without wildcards, dots, slashes or backticks, at most 64 characters", ErrBadRule, s)
		case database.IsSystemSchema(from) || database.IsSystemSchema(dst):
			return r, fmt.Errorf("%w: rename %q: the server's own databases (mysql, sys, information_schema, performance_schema) keep their names", ErrBadRule, s)
		case r.Rename[from] != "":
			return r, fmt.Errorf("%w: database %s is renamed twice", ErrBadRule, from)
		}
		if prev, dup := to[dst]; dup {
			return r, fmt.Errorf("%w: databases %s and %s are both renamed to %s", ErrBadRule, prev, from, dst)
		}
		if r.Rename == nil {
			r.Rename = map[string]string{}
		}
		r.Rename[from], to[dst] = dst, from
	}
	err := r.checkRenames()
	return r, err
}

// checkRenames makes renames say what they restore. A rename restores a
// database next to where it was: with no include it selects the renamed
// databases alone (restoring everything else in place over the target's
// would surprise, and a mistyped name then selects nothing and is refused
// before anything changes). With includes, each renamed database must be
// one of them, and the new name must not be a database also restored
// under its own name.
func (r *Rules) checkRenames() error {
	if len(r.Include) == 0 {
		for _, from := range sortedKeys(r.Rename) {
			r.Include = append(r.Include, Pattern{DB: from, Name: "*"})
		}
		return nil
	}
	for _, from := range sortedKeys(r.Rename) {
		dst := r.Rename[from]
		if !slices.ContainsFunc(r.Include, func(p Pattern) bool { ok, _ := path.Match(p.DB, from); return ok }) {
			return fmt.Errorf("%w: rename %s=%s: no include selects database %s; add --include '%s.*'", ErrBadRule, from, dst, from, from)
		}
		if _, renamed := r.Rename[dst]; !renamed && slices.ContainsFunc(r.Include, func(p Pattern) bool { return p.DB == dst }) {
			return fmt.Errorf("%w: rename %s=%s: %s is also restored under its own name, so the two databases' tables would be mixed in one; rename into a new name", ErrBadRule, from, dst, dst)
		}
	}
	return nil
}

// Empty reports whether r restores everything as it was.
func (r Rules) Empty() bool { return len(r.Include) == 0 && len(r.Exclude) == 0 && len(r.Rename) == 0 }

// Selects reports whether db.name is restored.
func (r Rules) Selects(db, name string) bool {
	in := len(r.Include) == 0 || slices.ContainsFunc(r.Include, func(p Pattern) bool { return p.Match(db, name) })
	return in && !slices.ContainsFunc(r.Exclude, func(p Pattern) bool { return p.Match(db, name) })
}

// SelectsDatabase reports whether anything of db may be restored, so its
// CREATE DATABASE runs.
func (r Rules) SelectsDatabase(db string) bool {
	in := len(r.Include) == 0 || slices.ContainsFunc(r.Include, func(p Pattern) bool { ok, _ := path.Match(p.DB, db); return ok })
	return in && !slices.ContainsFunc(r.Exclude, func(p Pattern) bool { return p.wholeDB(db) })
}

// SelectsWhole reports whether db is restored as a whole, which brings its
// routines and events: they belong to the database, not to a table.
func (r Rules) SelectsWhole(db string) bool {
	in := len(r.Include) == 0 || slices.ContainsFunc(r.Include, func(p Pattern) bool { return p.wholeDB(db) })
	return in && !slices.ContainsFunc(r.Exclude, func(p Pattern) bool { return p.wholeDB(db) })
}

// As is the name db is restored as.
func (r Rules) As(db string) string {
	if to, ok := r.Rename[db]; ok {
		return to
	}
	return db
}

// String writes r as the flags that make it.
func (r Rules) String() string {
	var parts []string
	for _, p := range r.Include {
		parts = append(parts, "--include "+p.String())
	}
	for _, p := range r.Exclude {
		parts = append(parts, "--exclude "+p.String())
	}
	for _, from := range sortedKeys(r.Rename) {
		parts = append(parts, "--rename-database "+from+"="+r.Rename[from])
	}
	return strings.Join(parts, " ")
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
