package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/database"
	"github.com/kubectl-stash/kubectl-stash/pkg/manifest"
	"github.com/kubectl-stash/kubectl-stash/pkg/scratchdb"
)

// verifyInto is the database a verification restores into.
type verifyInto struct {
	name  string // for messages
	files *database.Files
	// skip leaves tables out of the restore; ignore leaves them out of
	// the comparison.
	skip    func(db, table string) bool
	ignore  func(db, table string) bool
	cleanup func()
}

// A named target keeps its own accounts (database.IsAccountTable), so
// that its agent can still connect after a verification.

// verifyWaitReady bounds the wait for a named target to answer.
const verifyWaitReady = 2 * time.Minute

// verifyDatabase prepares where a verification restores: a scratch server
// started in the agent's scratch volume (removed on every path), or, when
// the session names one, this agent's own database, emptied of every
// database but the server's own. A named target keeps its accounts: the
// snapshot's account tables are neither loaded nor compared.
func (a *Agent) verifyDatabase(ctx context.Context, vs *stashv1beta1.VerificationSession, client database.Client) (*verifyInto, error) {
	if vs.Spec.Target != nil {
		ab, conn, err := a.connection(ctx)
		if err != nil {
			return nil, err
		}
		files, err := conn.WriteFiles(a.cfg.ScratchDir)
		if err != nil {
			return nil, err
		}
		into := &verifyInto{name: "AppBinding " + ab.Name, files: files, skip: database.IsAccountTable,
			ignore: func(db, table string) bool {
				return manifest.DefaultIgnore(db, table) || database.IsAccountTable(db, table)
			},
			cleanup: func() { os.RemoveAll(files.Dir) }}
		if err := client.WaitReady(ctx, files, a.childEnv(), verifyWaitReady, 2*time.Second); err != nil {
			into.cleanup()
			return nil, fmt.Errorf("the verification's target: %w", dbError(ab, err))
		}
		dropped, err := client.DropUserDatabases(ctx, files, a.childEnv())
		if err != nil {
			into.cleanup()
			return nil, fmt.Errorf("empty AppBinding %s for the verification (dropped %v first): %w", ab.Name, dropped, err)
		}
		a.log.Info("emptied the verification's target", "verification", vs.Name, "appbinding", ab.Name, "dropped", dropped)
		return into, nil
	}
	dir, err := os.MkdirTemp(a.cfg.ScratchDir, contract.VerifyDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("scratch directory: %w", err)
	}
	srv, err := scratchdb.Start(ctx, scratchdb.Options{Dir: dir, Path: os.Getenv("PATH"), Env: a.childEnv(), Args: a.cfg.VerifyServerArgs, GrantTables: true})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start the scratch server for the verification: %w", err)
	}
	stop := func() {
		if err := srv.Stop(); err != nil {
			a.log.Error("could not remove the verification's scratch server", "verification", vs.Name, "err", err.Error())
		}
	}
	files := &database.Files{Dir: filepath.Join(dir, "client"), OptionFile: srv.OptionFile}
	if err := os.MkdirAll(files.Dir, 0o700); err != nil {
		stop()
		return nil, err
	}
	return &verifyInto{name: "the scratch server", files: files, ignore: manifest.DefaultIgnore, cleanup: stop}, nil
}
