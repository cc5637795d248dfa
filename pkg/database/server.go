package database

import (
	"context"
	"strconv"
	"strings"
)

// ServerCPUs is how many CPUs the server says it has: MariaDB sizes its
// thread pool (thread_pool_size) to them by default. ok is false where the
// server does not say (MySQL, or an answer that is not a number).
func (c Client) ServerCPUs(ctx context.Context, f *Files, env []string) (n int, ok bool) {
	out, err := c.query(ctx, f, env, "SELECT @@thread_pool_size")
	if err != nil {
		return 0, false
	}
	n, err = strconv.Atoi(strings.TrimSpace(out))
	return n, err == nil && n > 0
}
