// Package session holds what the plugin and the agent share about sessions:
// how a BackupSession is made and how sizes are shown.
package session

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
)

// NewBackup is a Pending BackupSession for a config, labelled as Stash does.
func NewBackup(bc *stashv1beta1.BackupConfiguration, name string) *stashv1beta1.BackupSession {
	retry := int32(0)
	if bc.Spec.RetryConfig != nil {
		retry = bc.Spec.RetryConfig.MaxRetry
	}
	return &stashv1beta1.BackupSession{
		TypeMeta: metav1.TypeMeta{APIVersion: stashv1beta1.GroupVersion.String(), Kind: stashv1beta1.KindBackupSession},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: bc.Namespace, Labels: map[string]string{
			stashv1beta1.LabelInvokerKind: stashv1beta1.KindBackupConfiguration,
			stashv1beta1.LabelInvokerName: bc.Name,
		}},
		Spec: stashv1beta1.BackupSessionSpec{
			Invoker:   stashv1beta1.BackupInvokerRef{APIGroup: stashv1beta1.GroupVersion.Group, Kind: stashv1beta1.KindBackupConfiguration, Name: bc.Name},
			RetryLeft: retry,
		},
	}
}

// HumanBytes formats a size as restic and Stash do (1.500 MiB).
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.3f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
