package e2e

import (
	"context"
	"strings"
	"testing"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
	"github.com/kubectl-stash/kubectl-stash/test/testenv"
)

// TestNonTransactionalTablesAreNamed: --single-transaction does not make
// MyISAM or Aria tables consistent with the rest; a backup holding them
// says so in ConsistentDump, naming them and the option, and with
// --lock-all-tables it is consistent and says that.
func TestNonTransactionalTablesAreNamed(t *testing.T) {
	ctx := context.Background()
	src, err := s.env.AddMariaDB(ctx, "ntsrc", testenv.MariaDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, `CREATE DATABASE nt;
CREATE TABLE nt.orders (id INT PRIMARY KEY) ENGINE=InnoDB;
CREATE TABLE nt.legacy (id INT PRIMARY KEY) ENGINE=MyISAM;
CREATE TABLE nt.cache (id INT PRIMARY KEY) ENGINE=Aria;
CREATE DATABASE allinno;
CREATE TABLE allinno.t (id INT PRIMARY KEY) ENGINE=InnoDB;`); err != nil {
		t.Fatal(err)
	}
	ns := "consistency-e2e"
	st := localRepoNamespace(t, ns)
	addAppBinding(t, ns, "src", src)
	for name, args := range map[string]string{"mixed": "--databases nt", "locked": "--databases nt --lock-all-tables", "inno": "--databases allinno"} {
		mustOK(t, kubectl(t, "", "stash", "-n", ns, "create", "backupconfig", name, "--target", "appbinding/src", "--repository", "repo", "--param", "args="+args), "bc "+name)
	}
	startAgent(t, ns, "src")
	cond := func(config string) *metav1.Condition {
		t.Helper()
		r := kubectl(t, "", "stash", "-n", ns, "trigger", config, "--wait", "--timeout", "3m")
		mustOK(t, r, "backup "+config)
		bs, err := st.BackupSessions(ns).Get(ctx, createdName(r.stdout))
		if err != nil {
			t.Fatal(err)
		}
		return apimeta.FindStatusCondition(bs.Status.Conditions, stashv1beta1.ConditionConsistentDump)
	}
	c := cond("mixed")
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "NonTransactionalTables" {
		t.Fatalf("mixed engines: %+v", c)
	}
	for _, w := range []string{"nt.legacy (MyISAM)", "nt.cache (Aria)", "--lock-all-tables"} {
		if !strings.Contains(c.Message, w) {
			t.Errorf("message %q does not say %q", c.Message, w)
		}
	}
	if strings.Contains(c.Message, "nt.orders") {
		t.Errorf("an InnoDB table is listed: %q", c.Message)
	}
	if c := cond("locked"); c == nil || c.Status != metav1.ConditionTrue || c.Reason != "LockedAllTables" {
		t.Errorf("with --lock-all-tables: %+v", c)
	}
	if c := cond("inno"); c == nil || c.Status != metav1.ConditionTrue || c.Reason != "SingleTransaction" {
		t.Errorf("InnoDB only: %+v", c)
	}
}
