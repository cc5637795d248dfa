package database

import (
	"context"
	"fmt"
	"strings"
)

// systemSchemas are the server's own databases, never dropped or renamed.
var systemSchemas = map[string]bool{"mysql": true, "information_schema": true, "performance_schema": true, "sys": true}

// IsSystemSchema reports whether db is one of the server's own databases.
func IsSystemSchema(db string) bool { return systemSchemas[strings.ToLower(db)] }

// accountTables are the mysql schema's tables of accounts and grants.
var accountTables = map[string]bool{"user": true, "global_priv": true, "db": true, "tables_priv": true, "columns_priv": true,
	"procs_priv": true, "proxies_priv": true, "roles_mapping": true, "default_roles": true}

// IsAccountTable reports whether db.table holds accounts or grants.
func IsAccountTable(db, table string) bool { return db == "mysql" && accountTables[table] }

// DropUserDatabases drops every database but the server's own, and names
// those it dropped. It is for servers kept for restores that are thrown
// away, such as a verification's target.
func (c Client) DropUserDatabases(ctx context.Context, f *Files, env []string) ([]string, error) {
	out, err := c.query(ctx, f, env, "SHOW DATABASES")
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, db := range strings.Split(strings.TrimSpace(out), "\n") {
		if db == "" || IsSystemSchema(db) {
			continue
		}
		if _, err := c.query(ctx, f, env, "DROP DATABASE "+QuoteName(db)); err != nil {
			return dropped, fmt.Errorf("drop database %s: %w", db, err)
		}
		dropped = append(dropped, db)
	}
	return dropped, nil
}

// QuoteName quotes an identifier in backticks.
func QuoteName(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }
