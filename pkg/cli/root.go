// Package cli holds the kubectl-stash commands. Each command is an options
// struct with Complete, Validate and Run, and writes only to its IOStreams.
package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// Exit codes, documented in the README.
const (
	ExitOK       = 0
	ExitError    = 1 // a request failed (API, backend)
	ExitUsage    = 2 // bad flags or input; nothing was changed
	ExitFailed   = 3 // a session ended Failed or Skipped
	ExitTimedOut = 4 // --wait gave up; the session may still finish
)

// ErrUsage marks input errors (exit 2).
var ErrUsage = errors.New("invalid input")

// ErrSessionFailed marks a session that ended unsuccessfully (exit 3).
var ErrSessionFailed = errors.New("session failed")

// ErrWaitTimeout marks a --wait that ran out of time (exit 4).
var ErrWaitTimeout = errors.New("timed out waiting")

// ExitCode maps an error to the process exit code.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrUsage):
		return ExitUsage
	case errors.Is(err, ErrSessionFailed):
		return ExitFailed
	case errors.Is(err, ErrWaitTimeout):
		return ExitTimedOut
	default:
		return ExitError
	}
}

// command is what every command's options struct is: Complete fills in
// what the flags and arguments imply (no cluster I/O), Validate checks the
// input, Run does the work and writes only to the command's IOStreams.
type command interface {
	Complete(args []string) error
	Validate() error
	Run(ctx context.Context) error
}

// runE runs a command's Complete, Validate and Run in order.
func runE(o command) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := o.Complete(args); err != nil {
			return err
		}
		if err := o.Validate(); err != nil {
			return err
		}
		return o.Run(cmd.Context())
	}
}

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, a...))
}

// NewRootCmd builds `kubectl stash`.
func NewRootCmd(streams genericiooptions.IOStreams) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	f := &Factory{ConfigFlags: flags}
	cmd := &cobra.Command{
		Use:   "kubectl-stash",
		Short: "Back up and restore MySQL and MariaDB on Kubernetes, with no operator",
		Long: `kubectl stash backs up MySQL and MariaDB into restic repositories and restores them,
using the Stash API (Repository, BackupConfiguration, BackupSession, RestoreSession) and one
small agent per database instead of a cluster-wide operator.`,
		Example: `  # Install the CRDs and the Task/Function catalog
  kubectl stash install

  # Show the plugin's version and the agents' versions in the namespace
  kubectl stash version`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl stash",
		},
	}
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	flags.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(
		newInstallCmd(f, streams),
		newUninstallCmd(f, streams),
		newVersionCmd(f, streams),
		newCreateCmd(f, streams),
		newAgentCmd(f, streams),
		newTriggerCmd(f, streams),
		newPauseCmd(f, streams, true),
		newPauseCmd(f, streams, false),
		newRestoreCmd(f, streams),
		newVerifyCmd(f, streams),
		newSnapshotsCmd(f, streams),
		newDownloadCmd(f, streams),
		newStatusCmd(f, streams),
		newDeleteCmd(f, streams),
		newUnlockCmd(f, streams),
		newCheckCmd(f, streams),
		newCopyCmd(f, streams),
	)
	return cmd
}
