// Package v1alpha1 holds appcatalog.appscode.com/v1alpha1 AppBinding: how to
// reach a database and which Secret holds its credentials.
//
// +kubebuilder:object:generate=true
// +groupName=appcatalog.appscode.com
package v1alpha1
