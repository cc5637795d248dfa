// Package cmd is the agent's command line.
package cmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kubectl-stash/kubectl-stash/pkg/version"
)

// New builds the stash-agent command.
func New() *cobra.Command {
	root := &cobra.Command{
		Use:           "stash-agent",
		Short:         "The per-database backup agent of kubectl stash",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the agent's version",
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "stash-agent %s (commit %s)\n", version.Version, version.Commit)
			return err
		},
	})
	return root
}
