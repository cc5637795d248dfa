package agent

import (
	"fmt"
	"strings"

	"github.com/kubectl-stash/kubectl-stash/pkg/sqlload"
)

// startPosition is a restore's position from just before its first
// statement is sent: from then on, the database may have changed.
const startPosition = "the start of the dump"

// positionText says where a load is, for a restore's status: which tables
// the database was loading and how many it had finished.
func positionText(p sqlload.Position) string {
	if !p.Started {
		return startPosition
	}
	var tables []string
	for _, t := range p.Loading {
		if t != "" {
			tables = append(tables, t)
		}
	}
	done := fmt.Sprintf("%d %s finished", p.Finished, plural(p.Finished, "table", "tables"))
	switch len(tables) {
	case 0:
		return "the statements after the tables, " + done
	case 1:
		return fmt.Sprintf("table %s, %s before it", tables[0], done)
	}
	return fmt.Sprintf("tables %s, %s before them", strings.Join(tables, ", "), done)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
