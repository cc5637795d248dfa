// Package v1alpha1 holds the stash.appscode.com/v1alpha1 API (Repository),
// field-compatible with Stash so that existing manifests keep working.
//
// +kubebuilder:object:generate=true
// +groupName=stash.appscode.com
package v1alpha1
