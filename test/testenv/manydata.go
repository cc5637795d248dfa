package testenv

import (
	"context"
	"fmt"
	"strings"
)

// ManyDatabases is a server that hosts many small applications: DBs
// databases (many_000, ...) of Tables small tables each (three rows, a
// primary key), with a view and a trigger per database. The e2e test and
// the benchmark of many objects share it.
type ManyDatabases struct {
	DBs, Tables int
}

// Name is the name of database d.
func (m ManyDatabases) Name(d int) string { return fmt.Sprintf("many_%03d", d) }

// Names are the names of every database.
func (m ManyDatabases) Names() []string {
	names := make([]string, m.DBs)
	for d := range names {
		names[d] = m.Name(d)
	}
	return names
}

// CreateSQL creates databases from..DBs-1, so that a larger set can grow
// from a smaller one.
func (m ManyDatabases) CreateSQL(from int) string {
	var b strings.Builder
	for d := from; d < m.DBs; d++ {
		db := m.Name(d)
		fmt.Fprintf(&b, "CREATE DATABASE %s; USE %s;\n", db, db)
		for t := range m.Tables {
			fmt.Fprintf(&b, "CREATE TABLE t%03d (id INT PRIMARY KEY, v VARCHAR(40), n INT) ENGINE=InnoDB;\n", t)
			fmt.Fprintf(&b, "INSERT INTO t%03d VALUES (1,'%s-%d-a',%d),(2,'%s-%d-b',%d),(3,NULL,%d);\n", t, db, t, d*t, db, t, d+t, t)
		}
		b.WriteString("CREATE VIEW v AS SELECT id, v FROM t000;\n")
		if m.Tables > 1 {
			b.WriteString("CREATE TRIGGER t001_bi BEFORE INSERT ON t001 FOR EACH ROW SET NEW.n = COALESCE(NEW.n, 0);\n")
		}
	}
	return b.String()
}

// DropMany drops every many_ database on db, whatever their number.
func DropMany(ctx context.Context, db *MariaDB) error {
	out, err := db.Exec(ctx, "SELECT CONCAT('DROP DATABASE `', schema_name, '`;') FROM information_schema.schemata WHERE schema_name LIKE 'many\\_%'")
	if err != nil || strings.TrimSpace(out) == "" {
		return err
	}
	_, err = db.Exec(ctx, out)
	return err
}

// ChecksumSQL yields, in a form two servers can be compared by, the count of
// tables, views and triggers, and CHECKSUM TABLE of every table: as many
// lines as ChecksumLines.
func (m ManyDatabases) ChecksumSQL() string {
	var q strings.Builder
	q.WriteString("SELECT table_type, COUNT(*) FROM information_schema.tables WHERE table_schema LIKE 'many\\_%' GROUP BY table_type ORDER BY 1;\n")
	q.WriteString("SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema LIKE 'many\\_%';\n")
	for d := range m.DBs {
		q.WriteString("CHECKSUM TABLE ")
		for t := range m.Tables {
			if t > 0 {
				q.WriteString(", ")
			}
			fmt.Fprintf(&q, "%s.t%03d", m.Name(d), t)
		}
		q.WriteString(" EXTENDED;\n")
	}
	return q.String()
}

// ChecksumLines is how many lines ChecksumSQL yields on a complete server.
func (m ManyDatabases) ChecksumLines() int {
	return 3 + m.DBs*m.Tables // BASE TABLE and VIEW counts, triggers, one per table
}
