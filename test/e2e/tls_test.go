package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// writeCAFile writes a PEM CA where the plugin (--ca-bundle-file) or stock
// restic (--cacert) can read it.
func writeCAFile(t *testing.T, name string, pem []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMariaDBTLSVerifiesTheServer backs up a MariaDB that accepts only TLS
// on TCP, trusting the AppBinding's caBundle; an AppBinding with another CA
// fails, says why and leaves no snapshot.
func TestMariaDBTLSVerifiesTheServer(t *testing.T) {
	ctx := context.Background()
	db, ca, err := s.env.AddTLSMariaDB(ctx, "tlsdb")
	if err != nil {
		t.Fatal(err)
	}
	ns := "tls-e2e"
	newNamespace(t, ns)
	if _, err := db.Exec(ctx, sampleSQL); err != nil {
		t.Fatal(err)
	}

	// Plaintext TCP is refused (MariaDB says "Access denied"), while the
	// same credentials work over TLS: any TCP connection that works used TLS.
	mariadbTCP := func(ssl string) (string, error) {
		cmd := exec.Command("mariadb", "--no-defaults", "--protocol=tcp", "--host=127.0.0.1", "--port="+strconv.Itoa(db.Port),
			"--user="+db.User, ssl, "--connect-timeout=5", "--batch", "--skip-column-names", "-e", "SHOW SESSION STATUS LIKE 'Ssl_version'")
		cmd.Env = append(os.Environ(), "MYSQL_PWD="+db.Password)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := mariadbTCP("--skip-ssl"); err == nil {
		t.Fatalf("a plaintext connection to the TLS server was accepted: %s", out)
	}
	if out, err := mariadbTCP("--ssl"); err != nil || !strings.Contains(out, "TLS") {
		t.Fatalf("the same credentials over TLS: %v: %s", err, out)
	}

	repoPass := "tls-e2e-repo-password"
	dir := t.TempDir()
	createSecret(t, ns, "db-auth", map[string]string{"username": db.User, "password": db.Password})
	createSecret(t, ns, "repo-creds", map[string]string{"RESTIC_PASSWORD": repoPass})
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "repo", "--backend", "local", "--path", dir, "--secret", "repo-creds"), "create repository")
	url := fmt.Sprintf("tcp(%s)/", db.Addr())
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", "db", "--url", url, "--secret", "db-auth",
		"--type", "mariadb", "--version", "10.11", "--ca-bundle-file", writeCAFile(t, "ca.pem", ca.CertPEM)), "create appbinding")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "tls", "--target", "appbinding/db", "--repository", "repo",
		"--param", "args=--databases shop inventory"), "create backupconfig")
	startAgent(t, ns, "db")

	sslBefore := sslAccepts(t, db)
	r := kubectl(t, "", "stash", "-n", ns, "trigger", "tls", "--wait", "--timeout", "3m")
	mustOK(t, r, "trigger --wait over TLS")
	if !strings.Contains(r.stdout, "Succeeded") {
		t.Fatalf("trigger output lacks Succeeded:\n%s", r.stdout)
	}
	// Our own check is one more TLS accept; the agent's readiness check and
	// mysqldump are at least two.
	if after := sslAccepts(t, db); after < sslBefore+3 {
		t.Errorf("Ssl_accepts went from %d to %d: the agent did not connect over TLS", sslBefore, after)
	}
	if n := resticSnapshots(t, dir, repoPass, nil); n != 1 {
		t.Fatalf("after one TLS backup: %d snapshots, want 1", n)
	}
	if got, want := resticDump(t, dir, repoPass, nil, "db.sql"), directDump(t, db, "--databases", "shop", "inventory"); got != want {
		t.Fatalf("the snapshot differs from a direct mysqldump (%d vs %d bytes)", len(got), len(want))
	}

	t.Run("a caBundle from another CA fails with a TLS message and no snapshot", func(t *testing.T) {
		other, err := testenv.NewCA("not-the-servers-ca")
		if err != nil {
			t.Fatal(err)
		}
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", "wrongca", "--url", url, "--secret", "db-auth",
			"--type", "mariadb", "--version", "10.11", "--ca-bundle-file", writeCAFile(t, "other.pem", other.CertPEM)), "create appbinding wrongca")
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "wrongca", "--target", "appbinding/wrongca", "--repository", "repo"), "create backupconfig wrongca")
		startAgent(t, ns, "wrongca")
		before := resticSnapshots(t, dir, repoPass, nil)
		start := time.Now()
		r := kubectl(t, "", "stash", "-n", ns, "trigger", "wrongca", "--wait", "--timeout", "2m")
		if r.code != 3 {
			t.Fatalf("trigger with the wrong CA: exit %d, want 3\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		t.Logf("failed after %s: %s", time.Since(start).Round(time.Second), strings.TrimSpace(r.stderr))
		for _, want := range []string{"TLS", "certificate", "AppBinding wrongca", "caBundle"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("the failure message lacks %q:\n%s", want, r.stderr)
			}
		}
		// TLS failures are not retried until the wait timeout (300s).
		if d := time.Since(start); d > time.Minute {
			t.Errorf("the TLS failure took %s: it was retried as if the database were down", d)
		}
		if after := resticSnapshots(t, dir, repoPass, nil); after != before {
			t.Fatalf("a failed TLS backup changed the snapshot count: %d -> %d", before, after)
		}
	})
}

// sslAccepts is the server's count of accepted TLS handshakes.
func sslAccepts(t *testing.T, db *testenv.MariaDB) int {
	t.Helper()
	out, err := db.Exec(context.Background(), "SHOW GLOBAL STATUS LIKE 'Ssl_accepts'")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		t.Fatalf("SHOW GLOBAL STATUS LIKE 'Ssl_accepts': %q", out)
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("Ssl_accepts %q: %v", f[1], err)
	}
	return n
}

// resticWithCA runs stock restic against repo with --cacert when caFile is
// set, for at most timeout, returning stdout, stderr and the error.
func resticWithCA(timeout time.Duration, repo, password, caFile string, env []string, args ...string) (string, string, error) {
	argv := []string{"-r", repo, "--no-cache"}
	if caFile != "" {
		argv = append(argv, "--cacert", caFile)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(testenv.RepoRoot(), "bin", "restic"), append(argv, args...)...)
	cmd.Env = append(os.Environ(), append(env, "RESTIC_PASSWORD="+password)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// TestS3BackendCACertData backs up to an HTTPS S3 endpoint whose certificate
// only the Secret's CA_CERT_DATA vouches for; a Secret without it fails with
// a message about the certificate.
func TestS3BackendCACertData(t *testing.T) {
	const noCATimeout = 40 * time.Second
	ctx := context.Background()
	srv, ca, err := s.env.StartS3TLS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Stop(5 * time.Second) })
	if !strings.HasPrefix(srv.Endpoint, "https://") {
		t.Fatalf("TLS S3 endpoint %q is not https", srv.Endpoint)
	}
	bucket := "stash-tls"
	if err := srv.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	db, err := s.env.AddMariaDB(ctx, "tlss3db", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := newBackupFixture(t, "tls-s3-e2e", db)
	ns := f.ns
	aws := map[string]string{"RESTIC_PASSWORD": f.repoPass, "AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey}
	withCA := map[string]string{"CA_CERT_DATA": string(ca.CertPEM)}
	for k, v := range aws {
		withCA[k] = v
	}
	createSecret(t, ns, "s3-ca", withCA)
	createSecret(t, ns, "s3-noca", aws)
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "s3-tls", "--backend", "s3", "--endpoint", srv.Endpoint,
		"--bucket", bucket, "--prefix", "/with-ca", "--secret", "s3-ca"), "create repository s3-tls")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "s3-noca", "--backend", "s3", "--endpoint", srv.Endpoint,
		"--bucket", bucket, "--prefix", "/no-ca", "--secret", "s3-noca"), "create repository s3-noca")
	args := "args=--databases shop inventory"
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "to-s3-tls", "--target", "appbinding/db", "--repository", "s3-tls", "--param", args), "backupconfig to-s3-tls")
	// restic retries a certificate error like any backend error, for up to
	// 15 minutes, and the agent waits for it: the session timeout bounds that.
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "to-s3-noca", "--target", "appbinding/db", "--repository", "s3-noca", "--param", args,
		"--timeout", noCATimeout.String()), "backupconfig to-s3-noca")
	agent := startAgent(t, ns, "db")

	repoURL := "s3:" + srv.Endpoint + "/" + bucket + "/with-ca"
	awsEnv := []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey}
	caFile := writeCAFile(t, "s3-ca.pem", ca.CertPEM)

	r := kubectl(t, "", "stash", "-n", ns, "trigger", "to-s3-tls", "--wait", "--timeout", "3m")
	mustOK(t, r, "trigger --wait to the HTTPS S3 repository")
	if !strings.Contains(r.stdout, "Succeeded") {
		t.Fatalf("trigger output lacks Succeeded:\n%s", r.stdout)
	}
	out, stderr, err := resticWithCA(time.Minute, repoURL, f.repoPass, caFile, awsEnv, "snapshots", "--json")
	if err != nil {
		t.Fatalf("stock restic --cacert snapshots: %v\n%s", err, stderr)
	}
	if n := strings.Count(out, `"short_id"`); n != 1 {
		t.Fatalf("stock restic --cacert sees %d snapshots, want 1:\n%s", n, out)
	}
	dump, stderr, err := resticWithCA(time.Minute, repoURL, f.repoPass, caFile, awsEnv, "dump", "latest", "db.sql")
	if err != nil {
		t.Fatalf("stock restic --cacert dump: %v\n%s", err, stderr)
	}
	if got, want := snapshotDump(t, dump), directDump(t, db, "--databases", "shop", "inventory"); got != want {
		t.Fatalf("the snapshot differs from a direct mysqldump (%d vs %d bytes)", len(got), len(want))
	}
	// Without the CA the endpoint is not trusted: the CA really was needed.
	// (restic retries a certificate error for up to 15 minutes; its first
	// retry message is enough.)
	if _, stderr, err := resticWithCA(10*time.Second, repoURL, f.repoPass, "", awsEnv, "snapshots", "--json"); err == nil || !strings.Contains(stderr, "certificate") {
		t.Fatalf("stock restic without --cacert: %v, want a certificate error:\n%s", err, stderr)
	}

	t.Run("a Secret without CA_CERT_DATA fails with a certificate message", func(t *testing.T) {
		start := time.Now()
		r := kubectl(t, "", "stash", "-n", ns, "trigger", "to-s3-noca", "--wait", "--timeout", "3m")
		if r.code != 3 {
			t.Fatalf("trigger without CA_CERT_DATA: exit %d, want 3\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "repository s3-noca") {
			t.Errorf("the failure message does not name the Repository:\n%s", r.stderr)
		}
		// restic's stderr says "x509: certificate signed by unknown
		// authority" from its first attempt; the message must keep that.
		if !strings.Contains(r.stderr, "certificate") {
			t.Errorf("the failure message does not say the backend's certificate is not trusted "+
				"(restic's x509 error is in its stderr but not in the session's message):\n%s", r.stderr)
		}
		took := time.Since(start)
		t.Logf("failed after %s: %s", took.Round(time.Second), strings.TrimSpace(r.stderr))
		if took > noCATimeout+30*time.Second {
			t.Errorf("the failure took %s, beyond the session timeout of %s", took, noCATimeout)
		}
		// Nothing was written under the prefix: the repository was never reached.
		if ents, err := os.ReadDir(filepath.Join(srv.Dir, bucket, "no-ca")); err == nil && len(ents) > 0 {
			t.Fatalf("a repository was written without a trusted connection: %d entries", len(ents))
		}
	})

	t.Run("passwords and S3 keys appear in no log, status or Event", func(t *testing.T) {
		assertNoSecrets(t, ns, agent.LogPath, f.db.Password, f.repoPass, srv.SecretKey)
	})
}
