package database

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrReadOnlyDenied marks a user who may not hold the server read-only.
var ErrReadOnlyDenied = errors.New("may not set read_only")

// HoldReadOnly makes the server refuse writes from every client without
// READ_ONLY ADMIN (SUPER on MySQL, and on MariaDB before 10.11), and says
// whether it already did. Setting it waits for open transactions to end,
// which the query's time limit bounds.
func (c Client) HoldReadOnly(ctx context.Context, f *Files, env []string, user string) (was bool, err error) {
	out, err := c.query(ctx, f, env, "SELECT @@global.read_only")
	if err != nil {
		return false, err
	}
	was = strings.TrimSpace(out) == "1" || strings.EqualFold(strings.TrimSpace(out), "ON")
	if was {
		return true, nil
	}
	if err := c.SetReadOnly(ctx, f, env, true); err != nil {
		if strings.Contains(err.Error(), "1227") || errors.Is(err, ErrAccessDenied) {
			return false, fmt.Errorf("%w: user %s may not set read_only: run `GRANT READ_ONLY ADMIN ON *.* TO '%s'@'%%'` (MariaDB 10.11 and later; SUPER before, and on MySQL): %v", ErrReadOnlyDenied, user, user, err)
		}
		return false, err
	}
	return false, nil
}

// SetReadOnly sets the server's global read_only.
func (c Client) SetReadOnly(ctx context.Context, f *Files, env []string, on bool) error {
	v := "OFF"
	if on {
		v = "ON"
	}
	_, err := c.query(ctx, f, env, "SET GLOBAL read_only="+v)
	return err
}
