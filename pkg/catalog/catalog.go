// Package catalog is the Task and Function catalog: the objects `kubectl
// stash install` applies, and the same catalog the agent resolves tasks from.
// The agent reads no cluster-scoped objects (see docs/security.md), so the
// catalog it knows is compiled in and matches what install applies.
package catalog

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
)

// Step commands the agent knows. A Function's first arg names one.
const (
	StepBackupMySQL  = "backup-mysql"
	StepRestoreMySQL = "restore-mysql"
	StepUpdateStatus = "update-status"
)

// Flavor is a database family.
type Flavor string

const (
	MySQL   Flavor = "mysql"
	MariaDB Flavor = "mariadb"
)

// Version is one catalog entry: a family and a version label.
type Version struct {
	Flavor Flavor
	Label  string // 8.0, 8.0.21, 10, ...
}

// Versions lists every catalog version. The Stash names (8.0.21, 5.7.25, ...)
// keep existing Stash manifests resolving; the short ones follow major lines.
var versions = []Version{
	{MySQL, "5.7"}, {MySQL, "5.7.25"},
	{MySQL, "8.0"}, {MySQL, "8.0.3"}, {MySQL, "8.0.14"}, {MySQL, "8.0.21"},
	{MySQL, "8.4"},
	{MariaDB, "10"}, {MariaDB, "10.5.8"}, {MariaDB, "11"},
}

// Versions returns the catalog's versions.
func Versions() []Version { return append([]Version(nil), versions...) }

// BackupTaskName is the Task that backs up a version.
func BackupTaskName(v Version) string { return fmt.Sprintf("%s-backup-%s", v.Flavor, v.Label) }

// RestoreTaskName is the Task that restores a version.
func RestoreTaskName(v Version) string { return fmt.Sprintf("%s-restore-%s", v.Flavor, v.Label) }

// Catalog is a resolved set of Tasks and Functions.
type Catalog struct {
	Tasks     map[string]*v1beta1.Task
	Functions map[string]*v1beta1.Function
}

// New builds the catalog, with the agent image in each Function.
func New(image string) *Catalog {
	c := &Catalog{Tasks: map[string]*v1beta1.Task{}, Functions: map[string]*v1beta1.Function{}}
	c.addFunction("update-status", image, []string{StepUpdateStatus, "--output-dir=${outputDir:=}"})
	for _, v := range versions {
		c.addFunction(BackupTaskName(v), image, []string{
			StepBackupMySQL,
			"--args=${args:=--all-databases}",
			"--multi-dump-args=${multiDumpArgs:=}",
			"--wait-timeout=${waitTimeout:=300}",
			"--enable-cache=${ENABLE_CACHE:=true}",
			"--max-connections=${MAX_CONNECTIONS:=0}",
			"--output-dir=${outputDir:=}",
		})
		c.addFunction(RestoreTaskName(v), image, []string{
			StepRestoreMySQL,
			"--args=${args:=}",
			"--wait-timeout=${waitTimeout:=300}",
			"--enable-cache=${ENABLE_CACHE:=true}",
			"--max-connections=${MAX_CONNECTIONS:=0}",
			"--snapshot=${RESTORE_SNAPSHOTS:=}",
			"--source-host=${SOURCE_HOSTNAME:=}",
			"--output-dir=${outputDir:=}",
		})
		for _, name := range []string{BackupTaskName(v), RestoreTaskName(v)} {
			out := []v1beta1.Param{{Name: "outputDir", Value: "/stash-tmp/output"}}
			c.Tasks[name] = &v1beta1.Task{
				TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: v1beta1.KindTask},
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels()},
				Spec: v1beta1.TaskSpec{Steps: []v1beta1.FunctionRef{
					{Name: name, Params: out},
					{Name: "update-status", Params: out},
				}},
			}
		}
	}
	return c
}

func (c *Catalog) addFunction(name, image string, args []string) {
	c.Functions[name] = &v1beta1.Function{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.GroupVersion.String(), Kind: v1beta1.KindFunction},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels()},
		Spec: v1beta1.FunctionSpec{
			Image:   image,
			Command: []string{"/stash-agent"},
			Args:    args,
		},
	}
}

func labels() map[string]string {
	return map[string]string{"app.kubernetes.io/managed-by": "kubectl-stash", "app.kubernetes.io/part-of": "kubectl-stash-catalog"}
}

// SortedTasks returns the Tasks by name.
func (c *Catalog) SortedTasks() []*v1beta1.Task {
	out := make([]*v1beta1.Task, 0, len(c.Tasks))
	for _, t := range c.Tasks {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SortedFunctions returns the Functions by name.
func (c *Catalog) SortedFunctions() []*v1beta1.Function {
	out := make([]*v1beta1.Function, 0, len(c.Functions))
	for _, f := range c.Functions {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// VersionFor picks the catalog version for an AppBinding's type and version
// (e.g. "kubedb.com/mariadb", "10.11.6"), by major line.
func VersionFor(appType, appVersion string) (Version, error) {
	t := strings.ToLower(appType)
	if i := strings.LastIndex(t, "/"); i >= 0 {
		t = t[i+1:]
	}
	fl := Flavor("")
	switch {
	case strings.Contains(t, "mariadb"):
		fl = MariaDB
	case strings.Contains(t, "mysql") || t == "":
		fl = MySQL
	default:
		return Version{}, fmt.Errorf("AppBinding type %q is not MySQL or MariaDB", appType)
	}
	parts := strings.Split(strings.TrimPrefix(appVersion, "v"), ".")
	switch fl {
	case MariaDB:
		if parts[0] == "11" || parts[0] == "12" {
			return Version{MariaDB, "11"}, nil
		}
		return Version{MariaDB, "10"}, nil
	default:
		if len(parts) >= 2 {
			switch parts[0] + "." + parts[1] {
			case "5.7":
				return Version{MySQL, "5.7"}, nil
			case "8.4", "9.0", "9.1", "9.2", "9.3", "9.4", "9.5":
				return Version{MySQL, "8.4"}, nil
			}
		}
		return Version{MySQL, "8.0"}, nil
	}
}
