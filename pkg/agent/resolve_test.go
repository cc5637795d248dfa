package agent

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/pkg/catalog"
)

// testAppBinding is an AppBinding of a type and version, with parameters
// given as raw JSON ("" for none).
func testAppBinding(typ, version, params string) *appcatalog.AppBinding {
	ab := &appcatalog.AppBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "shopdb", Namespace: "ns"},
		Spec:       appcatalog.AppBindingSpec{Type: typ, Version: version},
	}
	if params != "" {
		ab.Spec.Parameters = &runtime.RawExtension{Raw: []byte(params)}
	}
	return ab
}

func params(kv ...string) []stashv1beta1.Param {
	var p []stashv1beta1.Param
	for i := 0; i+1 < len(kv); i += 2 {
		p = append(p, stashv1beta1.Param{Name: kv[i], Value: kv[i+1]})
	}
	return p
}

// Stash's AppBinding parameters: stash.addon.backupTask and restoreTask.
const addonParams = `{"stash":{"addon":{
	"backupTask":{"name":"mariadb-backup-10.5.8","params":[{"name":"args","value":"--databases shop"}]},
	"restoreTask":{"name":"mariadb-restore-10.5.8","params":[{"name":"args","value":"--one-database shop"}]}}}}`

// The task comes from the invoker's task name, else the AppBinding's
// parameters (stash.addon), else its type and version; the step's params
// are the Function's defaults overridden by the addon's, then the invoker's.
func TestResolveTaskPicksTheTask(t *testing.T) {
	cases := []struct {
		name    string
		ref     stashv1beta1.TaskRef
		ab      *appcatalog.AppBinding
		restore bool
		task    string
		want    StepOptions
	}{
		{
			name: "invoker's task name wins over the AppBinding's type and parameters",
			ref:  stashv1beta1.TaskRef{Name: "mysql-backup-8.0.21"},
			ab:   testAppBinding("kubedb.com/mariadb", "10.11.6", addonParams),
			task: "mysql-backup-8.0.21",
			want: StepOptions{Command: catalog.StepBackupMySQL, Args: []string{"--all-databases"}, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name:    "invoker's restore task",
			ref:     stashv1beta1.TaskRef{Name: "mysql-restore-8.0"},
			ab:      testAppBinding("mysql", "8.0.36", ""),
			restore: true,
			task:    "mysql-restore-8.0",
			want:    StepOptions{Command: catalog.StepRestoreMySQL, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name: "AppBinding's addon backupTask and its params",
			ab:   testAppBinding("kubedb.com/mysql", "8.0.36", addonParams),
			task: "mariadb-backup-10.5.8",
			want: StepOptions{Command: catalog.StepBackupMySQL, Args: []string{"--databases", "shop"}, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name:    "AppBinding's addon restoreTask for a restore",
			ab:      testAppBinding("kubedb.com/mysql", "8.0.36", addonParams),
			restore: true,
			task:    "mariadb-restore-10.5.8",
			want:    StepOptions{Command: catalog.StepRestoreMySQL, Args: []string{"--one-database", "shop"}, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name: "invoker's params override the addon's",
			ref:  stashv1beta1.TaskRef{Params: params("args", "--databases crm")},
			ab:   testAppBinding("", "", addonParams),
			task: "mariadb-backup-10.5.8",
			want: StepOptions{Command: catalog.StepBackupMySQL, Args: []string{"--databases", "crm"}, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name: "addon params do not apply to an invoker's own task",
			ref:  stashv1beta1.TaskRef{Name: "mysql-backup-8.0"},
			ab:   testAppBinding("", "", addonParams),
			task: "mysql-backup-8.0",
			want: StepOptions{Command: catalog.StepBackupMySQL, Args: []string{"--all-databases"}, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name:    "addon with only a backupTask: a restore falls back to type and version",
			ab:      testAppBinding("kubedb.com/mariadb", "11.4.2", `{"stash":{"addon":{"backupTask":{"name":"mariadb-backup-10"}}}}`),
			restore: true,
			task:    "mariadb-restore-11",
			want:    StepOptions{Command: catalog.StepRestoreMySQL, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name: "unparsable parameters fall back to type and version",
			ab:   testAppBinding("kubedb.com/mariadb", "10.11.6", `{"stash":`),
			task: "mariadb-backup-10",
			want: StepOptions{Command: catalog.StepBackupMySQL, Args: []string{"--all-databases"}, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name: "parameters without stash.addon fall back to type and version",
			ab:   testAppBinding("mysql", "5.7.44", `{"other":{"x":1}}`),
			task: "mysql-backup-5.7",
			want: StepOptions{Command: catalog.StepBackupMySQL, Args: []string{"--all-databases"}, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name: "mariadb 10.x by type and version",
			ab:   testAppBinding("kubedb.com/mariadb", "10.11.6", ""),
			task: "mariadb-backup-10",
			want: StepOptions{Command: catalog.StepBackupMySQL, Args: []string{"--all-databases"}, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name:    "mariadb restore by type and version",
			ab:      testAppBinding("MariaDB", "10.6", ""),
			restore: true,
			task:    "mariadb-restore-10",
			want:    StepOptions{Command: catalog.StepRestoreMySQL, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name: "mysql 8.4 line",
			ab:   testAppBinding("kubedb.com/mysql", "8.4.2", ""),
			task: "mysql-backup-8.4",
			want: StepOptions{Command: catalog.StepBackupMySQL, Args: []string{"--all-databases"}, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name:    "mysql 9.x uses the 8.4 tasks",
			ab:      testAppBinding("mysql", "v9.1.0", ""),
			restore: true,
			task:    "mysql-restore-8.4",
			want:    StepOptions{Command: catalog.StepRestoreMySQL, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name: "no type and no version is MySQL 8.0",
			ab:   testAppBinding("", "", ""),
			task: "mysql-backup-8.0",
			want: StepOptions{Command: catalog.StepBackupMySQL, Args: []string{"--all-databases"}, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name: "backup params expand into the step",
			ref: stashv1beta1.TaskRef{Name: "mysql-backup-8.0", Params: params(
				"args", "  --databases   shop  crm ",
				"multiDumpArgs", "--single-transaction --quick",
				"waitTimeout", "60",
				"ENABLE_CACHE", "false",
			)},
			ab:   testAppBinding("mysql", "8.0", ""),
			task: "mysql-backup-8.0",
			want: StepOptions{Command: catalog.StepBackupMySQL, Args: []string{"--databases", "shop", "crm"},
				MultiDumpArgs: []string{"--single-transaction", "--quick"}, WaitTimeout: 60 * time.Second, EnableCache: false},
		},
		{
			name: "restore params expand into the step",
			ref: stashv1beta1.TaskRef{Name: "mysql-restore-8.0", Params: params(
				"RESTORE_SNAPSHOTS", "1a2b3c4d",
				"SOURCE_HOSTNAME", "host-0",
				"waitTimeout", "1h",
			)},
			ab:      testAppBinding("mysql", "8.0", ""),
			restore: true,
			task:    "mysql-restore-8.0",
			want:    StepOptions{Command: catalog.StepRestoreMySQL, WaitTimeout: time.Hour, EnableCache: true, Snapshot: "1a2b3c4d", SourceHost: "host-0"},
		},
		{
			name: "param values are literal: no second expansion, no shell",
			ref:  stashv1beta1.TaskRef{Name: "mysql-backup-8.0", Params: params("args", "--databases ${outputDir} $(id)")},
			ab:   testAppBinding("mysql", "8.0", ""),
			task: "mysql-backup-8.0",
			want: StepOptions{Command: catalog.StepBackupMySQL, Args: []string{"--databases", "${outputDir}", "$(id)"}, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
		{
			name: "a param value cannot add a flag to the step",
			ref:  stashv1beta1.TaskRef{Name: "mysql-backup-8.0", Params: params("args", "--x --enable-cache=false")},
			ab:   testAppBinding("mysql", "8.0", ""),
			task: "mysql-backup-8.0",
			want: StepOptions{Command: catalog.StepBackupMySQL, Args: []string{"--x", "--enable-cache=false"}, WaitTimeout: 300 * time.Second, EnableCache: true},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			task, got, err := resolveTask(c.ref, c.ab, c.restore)
			if err != nil {
				t.Fatalf("resolveTask: %v", err)
			}
			if task != c.task {
				t.Errorf("task = %q, want %q", task, c.task)
			}
			if !sameStep(got, c.want) {
				t.Errorf("step = %+v\nwant   %+v", got, c.want)
			}
		})
	}
}

// sameStep compares steps, an empty arg list equal to none.
func sameStep(a, b StepOptions) bool {
	return a.Command == b.Command && slices.Equal(a.Args, b.Args) && slices.Equal(a.MultiDumpArgs, b.MultiDumpArgs) &&
		a.WaitTimeout == b.WaitTimeout && a.EnableCache == b.EnableCache && a.Snapshot == b.Snapshot && a.SourceHost == b.SourceHost
}

// A task the agent cannot run makes the session Invalid (no retry helps),
// and the message names what is wrong and how to fix it.
func TestResolveTaskErrors(t *testing.T) {
	cases := []struct {
		name    string
		ref     stashv1beta1.TaskRef
		ab      *appcatalog.AppBinding
		restore bool
		task    string   // the name returned with the error ("" when none was found)
		want    []string // in the message
	}{
		{
			name: "unknown task named by the invoker",
			ref:  stashv1beta1.TaskRef{Name: "postgres-backup-16"},
			ab:   testAppBinding("mysql", "8.0", ""),
			task: "postgres-backup-16",
			want: []string{`unknown Task "postgres-backup-16"`, "kubectl get tasks.stash.appscode.com", "kubectl stash install"},
		},
		{
			name:    "unknown task named by the AppBinding's addon",
			ab:      testAppBinding("mysql", "8.0", `{"stash":{"addon":{"restoreTask":{"name":"mysql-restore-9.9"}}}}`),
			restore: true,
			task:    "mysql-restore-9.9",
			want:    []string{`unknown Task "mysql-restore-9.9"`, "kubectl get tasks.stash.appscode.com"},
		},
		{
			name:    "a backup task used for a restore",
			ref:     stashv1beta1.TaskRef{Name: "mysql-backup-8.0"},
			ab:      testAppBinding("mysql", "8.0", ""),
			restore: true,
			task:    "mysql-backup-8.0",
			want:    []string{"Task mysql-backup-8.0", "no " + catalog.StepRestoreMySQL + " step"},
		},
		{
			name: "a restore task used for a backup",
			ref:  stashv1beta1.TaskRef{Name: "mariadb-restore-10"},
			ab:   testAppBinding("mariadb", "10", ""),
			task: "mariadb-restore-10",
			want: []string{"Task mariadb-restore-10", "no " + catalog.StepBackupMySQL + " step"},
		},
		{
			name: "a type that is not MySQL or MariaDB",
			ab:   testAppBinding("kubedb.com/postgres", "16.1", ""),
			want: []string{`"kubedb.com/postgres"`, "not MySQL or MariaDB"},
		},
		{
			name: "waitTimeout that is not a duration",
			ref:  stashv1beta1.TaskRef{Name: "mysql-backup-8.0", Params: params("waitTimeout", "soon")},
			ab:   testAppBinding("mysql", "8.0", ""),
			task: "mysql-backup-8.0",
			want: []string{"Task mysql-backup-8.0 params", `waitTimeout "soon" is not a number of seconds`},
		},
		{
			name:    "restore waitTimeout from the addon that is not a duration",
			ab:      testAppBinding("mysql", "8.0", `{"stash":{"addon":{"restoreTask":{"name":"mysql-restore-8.0","params":[{"name":"waitTimeout","value":"5 minutes"}]}}}}`),
			restore: true,
			task:    "mysql-restore-8.0",
			want:    []string{"Task mysql-restore-8.0 params", `waitTimeout "5 minutes"`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			task, _, err := resolveTask(c.ref, c.ab, c.restore)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want one wrapping ErrInvalid", err)
			}
			if task != c.task {
				t.Errorf("task = %q, want %q", task, c.task)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not say %q", err, w)
				}
			}
		})
	}
}

// Every catalog version resolves, by its own task name, to the step of the
// right direction with the catalog's defaults.
func TestResolveTaskCoversTheCatalog(t *testing.T) {
	ab := testAppBinding("", "", "")
	for _, v := range catalog.Versions() {
		for _, restore := range []bool{false, true} {
			name, want := catalog.BackupTaskName(v), catalog.StepBackupMySQL
			if restore {
				name, want = catalog.RestoreTaskName(v), catalog.StepRestoreMySQL
			}
			task, o, err := resolveTask(stashv1beta1.TaskRef{Name: name}, ab, restore)
			if err != nil || task != name || o.Command != want || o.WaitTimeout != 300*time.Second || !o.EnableCache {
				t.Errorf("resolveTask(%s, restore=%v) = %q, %+v, %v", name, restore, task, o, err)
			}
		}
	}
}
