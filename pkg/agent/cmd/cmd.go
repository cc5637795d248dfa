// Package cmd is the agent's command line.
package cmd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	_ "time/tzdata" // CRON_TZ zones work in a distroless image too

	"github.com/kubectl-stash/kubectl-stash/pkg/agent"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/dumptee"
	"github.com/kubectl-stash/kubectl-stash/pkg/scratchdb"
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
	root.AddCommand(newRunCmd(), newCheckAccessCmd(), newDumpTeeCmd())
	return root
}

// newDumpTeeCmd is what restic runs for a backup: mysqldump, passed
// through, with the dump's manifest appended (pkg/dumptee).
func newDumpTeeCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "dump-tee -- MYSQLDUMP [ARGS...]",
		Short:              "Run mysqldump, passing its dump through with the dump's manifest appended (run by restic)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && args[0] == "--" {
				args = args[1:]
			}
			if code := dumptee.Run(args, cmd.OutOrStdout(), cmd.ErrOrStderr()); code != 0 {
				os.Exit(code)
			}
			return nil
		},
	}
}

func newRunCmd() *cobra.Command {
	cfg := agent.Config{Namespace: os.Getenv("POD_NAMESPACE"), PodName: os.Getenv("POD_NAME"), RestoreSpool: 1 << 30}
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Watch the namespace and run the AppBinding's backups and restores",
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
			if err := preflight(cmd.Context(), &cfg, log); err != nil {
				return err
			}
			rc, err := restConfig(kubeconfig)
			if err != nil {
				return err
			}
			rc.UserAgent = "stash-agent/" + version.Version
			a, err := agent.New(cfg, rc, log)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Namespace, "namespace", cfg.Namespace, "namespace to watch (default: $POD_NAMESPACE)")
	f.StringVar(&cfg.AppBinding, "appbinding", "", "the AppBinding of the database this agent serves")
	f.StringVar(&cfg.ScratchDir, "scratch-dir", "/stash-tmp", "writable scratch directory (option files, restic cache)")
	f.StringVar(&cfg.Listen, "listen", ":8080", "address for /metrics, /healthz and /readyz")
	f.StringVar(&cfg.LeaseName, "lease-name", "", "the Lease used for leader election")
	f.StringVar(&cfg.Pushgateway, "pushgateway", "", "Pushgateway URL to push metrics to")
	f.StringVar(&cfg.ResticBin, "restic", "", "restic binary (default: next to the agent, else on PATH)")
	f.DurationVar(&cfg.ProgressEvery, "progress-interval", 3*time.Second, "how often progress is written to a session's status")
	f.DurationVar(&cfg.LeaseDuration, "lease-duration", agent.DefaultLeaseDuration, "leader Lease duration: renewed every two thirds of it (the idle agent's one write), and taken over this long after a crashed leader's last renewal")
	f.DurationVar(&cfg.SessionLease, "session-lease", agent.DefaultSessionLease, "a running session beats every fifth of this, and is settled as an orphan after this long without a beat")
	f.DurationVar(&cfg.BackendTimeout, "backend-timeout", 3*time.Minute, "stop a backup or restore when the backend keeps failing this long (0: leave it to restic, which retries for 15 minutes)")
	f.DurationVar(&cfg.StallTimeout, "stall-timeout", agent.DefaultStallTimeout, "stop a backup or restore whose stream has not moved this long while restic and the dump live (restic stopped reading a dump that waits to write, or sent nothing while the database waited); 0 disables")
	f.DurationVar(&cfg.SessionTimeout, "session-timeout", agent.DefaultSessionTimeout, "time limit of a session whose spec.timeOut is not set (0: none)")
	f.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", 30*time.Second, "after SIGTERM, how long running sessions may go on before they are stopped and marked Failed (the pod allows 60s)")
	f.IntVar(&cfg.RestoreConnections, "restore-connections", 0, "client connections that load a restore's tables at once (1: one after another, in dump order; 0: two per CPU of the target server, 4 to 8)")
	f.BoolVar(&cfg.RestoreKeepIndexes, "restore-keep-indexes", false, "load InnoDB tables with their plain secondary keys in place, instead of adding them in one ALTER TABLE after each table's data (a sorted build)")
	f.BoolVar(&cfg.RestoreWholeTables, "restore-whole-tables", false, "load each table on one connection, instead of spreading the INSERTs of a table whose rows may load in any order (InnoDB, a primary key, no other unique key, no foreign key) over the connections")
	f.Var(&quantityValue{&cfg.RestoreSpool, "1Gi"}, "restore-spool", "at most this much of a restore's dump waits in --scratch-dir for a free connection (at most half the free space there is used)")
	f.StringArrayVar(&cfg.VerifyServerArgs, "verify-server-arg", nil, "an extra mariadbd option for the scratch server verifications restore into, such as --lower-case-table-names=1 to match the source (repeatable)")
	f.StringVar(&cfg.HookExecPod, "hook-exec-pod", "", "the database's Pod, where exec hooks run (the agent's Role must grant pods/exec on it; empty: exec hooks are refused)")
	f.StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig; in-cluster config when empty")
	return cmd
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
		}
		return rc, nil
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no --kubeconfig and not in a cluster: %w", err)
	}
	return rc, nil
}

// preflight checks the tools and the scratch directory before the agent
// serves anything: a pod that lacks one exits at once, and is never ready.
func preflight(ctx context.Context, cfg *agent.Config, log *slog.Logger) error {
	exeDir := ""
	if exe, err := os.Executable(); err == nil {
		exeDir = filepath.Dir(exe)
	}
	tools, err := agent.FindTools(ctx, cfg.ResticBin, exeDir, os.Getenv("PATH"))
	if err != nil {
		return fmt.Errorf("the agent cannot start: %w", err)
	}
	if tools.Warning != "" {
		log.Warn(tools.Warning)
	}
	cfg.ResticBin = tools.Restic
	if exe, err := os.Executable(); err == nil {
		cfg.Self = exe
	}
	if err := agent.PrepareScratch(cfg.ScratchDir); err != nil {
		return fmt.Errorf("the agent cannot start: %w", err)
	}
	// A verification's scratch server that outlived a killed agent (one
	// not in a pod) is stopped, and its data removed.
	if err := scratchdb.Sweep(cfg.ScratchDir, contract.VerifyDirPrefix); err != nil {
		log.Warn("could not remove what an earlier verification left", "err", err.Error())
	}
	log.Info("tools found", "restic", tools.Restic, "resticVersion", tools.ResticVersion, "mysqldump", tools.Client.Dump, "mysql", tools.Client.MySQL, "tmpdir", agent.TempDir(cfg.ScratchDir))
	return nil
}

// quantityValue is a flag holding a byte size written as a Kubernetes
// quantity (512Mi, 2Gi).
type quantityValue struct {
	v   *int64
	def string
}

func (q *quantityValue) String() string {
	if q.v == nil || *q.v == 0 {
		return q.def
	}
	return resource.NewQuantity(*q.v, resource.BinarySI).String()
}

func (q *quantityValue) Set(s string) error {
	v, err := resource.ParseQuantity(s)
	if err != nil || v.Sign() < 0 {
		return fmt.Errorf("want a size such as 512Mi or 2Gi, got %q", s)
	}
	*q.v = v.Value()
	return nil
}

func (q *quantityValue) Type() string { return "size" }
