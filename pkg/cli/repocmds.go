package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/util/retry"

	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
)

// RepoCmdOptions runs a restic maintenance command locally against a Repository.
type RepoCmdOptions struct {
	factory        *Factory
	streams        genericiooptions.IOStreams
	Repository     string
	All            bool
	ReadDataSubset string
	// run is unlock or check.
	run func(ctx context.Context, c *Clients, name string) error
}

// Complete takes the Repository's name.
func (o *RepoCmdOptions) Complete(args []string) error {
	o.Repository = args[0]
	return nil
}

// Validate checks --read-data-subset's form (restic checks its value).
func (o *RepoCmdOptions) Validate() error {
	if strings.ContainsAny(o.ReadDataSubset, " \t\n") {
		return usageErr("--read-data-subset %q: give a share like 10%% or 1/5", o.ReadDataSubset)
	}
	return nil
}

// Run connects and runs the command.
func (o *RepoCmdOptions) Run(ctx context.Context) error {
	c, err := o.factory.Clients()
	if err != nil {
		return err
	}
	return o.run(ctx, c, o.Repository)
}

func newUnlockCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &RepoCmdOptions{factory: f, streams: streams}
	o.run = o.unlock
	cmd := &cobra.Command{
		Use:   "unlock REPOSITORY [--all]",
		Short: "Remove stale restic locks from a Repository (all locks with --all)",
		Long: `Unlock removes locks whose process is gone (restic's own staleness check), so a crashed
backup no longer blocks the next one. --all removes every lock, including live ones: use it
only when no backup, restore or check runs against the repository.`,
		Example: `  kubectl stash unlock s3-repo
  kubectl stash unlock s3-repo --all`,
		Args:              exactName,
		ValidArgsFunction: completeNames(f, "repositories"),
		RunE:              runE(o),
	}
	cmd.Flags().BoolVar(&o.All, "all", false, "remove every lock, not only stale ones")
	return cmd
}

func (o *RepoCmdOptions) unlock(ctx context.Context, c *Clients, name string) error {
	rr, cleanup, err := localRepo(ctx, c, name)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := rr.Unlock(ctx, o.All); err != nil {
		return fmt.Errorf("unlock Repository %s: %w", name, err)
	}
	what := "stale locks removed"
	if o.All {
		what = "all locks removed"
	}
	fmt.Fprintf(o.streams.Out, "repository.stash.appscode.com/%s: %s\n", name, what)
	return nil
}

func newCheckCmd(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &RepoCmdOptions{factory: f, streams: streams}
	o.run = o.check
	cmd := &cobra.Command{
		Use:   "check REPOSITORY [--read-data-subset N%]",
		Short: "Verify a Repository's structure, and optionally a subset of its data",
		Example: `  kubectl stash check s3-repo
  kubectl stash check s3-repo --read-data-subset 10%`,
		Args:              exactName,
		ValidArgsFunction: completeNames(f, "repositories"),
		RunE:              runE(o),
	}
	cmd.Flags().StringVar(&o.ReadDataSubset, "read-data-subset", "", "also read this share of the data, e.g. 10% or 1/5")
	return cmd
}

func (o *RepoCmdOptions) check(ctx context.Context, c *Clients, name string) error {
	rr, cleanup, err := localRepo(ctx, c, name)
	if err != nil {
		return err
	}
	defer cleanup()
	err = rr.Check(ctx, o.ReadDataSubset)
	if verdict, ok := checkVerdict(err); ok {
		if serr := recordIntegrity(ctx, c, name, verdict); serr != nil {
			fmt.Fprintf(o.streams.ErrOut, "Warning: could not record the check's result in Repository %s's status: %v\n", name, serr)
		}
	}
	if err != nil {
		return fmt.Errorf("check Repository %s: %w", name, err)
	}
	fmt.Fprintf(o.streams.Out, "repository.stash.appscode.com/%s: no errors were found\n", name)
	return nil
}

// checkVerdict says what a check's outcome proves about the repository:
// nothing when restic could not reach or open it.
func checkVerdict(err error) (intact, known bool) {
	if err == nil {
		return true, true
	}
	for _, infra := range []error{restic.ErrBackend, restic.ErrBackendTimeout, restic.ErrStalled, restic.ErrWrongPassword, restic.ErrLocked,
		restic.ErrRepoNotExist, restic.ErrCertificate, restic.ErrInterrupted} {
		if errors.Is(err, infra) {
			return false, false
		}
	}
	return false, true
}

// recordIntegrity writes a check's verdict into the Repository's status,
// where its INTEGRITY column reads it.
func recordIntegrity(ctx context.Context, c *Clients, name string, intact bool) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		repo, err := c.Stash.Repositories(c.Namespace).Get(ctx, name)
		if err != nil {
			return err
		}
		repo.Status.Integrity = &intact
		_, err = c.Stash.Repositories(c.Namespace).UpdateStatus(ctx, repo)
		return err
	})
}
