// Package apply writes typed objects to the API server with server-side
// apply under one field manager, so repeated runs converge and users can see
// which fields the plugin owns.
package apply

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// FieldManager is the one field manager the plugin applies with.
const FieldManager = "kubectl-stash"

// Applier applies objects.
type Applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	// DryRunServer asks the server to validate without persisting.
	DryRunServer bool
}

// New builds an Applier.
func New(dyn dynamic.Interface, disco discovery.DiscoveryInterface) *Applier {
	return &Applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))}
}

// Result is one applied object.
type Result struct {
	GVK       schema.GroupVersionKind
	Resource  schema.GroupResource
	Namespace string
	Name      string
}

// String is kubectl's "kind.group/name" form.
func (r Result) String() string {
	return fmt.Sprintf("%s/%s", r.Resource.String(), r.Name)
}

// ToUnstructured converts a typed object with TypeMeta set, dropping status
// and empty creation timestamps that the plugin does not own.
func ToUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	if u.GetKind() == "" || u.GetAPIVersion() == "" {
		return nil, fmt.Errorf("object %q has no apiVersion/kind set", u.GetName())
	}
	delete(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u, nil
}

// Apply server-side-applies each object in order, forcing ownership of the
// fields it sets (the plugin is the owner of what it renders).
func (a *Applier) Apply(ctx context.Context, objs ...runtime.Object) ([]Result, error) {
	var out []Result
	for _, obj := range objs {
		u, err := ToUnstructured(obj)
		if err != nil {
			return out, err
		}
		gvk := u.GroupVersionKind()
		mapping, err := a.mapping(gvk)
		if err != nil {
			return out, err
		}
		var ri dynamic.ResourceInterface = a.dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			if u.GetNamespace() == "" {
				return out, fmt.Errorf("%s %s: no namespace set", gvk.Kind, u.GetName())
			}
			ri = a.dyn.Resource(mapping.Resource).Namespace(u.GetNamespace())
		}
		opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
		if a.DryRunServer {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := ri.Apply(ctx, u.GetName(), u, opts); err != nil {
			return out, fmt.Errorf("apply %s %s: %w", gvk.Kind, nsName(u), err)
		}
		out = append(out, Result{GVK: gvk, Resource: mapping.Resource.GroupResource(), Namespace: u.GetNamespace(), Name: u.GetName()})
	}
	return out, nil
}

// Mapping resolves a kind to its resource.
func (a *Applier) Mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	return a.mapping(gvk)
}

// mapping resolves a kind, refreshing discovery once when the kind is new
// (right after CRDs were installed).
func (a *Applier) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil && meta.IsNoMatchError(err) {
		a.mapper.Reset()
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil && meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("the API server does not serve %s: run `kubectl stash install` first: %w", gvk.GroupKind(), err)
	}
	return m, err
}

// Reset forgets cached discovery.
func (a *Applier) Reset() { a.mapper.Reset() }

func nsName(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetName()
	}
	return u.GetNamespace() + "/" + u.GetName()
}
