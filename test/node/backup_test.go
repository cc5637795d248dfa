package node

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-stash/kubectl-stash/pkg/contract"
	"github.com/kubectl-stash/kubectl-stash/pkg/render"
)

const sampleSQL = `
CREATE DATABASE shop CHARACTER SET utf8mb4;
USE shop;
CREATE TABLE shop.customers (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100), note TEXT) ENGINE=InnoDB;
INSERT INTO shop.customers (name, note) VALUES ('Ada', 'first 🐬'), ('Grace', 'O''Brien; DROP TABLE x');
CREATE TABLE shop.orders (id INT PRIMARY KEY AUTO_INCREMENT, customer INT, total DECIMAL(10,2), payload BLOB) ENGINE=InnoDB;
INSERT INTO shop.orders (customer, total, payload) SELECT 1 + seq % 2, seq * 1.5, RANDOM_BYTES(1024) FROM seq_1_to_20000;
`

// agentPod waits for the one Ready Pod of an agent Deployment.
func agentPod(t *testing.T, ns, appBinding string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	// The Deployment may have been re-rendered (a second config adds its
	// Repository's volume): wait for its newest template to be rolled out.
	mustOK(t, kubectl(t, "", "-n", ns, "rollout", "status", "deployment/"+contract.AgentName(appBinding), "--timeout="+timeout.String()), "agent rollout")
	var pod *corev1.Pod
	sel := contract.LabelInstance + "=" + appBinding
	ok := poll(timeout, func() bool {
		pods, err := s.kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			pod = p
			if p.DeletionTimestamp != nil {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					return true
				}
			}
		}
		return false
	})
	if !ok {
		st := kubectl(t, "", "stash", "-n", ns, "status")
		t.Fatalf("no Ready agent pod for %s/%s after %s: %s\nkubectl stash status:\n%s%s", ns, appBinding, timeout, podSummary(pod), st.stdout, st.stderr)
	}
	return pod
}

// TestBackupAndRestoreInPods is the user's first day, on a real node: the
// database and the agent are Pods in a namespace that enforces the
// restricted standard, the agent runs from its rendered Deployment and the
// built image, and backs up to S3 and to a local Repository on a PVC. The
// restore goes into a second database Pod, and every table's checksum matches.
func TestBackupAndRestoreInPods(t *testing.T) {
	ns := "shop"
	restrictedNamespace(t, ns)
	src := startMariaDB(t, ns, "mariadb")
	dst := startMariaDB(t, ns, "mariadb-new")
	src.sql(t, sampleSQL)

	obj := startS3(t)
	obj.bucket(t, "node-backups")
	createSecret(t, ns, "s3-creds", map[string]string{
		"RESTIC_PASSWORD": "node repo pw", "AWS_ACCESS_KEY_ID": obj.access, "AWS_SECRET_ACCESS_KEY": obj.secret,
	})
	createSecret(t, ns, "local-creds", map[string]string{"RESTIC_PASSWORD": "node local pw"})
	createSecret(t, ns, "db-auth", map[string]string{"username": "root", "password": src.password})
	createSecret(t, ns, "db-new-auth", map[string]string{"username": "root", "password": dst.password})
	pvDir := hostPathPVC(t, ns, "backups", render.AgentUID)

	mustOK(t, kubectl(t, "", "stash", "install"), "install")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "s3-repo", "--backend", "s3",
		"--endpoint", obj.endpoint, "--bucket", "node-backups", "--prefix", "prod/mysql", "--secret", "s3-creds"), "s3 repository")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "repository", "local-repo", "--backend", "local",
		"--pvc", "backups", "--sub-path", "mysql", "--secret", "local-creds"), "local repository on a PVC")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", "mysql", "--service", "mariadb:3306",
		"--secret", "db-auth", "--type", "mariadb", "--version", "10.11"), "appbinding")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "nightly", "--target", "appbinding/mysql",
		"--repository", "s3-repo", "--schedule", "0 2 * * *", "--keep-last", "3"), "backupconfig to S3")
	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", "nightly-local", "--target", "appbinding/mysql",
		"--repository", "local-repo", "--schedule", "0 3 * * *", "--keep-last", "3"), "backupconfig to the PVC")

	pod := agentPod(t, ns, "mysql", 2*time.Minute)
	t.Logf("agent pod %s on %s, image %s", pod.Name, pod.Spec.NodeName, pod.Spec.Containers[0].Image)
	var hasPVC bool
	for _, v := range pod.Spec.Volumes {
		hasPVC = hasPVC || (v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "backups")
	}
	if !hasPVC {
		t.Fatalf("the agent pod does not mount the PVC backups: %+v", pod.Spec.Volumes)
	}

	for _, cfg := range []string{"nightly", "nightly-local"} {
		r := kubectl(t, "", "stash", "-n", ns, "trigger", cfg, "--wait", "--timeout", "4m")
		if r.code != 0 {
			logs := kubectl(t, "", "logs", "-n", ns, pod.Name, "--tail", "40")
			t.Fatalf("trigger %s: exit %d\n%s%s\nagent log:\n%s", cfg, r.code, r.stdout, r.stderr, logs.stdout)
		}
	}
	// A verification in the agent's pod: the image's mariadbd, as the
	// agent's non-root user, under a read-only root filesystem, in the
	// scratch emptyDir; nothing of it is left there.
	r := kubectl(t, "", "stash", "-n", ns, "verify", "nightly", "--wait", "--timeout", "4m")
	if r.code != 0 {
		logs := kubectl(t, "", "logs", "-n", ns, pod.Name, "--tail", "40")
		t.Fatalf("verify in the pod: exit %d\n%s%s\nagent log:\n%s", r.code, r.stdout, r.stderr, logs.stdout)
	}
	t.Logf("verify in the pod: %s", strings.TrimSpace(r.stdout))
	if ls := kubectl(t, "", "exec", "-n", ns, pod.Name, "-c", "agent", "--", "ls", render.ScratchDir); ls.code != 0 || strings.Contains(ls.stdout, contract.VerifyDirPrefix) {
		t.Errorf("the scratch volume after a verification (exit %d): %s%s", ls.code, ls.stdout, ls.stderr)
	}
	env := []string{"RESTIC_PASSWORD=node repo pw", "AWS_ACCESS_KEY_ID=" + obj.access, "AWS_SECRET_ACCESS_KEY=" + obj.secret}
	if out := restic(t, env, "-r", "s3:"+obj.endpoint+"/node-backups/prod/mysql", "snapshots", "--json"); !strings.Contains(out, `"hostname":"host-0"`) {
		t.Fatalf("no snapshot in S3: %s", out)
	}
	if out := restic(t, []string{"RESTIC_PASSWORD=node local pw"}, "-r", pvDir+"/mysql", "snapshots", "--json"); !strings.Contains(out, `"hostname":"host-0"`) {
		t.Fatalf("no snapshot on the PVC: %s", out)
	}

	// From inside the pod, with its projected ServiceAccount token: what the
	// Role grants is allowed, the rest is Forbidden.
	access := kubectl(t, "", "exec", "-n", ns, pod.Name, "-c", "agent", "--", "stash-agent", "check-access", "--appbinding", "mysql")
	t.Logf("stash-agent check-access in the pod:\n%s%s", access.stdout, access.stderr)
	if access.code != 0 {
		t.Fatalf("the agent's access from inside its pod is not what its Role grants (exit %d)", access.code)
	}
	for _, line := range []string{"list secrets", "list secrets -n kube-system", "get secrets/db-auth", "list pods"} {
		if !strings.Contains(access.stdout, line+"\n") {
			t.Errorf("check-access did not try %q", line)
		}
	}

	mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "appbinding", "mysql-new", "--service", "mariadb-new:3306",
		"--secret", "db-new-auth", "--type", "mariadb", "--version", "10.11"), "appbinding of the restore target")
	r = kubectl(t, "", "stash", "-n", ns, "restore", "--repository", "s3-repo", "--target", "appbinding/mysql-new",
		"--snapshot", "latest", "--wait", "--timeout", "4m")
	if r.code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	want, got := src.checksums(t, "shop"), dst.checksums(t, "shop")
	if len(want) != 2 {
		t.Fatalf("source checksums: %v", want)
	}
	for tbl, sum := range want {
		if got[tbl] != sum {
			t.Errorf("%s: source %s, restored %s", tbl, sum, got[tbl])
		}
	}
}
