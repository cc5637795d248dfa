// Package v1beta1 holds the stash.appscode.com/v1beta1 API: BackupConfiguration,
// BackupSession, RestoreSession, Task and Function, field-compatible with Stash.
//
// +kubebuilder:object:generate=true
// +groupName=stash.appscode.com
package v1beta1
