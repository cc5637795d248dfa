package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/client"
	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// The namespace and the objects the measured backups and restores use.
const (
	ns         = "bench"
	cfgLocal   = "to-local" // full backup to local-repo
	cfgS3      = "to-s3"    // full backup to s3-repo
	cfgTiny    = "tiny"     // warm-up, benchtiny only
	cfgSlot    = "slot"     // scheduled, benchtiny only, for slot-to-dump
	repoLocal  = "local-repo"
	repoS3     = "s3-repo"
	repoTiny   = "tiny-repo"
	abSrc      = "src"
	abDst      = "dst"
	s3Prefix   = "ours"
	kubeTO     = 2 * time.Minute
	sessionTO  = 60 * time.Minute
	sessionTOs = "60m"
)

// setup starts the environment, builds the plugin and agent, creates the
// objects and the warm-up database, and starts both agents.
func (b *bench) setup(ctx context.Context) error {
	done := b.step("build kubectl-stash and stash-agent")
	if err := testenv.BuildBinaries(b.binDir); err != nil {
		return err
	}
	done()

	done = b.step("start etcd, kube-apiserver, 2 MariaDB, versitygw, Pushgateway")
	sctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	env, err := testenv.Start(sctx, testenv.Options{BinDir: b.toolBin, Dir: filepath.Join(b.work, "env"), MariaDBs: 2, S3: true, Pushgateway: true})
	cancel()
	b.env = env // stopped by close, also after an error
	if err != nil {
		return fmt.Errorf("start environment: %w", err)
	}
	b.src, b.dst = env.MariaDBs[0], env.MariaDBs[1]
	// An --all-databases dump carries the source's users: give the target
	// the same password, so it is still reachable after a restore.
	if _, err := b.dst.Exec(ctx, fmt.Sprintf("ALTER USER '%s'@'%%' IDENTIFIED BY '%s'; FLUSH PRIVILEGES;", b.dst.User, b.src.Password)); err != nil {
		return fmt.Errorf("align the restore target's password: %w", err)
	}
	b.dst.Password = b.src.Password
	if err := b.dst.RewriteOptionFile(); err != nil {
		return err
	}
	if err := env.S3.CreateBucket(s3Bucket); err != nil {
		return err
	}
	if b.stash, err = client.NewStash(env.Control.Admin); err != nil {
		return err
	}
	if b.kube, err = kubernetes.NewForConfig(env.Control.Admin); err != nil {
		return err
	}
	done()

	if _, err := b.src.Exec(ctx, tinySQL); err != nil {
		return fmt.Errorf("create the warm-up database: %w", err)
	}

	done = b.step("kubectl stash install; Secrets, Repositories, AppBindings, BackupConfigurations")
	if err := b.createObjects(ctx); err != nil {
		return err
	}
	done()

	done = b.step("start the source's agent; warm-up backup")
	if err := b.startAgent(ctx, abSrc); err != nil {
		return err
	}
	if _, _, err := b.kubectl(ctx, 5*time.Minute, "stash", "-n", ns, "trigger", cfgTiny, "--wait", "--timeout", "4m"); err != nil {
		return fmt.Errorf("warm-up backup: %w", err)
	}
	done()

	done = b.step("warm-up restore: renders the target's agent, which is then started")
	if err := b.warmUpRestore(ctx); err != nil {
		return err
	}
	done()
	return nil
}

// generateData makes the measured data set on the source.
func (b *bench) generateData(ctx context.Context) error {
	defer b.step(fmt.Sprintf("generate ~%s of dump: %d sysbench tables x %d rows, %d BLOBs of %s",
		humanBytes(b.cfg.Size), b.res.Data.Tables, b.res.Data.RowsPerTable, b.res.Data.Blobs, humanBytes(blobSize)))()
	return generate(ctx, b.src, &b.res.Data)
}

func (b *bench) createObjects(ctx context.Context) error {
	if _, _, err := b.kubectl(ctx, kubeTO, "stash", "install", "--timeout=90s"); err != nil {
		return err
	}
	if _, _, err := b.kubectl(ctx, kubeTO, "create", "namespace", ns); err != nil {
		return err
	}
	s3 := b.env.S3
	secrets := map[string]map[string]string{
		"src-auth":   {"username": b.src.User, "password": b.src.Password},
		"dst-auth":   {"username": b.dst.User, "password": b.dst.Password},
		"repo-creds": {"RESTIC_PASSWORD": b.repoPass, "AWS_ACCESS_KEY_ID": s3.AccessKey, "AWS_SECRET_ACCESS_KEY": s3.SecretKey},
	}
	for name, data := range secrets {
		if err := b.createSecret(ctx, ns, name, data); err != nil {
			return err
		}
	}
	stash := func(args ...string) error {
		_, _, err := b.kubectl(ctx, kubeTO, append([]string{"stash", "-n", ns}, args...)...)
		return err
	}
	push := "--pushgateway=" + b.env.Pushgateway.URL
	for _, args := range [][]string{
		{"create", "repository", repoLocal, "--backend", "local", "--path", b.localRepo(repoLocal).Dir, "--secret", "repo-creds"},
		{"create", "repository", repoTiny, "--backend", "local", "--path", b.localRepo(repoTiny).Dir, "--secret", "repo-creds"},
		{"create", "repository", repoS3, "--backend", "s3", "--endpoint", s3.Endpoint, "--bucket", s3Bucket, "--prefix", s3Prefix, "--secret", "repo-creds"},
		{"create", "appbinding", abSrc, "--url", "tcp(" + b.src.Addr() + ")/", "--secret", "src-auth", "--type", "mariadb", "--version", "10.11"},
		{"create", "appbinding", abDst, "--url", "tcp(" + b.dst.Addr() + ")/", "--secret", "dst-auth", "--type", "mariadb", "--version", "10.11"},
		// The measured configs take the defaults: every database, no retention.
		{"create", "backupconfig", cfgLocal, "--target", "appbinding/" + abSrc, "--repository", repoLocal, push},
		{"create", "backupconfig", cfgS3, "--target", "appbinding/" + abSrc, "--repository", repoS3, push},
		{"create", "backupconfig", cfgTiny, "--target", "appbinding/" + abSrc, "--repository", repoTiny, "--param", "args=--databases " + tinyDB},
		{"create", "backupconfig", cfgSlot, "--target", "appbinding/" + abSrc, "--repository", repoTiny, "--param", "args=--databases " + tinyDB,
			"--schedule", fmt.Sprintf("@every %s", b.cfg.SlotEvery), "--paused", "--backup-history-limit", "100"},
	} {
		if err := stash(args...); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) createSecret(ctx context.Context, namespace, name string, data map[string]string) error {
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}, StringData: data}
	if _, err := b.kube.CoreV1().Secrets(namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Secret %s/%s: %w", namespace, name, err)
	}
	return nil
}

// startAgent runs the agent of the AppBinding's rendered Deployment as a
// local process, as the e2e tests do, and waits until it holds its Lease.
func (b *bench) startAgent(ctx context.Context, appBinding string) error {
	p, err := b.env.Control.StartAgent(ctx, testenv.AgentOptions{
		Namespace: ns, Deployment: contract.AgentName(appBinding), BinDir: b.binDir, Path: b.path,
		Dir: filepath.Join(b.work, "agent-"+appBinding),
	})
	if err != nil {
		return fmt.Errorf("start the agent of %s: %w", appBinding, err)
	}
	b.agents[appBinding] = p
	return nil
}

// warmUpRestore restores the tiny snapshot into the target: this renders
// the target's agent (its Role then covers the repositories' Secret), which
// is started here and stays up for the measured restores.
func (b *bench) warmUpRestore(ctx context.Context) error {
	out, _, err := b.kubectl(ctx, kubeTO, "stash", "-n", ns, "restore", "--repository", repoTiny, "--target", "appbinding/"+abDst, "--snapshot", "latest")
	if err != nil {
		return fmt.Errorf("warm-up restore: %w", err)
	}
	name := createdName(out, "restoresession.stash.appscode.com/")
	if name == "" {
		return fmt.Errorf("warm-up restore: no RestoreSession name in %q", out)
	}
	if err := b.startAgent(ctx, abDst); err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		rs, err := b.stash.RestoreSessions(ns).Get(ctx, name)
		if err == nil {
			switch rs.Status.Phase {
			case stashv1beta1.RestoreSucceeded:
				return emptyTarget(ctx, b.dst)
			case stashv1beta1.RestoreFailed, stashv1beta1.RestoreInvalid, stashv1beta1.RestoreUnknown:
				return fmt.Errorf("warm-up RestoreSession %s %s: %s", name, rs.Status.Phase, rs.Status.Message)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("warm-up RestoreSession %s did not end within 3m (agent log %s)", name, b.agents[abDst].LogPath)
}

// createdName takes NAME from "<prefix>NAME created" in kubectl's output.
func createdName(out, prefix string) string {
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			name, _, _ := strings.Cut(rest, " ")
			return name
		}
	}
	return ""
}
