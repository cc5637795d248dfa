package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of this package.
var GroupVersion = schema.GroupVersion{Group: "stash.appscode.com", Version: "v1beta1"}

// Kind names.
const (
	KindBackupConfiguration = "BackupConfiguration"
	KindBackupSession       = "BackupSession"
	KindRestoreSession      = "RestoreSession"
	KindVerificationSession = "VerificationSession"
	KindTask                = "Task"
	KindFunction            = "Function"
)

// AddToScheme registers this package's kinds with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&BackupConfiguration{}, &BackupConfigurationList{},
		&BackupSession{}, &BackupSessionList{},
		&RestoreSession{}, &RestoreSessionList{},
		&VerificationSession{}, &VerificationSessionList{},
		&Task{}, &TaskList{},
		&Function{}, &FunctionList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
