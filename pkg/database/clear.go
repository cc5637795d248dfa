package database

import (
	"context"
	"fmt"
	"strings"
)

// systemSchemas are the server's own databases, never dropped.
var systemSchemas = map[string]bool{"mysql": true, "information_schema": true, "performance_schema": true, "sys": true}

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
		if db == "" || systemSchemas[strings.ToLower(db)] {
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
