package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var allCRDs = []string{
	"repositories.stash.appscode.com",
	"backupconfigurations.stash.appscode.com",
	"backupsessions.stash.appscode.com",
	"restoresessions.stash.appscode.com",
	"tasks.stash.appscode.com",
	"functions.stash.appscode.com",
	"appbindings.appcatalog.appscode.com",
}

// installOnce installs through kubectl's plugin discovery; install is idempotent.
func install(t *testing.T) {
	t.Helper()
	mustOK(t, kubectl(t, "", "stash", "install", "--timeout=90s"), "kubectl stash install")
}

func TestInstallThroughPluginDiscovery(t *testing.T) {
	r := kubectl(t, "", "stash", "version")
	mustOK(t, r, "kubectl stash version")
	if !strings.Contains(r.stdout, "Client Version: v0.0.0-test") || !strings.Contains(r.stdout, "Server Version: v1.37.2") {
		t.Fatalf("version output lacks client or server version:\n%s", r.stdout)
	}

	install(t)
	// A second install converges without error (server-side apply).
	r = kubectl(t, "", "stash", "install")
	mustOK(t, r, "second install")
	if !strings.Contains(r.stdout, "customresourcedefinition.apiextensions.k8s.io/backupsessions.stash.appscode.com serverside-applied") {
		t.Errorf("install output does not name the CRDs it applied:\n%s", r.stdout)
	}

	ext, err := apiextclient.NewForConfig(s.env.Control.Admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range allCRDs {
		crd, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("CRD %s: %v", name, err)
		}
		ok := false
		for _, c := range crd.Status.Conditions {
			ok = ok || (c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue)
		}
		if !ok {
			t.Errorf("CRD %s is not Established: %+v", name, crd.Status.Conditions)
		}
	}

	// The catalog carries Stash's own task names and every supported line.
	for _, task := range []string{"mysql-backup-8.0.21", "mysql-restore-8.0.21", "mysql-backup-5.7", "mysql-backup-8.4", "mariadb-backup-10", "mariadb-restore-11"} {
		mustOK(t, kubectl(t, "", "get", "tasks.stash.appscode.com", task), "get task "+task)
	}
	mustOK(t, kubectl(t, "", "get", "functions.stash.appscode.com", "update-status"), "get function update-status")
}

func TestInstallDryRunPrintsWithoutApplying(t *testing.T) {
	r := runCmd(t, "", "kubectl-stash", "install", "--dry-run=client", "-o", "yaml")
	mustOK(t, r, "install --dry-run=client -o yaml")
	for _, want := range []string{"kind: CustomResourceDefinition", "name: backupconfigurations.stash.appscode.com", "kind: Task", "name: mysql-backup-8.0.21", "kind: Function"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry-run output lacks %q", want)
		}
	}
	if n := strings.Count(r.stdout, "\n---\n"); n < 7 {
		t.Errorf("dry-run output has %d document separators, want one per object", n)
	}
}

// TestAPIServerRejectsInvalidObjects applies one valid and several invalid
// objects of each kind and expects a clear rejection naming the field.
func TestAPIServerRejectsInvalidObjects(t *testing.T) {
	install(t)
	ns := "validation"
	kubectl(t, "", "create", "namespace", ns)

	cases := []struct {
		name    string
		yaml    string
		wantErr string // "" means the object must be accepted
	}{
		{"repository valid", repoYAML(`s3: {endpoint: s3.amazonaws.com, bucket: backups, prefix: /prod}`), ""},
		{"repository two backends", repoYAML(`s3: {endpoint: x, bucket: abc}
    rest: {url: "http://r:8000/"}`), "exactly one of local, s3"},
		{"repository no backend", repoYAML(``), "exactly one of local, s3"},
		{"repository short bucket", repoYAML(`s3: {endpoint: x, bucket: ab}`), "spec.backend.s3.bucket"},
		{"repository bad allowedNamespaces", repoYAML(`rest: {url: "http://r:8000/"}
  usagePolicy: {allowedNamespaces: {from: Everywhere}}`), "Unsupported value: \"Everywhere\""},
		{"repository missing secret", `apiVersion: stash.appscode.com/v1alpha1
kind: Repository
metadata: {name: r2}
spec: {backend: {rest: {url: "http://r:8000/"}}}`, "spec.backend.storageSecretName: Required value"},

		{"backupconfiguration valid", bcYAML("schedule: \"0 2 * * *\"\n  retentionPolicy: {name: keep, keepLast: 5, prune: true}"), ""},
		{"backupconfiguration negative keep", bcYAML("retentionPolicy: {name: keep, keepLast: -1}"), "spec.retentionPolicy.keepLast"},
		{"backupconfiguration bad driver", bcYAML("driver: Rsync"), "Unsupported value: \"Rsync\""},
		{"backupconfiguration bad timeout", bcYAML("timeOut: soon"), "spec.timeOut"},
		{"backupconfiguration negative history", bcYAML("backupHistoryLimit: -2"), "spec.backupHistoryLimit"},
		{"backupconfiguration missing repository", `apiVersion: stash.appscode.com/v1beta1
kind: BackupConfiguration
metadata: {name: bc-norepo}
spec:
  target: {ref: {apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: db}}`, "spec.repository: Required value"},

		{"backupsession valid", `apiVersion: stash.appscode.com/v1beta1
kind: BackupSession
metadata: {name: bs1}
spec: {invoker: {apiGroup: stash.appscode.com, kind: BackupConfiguration, name: bc}}`, ""},
		{"backupsession bad invoker kind", `apiVersion: stash.appscode.com/v1beta1
kind: BackupSession
metadata: {name: bs2}
spec: {invoker: {kind: Pod, name: bc}}`, "Unsupported value: \"Pod\""},
		{"backupsession missing invoker", `apiVersion: stash.appscode.com/v1beta1
kind: BackupSession
metadata: {name: bs3}
spec: {retryLeft: 1}`, "spec.invoker: Required value"},
		{"backupsession negative retryLeft", `apiVersion: stash.appscode.com/v1beta1
kind: BackupSession
metadata: {name: bs4}
spec: {invoker: {kind: BackupConfiguration, name: bc}, retryLeft: -1}`, "spec.retryLeft"},

		{"restoresession valid", `apiVersion: stash.appscode.com/v1beta1
kind: RestoreSession
metadata: {name: rs1}
spec:
  repository: {name: r1}
  target:
    ref: {apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: db}
    rules: [{snapshots: [latest], sourceHost: host-0}]`, ""},
		{"restoresession missing target", `apiVersion: stash.appscode.com/v1beta1
kind: RestoreSession
metadata: {name: rs2}
spec: {repository: {name: r1}}`, "spec.target: Required value"},
		{"restoresession bad timeout", `apiVersion: stash.appscode.com/v1beta1
kind: RestoreSession
metadata: {name: rs3}
spec:
  repository: {name: r1}
  timeOut: "1 hour"
  target: {ref: {apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: db}}`, "spec.timeOut"},

		{"task valid", `apiVersion: stash.appscode.com/v1beta1
kind: Task
metadata: {name: custom-task}
spec: {steps: [{name: update-status, params: [{name: outputDir, value: /tmp}]}]}`, ""},
		{"task no steps", `apiVersion: stash.appscode.com/v1beta1
kind: Task
metadata: {name: empty-task}
spec: {steps: []}`, "spec.steps"},
		{"function valid", `apiVersion: stash.appscode.com/v1beta1
kind: Function
metadata: {name: custom-fn}
spec: {image: "example/agent:1", args: ["backup-mysql", "--args=${args:=--all-databases}"]}`, ""},
		{"function no image", `apiVersion: stash.appscode.com/v1beta1
kind: Function
metadata: {name: bad-fn}
spec: {args: [x]}`, "spec.image: Required value"},

		{"appbinding valid", `apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata: {name: db}
spec:
  type: kubedb.com/mariadb
  version: "10.11"
  clientConfig: {url: "tcp(db.demo.svc:3306)/", service: {name: db, port: 3306}}
  secret: {name: db-auth}
  parameters: {stash: {addon: {backupTask: {name: mariadb-backup-10}}}}`, ""},
		{"appbinding no endpoint", `apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata: {name: db2}
spec: {clientConfig: {insecureSkipTLSVerify: true}}`, "one of clientConfig.url or clientConfig.service"},
		{"appbinding bad port", `apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata: {name: db3}
spec: {clientConfig: {service: {name: db, port: 70000}}}`, "spec.clientConfig.service.port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := kubectl(t, tc.yaml, "apply", "-n", ns, "-f", "-")
			if tc.wantErr == "" {
				mustOK(t, r, "apply valid object")
				return
			}
			if r.code == 0 {
				t.Fatalf("invalid object was accepted:\n%s", tc.yaml)
			}
			if !strings.Contains(r.stderr, "is invalid") || !strings.Contains(r.stderr, tc.wantErr) {
				t.Fatalf("rejection does not name the problem %q:\n%s", tc.wantErr, r.stderr)
			}
		})
	}

	// The defaults the CRDs declare are applied by the server.
	r := kubectl(t, "", "get", "-n", ns, "backupconfiguration", "bc", "-o", "jsonpath={.spec.backupHistoryLimit} {.spec.driver}")
	mustOK(t, r, "get bc")
	if r.stdout != "1 Restic" {
		t.Errorf("defaults: got %q, want %q", r.stdout, "1 Restic")
	}
}

func TestPrinterColumns(t *testing.T) {
	install(t)
	want := map[string][]string{
		"backupsessions":       {"INVOKER-TYPE", "INVOKER-NAME", "PHASE", "DURATION", "AGE"},
		"backupconfigurations": {"TASK", "SCHEDULE", "PAUSED", "PHASE", "AGE"},
		"repositories":         {"INTEGRITY", "SIZE", "SNAPSHOT-COUNT", "LAST-SUCCESSFUL-BACKUP"},
		"restoresessions":      {"REPOSITORY", "PHASE", "DURATION"},
	}
	ns := "columns"
	kubectl(t, "", "create", "namespace", ns)
	mustOK(t, kubectl(t, `apiVersion: stash.appscode.com/v1beta1
kind: BackupSession
metadata: {name: one}
spec: {invoker: {kind: BackupConfiguration, name: nightly}}
---
apiVersion: stash.appscode.com/v1beta1
kind: BackupConfiguration
metadata: {name: nightly}
spec:
  schedule: "0 2 * * *"
  task: {name: mysql-backup-8.0}
  repository: {name: r}
  target: {ref: {apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: db}}
---
apiVersion: stash.appscode.com/v1alpha1
kind: Repository
metadata: {name: r}
spec: {backend: {storageSecretName: s, rest: {url: "http://r:8000/"}}}
---
apiVersion: stash.appscode.com/v1beta1
kind: RestoreSession
metadata: {name: rs}
spec:
  repository: {name: r}
  target: {ref: {apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: db}}
`, "apply", "-n", ns, "-f", "-"), "apply objects")
	for res, cols := range want {
		deadline := time.Now().Add(10 * time.Second)
		var r result
		for time.Now().Before(deadline) {
			r = kubectl(t, "", "get", "-n", ns, res)
			if r.code == 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		mustOK(t, r, "get "+res)
		header := strings.SplitN(r.stdout, "\n", 2)[0]
		for _, c := range cols {
			if !strings.Contains(header, c) {
				t.Errorf("kubectl get %s: header %q lacks column %s", res, header, c)
			}
		}
	}
	r := kubectl(t, "", "get", "-n", ns, "backupconfigurations", "nightly", "--no-headers")
	if f := strings.Fields(r.stdout); len(f) < 7 || f[1] != "mysql-backup-8.0" || f[2] != "0" {
		t.Errorf("backupconfiguration row does not show task and schedule: %q", r.stdout)
	}
}

func repoYAML(backend string) string {
	return `apiVersion: stash.appscode.com/v1alpha1
kind: Repository
metadata: {name: r1}
spec:
  backend:
    storageSecretName: creds
    ` + backend
}

func bcYAML(extra string) string {
	return `apiVersion: stash.appscode.com/v1beta1
kind: BackupConfiguration
metadata: {name: bc}
spec:
  repository: {name: r1}
  target: {ref: {apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: db}}
  ` + extra
}
