// Package client gives typed access to the Stash and AppBinding kinds over
// the real API, without generated clientsets: one generic Resource per kind.
package client

import (
	"context"
	"fmt"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	appcatalog "github.com/kubectl-stash/kubectl-stash/pkg/apis/appcatalog/v1alpha1"
	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
	stashv1beta1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1beta1"
)

// newScheme registers only what the agent's clients decode. client-go's
// kubernetes/scheme, which registers every built-in API group when its
// package initialises, is left out: it was 4.6 MiB of the agent's RSS.
func newScheme(add ...func(*runtime.Scheme) error) *runtime.Scheme {
	s := runtime.NewScheme()
	for _, f := range add {
		if err := f(s); err != nil {
			panic(err) // static registration; cannot fail at run time
		}
	}
	return s
}

// Stash is typed access to the Stash and AppBinding kinds.
type Stash struct {
	v1alpha1   rest.Interface
	v1beta1    rest.Interface
	appcatalog rest.Interface
	codec      runtime.ParameterCodec
}

// NewStash builds the clients from a rest config.
func NewStash(cfg *rest.Config) (*Stash, error) {
	s := newScheme(stashv1alpha1.AddToScheme, stashv1beta1.AddToScheme, appcatalog.AddToScheme)
	mk := func(gv schema.GroupVersion) (rest.Interface, error) {
		return restClient(cfg, s, "/apis", gv)
	}
	var st Stash
	var err error
	if st.v1alpha1, err = mk(stashv1alpha1.GroupVersion); err != nil {
		return nil, err
	}
	if st.v1beta1, err = mk(stashv1beta1.GroupVersion); err != nil {
		return nil, err
	}
	if st.appcatalog, err = mk(appcatalog.GroupVersion); err != nil {
		return nil, err
	}
	st.codec = runtime.NewParameterCodec(s)
	return &st, nil
}

// Resource is a typed client for one kind in one namespace ("" for cluster scope).
type Resource[T runtime.Object, L runtime.Object] struct {
	rc       rest.Interface
	codec    runtime.ParameterCodec
	resource string
	ns       string
	newT     func() T
	newL     func() L
}

func (s *Stash) Repositories(ns string) *Resource[*stashv1alpha1.Repository, *stashv1alpha1.RepositoryList] {
	return &Resource[*stashv1alpha1.Repository, *stashv1alpha1.RepositoryList]{s.v1alpha1, s.codec, "repositories", ns,
		func() *stashv1alpha1.Repository { return &stashv1alpha1.Repository{} }, func() *stashv1alpha1.RepositoryList { return &stashv1alpha1.RepositoryList{} }}
}

func (s *Stash) BackupConfigurations(ns string) *Resource[*stashv1beta1.BackupConfiguration, *stashv1beta1.BackupConfigurationList] {
	return &Resource[*stashv1beta1.BackupConfiguration, *stashv1beta1.BackupConfigurationList]{s.v1beta1, s.codec, "backupconfigurations", ns,
		func() *stashv1beta1.BackupConfiguration { return &stashv1beta1.BackupConfiguration{} }, func() *stashv1beta1.BackupConfigurationList { return &stashv1beta1.BackupConfigurationList{} }}
}

func (s *Stash) BackupSessions(ns string) *Resource[*stashv1beta1.BackupSession, *stashv1beta1.BackupSessionList] {
	return &Resource[*stashv1beta1.BackupSession, *stashv1beta1.BackupSessionList]{s.v1beta1, s.codec, "backupsessions", ns,
		func() *stashv1beta1.BackupSession { return &stashv1beta1.BackupSession{} }, func() *stashv1beta1.BackupSessionList { return &stashv1beta1.BackupSessionList{} }}
}

func (s *Stash) RestoreSessions(ns string) *Resource[*stashv1beta1.RestoreSession, *stashv1beta1.RestoreSessionList] {
	return &Resource[*stashv1beta1.RestoreSession, *stashv1beta1.RestoreSessionList]{s.v1beta1, s.codec, "restoresessions", ns,
		func() *stashv1beta1.RestoreSession { return &stashv1beta1.RestoreSession{} }, func() *stashv1beta1.RestoreSessionList { return &stashv1beta1.RestoreSessionList{} }}
}

func (s *Stash) VerificationSessions(ns string) *Resource[*stashv1beta1.VerificationSession, *stashv1beta1.VerificationSessionList] {
	return &Resource[*stashv1beta1.VerificationSession, *stashv1beta1.VerificationSessionList]{s.v1beta1, s.codec, "verificationsessions", ns,
		func() *stashv1beta1.VerificationSession { return &stashv1beta1.VerificationSession{} }, func() *stashv1beta1.VerificationSessionList {
			return &stashv1beta1.VerificationSessionList{}
		}}
}

func (s *Stash) Tasks() *Resource[*stashv1beta1.Task, *stashv1beta1.TaskList] {
	return &Resource[*stashv1beta1.Task, *stashv1beta1.TaskList]{s.v1beta1, s.codec, "tasks", "",
		func() *stashv1beta1.Task { return &stashv1beta1.Task{} }, func() *stashv1beta1.TaskList { return &stashv1beta1.TaskList{} }}
}

func (s *Stash) Functions() *Resource[*stashv1beta1.Function, *stashv1beta1.FunctionList] {
	return &Resource[*stashv1beta1.Function, *stashv1beta1.FunctionList]{s.v1beta1, s.codec, "functions", "",
		func() *stashv1beta1.Function { return &stashv1beta1.Function{} }, func() *stashv1beta1.FunctionList { return &stashv1beta1.FunctionList{} }}
}

func (s *Stash) AppBindings(ns string) *Resource[*appcatalog.AppBinding, *appcatalog.AppBindingList] {
	return &Resource[*appcatalog.AppBinding, *appcatalog.AppBindingList]{s.appcatalog, s.codec, "appbindings", ns,
		func() *appcatalog.AppBinding { return &appcatalog.AppBinding{} }, func() *appcatalog.AppBindingList { return &appcatalog.AppBindingList{} }}
}

func restClient(cfg *rest.Config, s *runtime.Scheme, apiPath string, gv schema.GroupVersion) (rest.Interface, error) {
	return restClientAs(cfg, s, apiPath, gv, runtime.ContentTypeJSON)
}

// restClientAs is restClient speaking contentType. Built-in kinds take
// protobuf, which costs the API server less than JSON on every request
// (an idle agent's Lease renewal is one); custom resources only JSON.
func restClientAs(cfg *rest.Config, s *runtime.Scheme, apiPath string, gv schema.GroupVersion, contentType string) (rest.Interface, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &gv
	c.APIPath = apiPath
	c.ContentType = contentType
	if contentType == runtime.ContentTypeProtobuf {
		c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	}
	c.NegotiatedSerializer = serializer.NewCodecFactory(s).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	return rest.RESTClientFor(c)
}

// Core is typed access to the built-in kinds the agent uses.
type Core struct {
	core, coordination rest.Interface
	codec              runtime.ParameterCodec
}

// NewCore builds the clients for Secrets, Events and Leases.
func NewCore(cfg *rest.Config) (*Core, error) {
	s := newScheme(corev1.AddToScheme, coordinationv1.AddToScheme)
	var c Core
	var err error
	if c.core, err = restClientAs(cfg, s, "/api", corev1.SchemeGroupVersion, runtime.ContentTypeProtobuf); err != nil {
		return nil, err
	}
	if c.coordination, err = restClientAs(cfg, s, "/apis", coordinationv1.SchemeGroupVersion, runtime.ContentTypeProtobuf); err != nil {
		return nil, err
	}
	c.codec = runtime.NewParameterCodec(s)
	return &c, nil
}

func (c *Core) Secrets(ns string) *Resource[*corev1.Secret, *corev1.SecretList] {
	return &Resource[*corev1.Secret, *corev1.SecretList]{c.core, c.codec, "secrets", ns,
		func() *corev1.Secret { return &corev1.Secret{} }, func() *corev1.SecretList { return &corev1.SecretList{} }}
}

func (c *Core) Events(ns string) *Resource[*corev1.Event, *corev1.EventList] {
	return &Resource[*corev1.Event, *corev1.EventList]{c.core, c.codec, "events", ns,
		func() *corev1.Event { return &corev1.Event{} }, func() *corev1.EventList { return &corev1.EventList{} }}
}

func (c *Core) Leases(ns string) *Resource[*coordinationv1.Lease, *coordinationv1.LeaseList] {
	return &Resource[*coordinationv1.Lease, *coordinationv1.LeaseList]{c.coordination, c.codec, "leases", ns,
		func() *coordinationv1.Lease { return &coordinationv1.Lease{} }, func() *coordinationv1.LeaseList { return &coordinationv1.LeaseList{} }}
}

// RESTClient returns the client for a kind's group, for list-watch.
func (r *Resource[T, L]) RESTClient() rest.Interface { return r.rc }

// Name is the plural resource name.
func (r *Resource[T, L]) Name() string { return r.resource }

func (r *Resource[T, L]) req(verb string) *rest.Request {
	var q *rest.Request
	switch verb {
	case "GET":
		q = r.rc.Get()
	case "POST":
		q = r.rc.Post()
	case "PUT":
		q = r.rc.Put()
	case "DELETE":
		q = r.rc.Delete()
	}
	return q.NamespaceIfScoped(r.ns, r.ns != "").Resource(r.resource)
}

// Get reads one object.
func (r *Resource[T, L]) Get(ctx context.Context, name string) (T, error) {
	obj := r.newT()
	err := r.req("GET").Name(name).Do(ctx).Into(obj)
	return obj, err
}

// List reads objects.
func (r *Resource[T, L]) List(ctx context.Context, opts metav1.ListOptions) (L, error) {
	obj := r.newL()
	err := r.req("GET").VersionedParams(&opts, r.codec).Do(ctx).Into(obj)
	return obj, err
}

// Watch streams changes.
func (r *Resource[T, L]) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return r.req("GET").VersionedParams(&opts, r.codec).Watch(ctx)
}

// Create makes an object.
func (r *Resource[T, L]) Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error) {
	out := r.newT()
	err := r.req("POST").VersionedParams(&opts, r.codec).Body(obj).Do(ctx).Into(out)
	return out, err
}

// Update replaces an object; it fails with a Conflict on a stale resourceVersion.
func (r *Resource[T, L]) Update(ctx context.Context, obj T) (T, error) {
	return r.put(ctx, obj, "")
}

// UpdateStatus replaces the status subresource, with optimistic concurrency.
func (r *Resource[T, L]) UpdateStatus(ctx context.Context, obj T) (T, error) {
	return r.put(ctx, obj, "status")
}

func (r *Resource[T, L]) put(ctx context.Context, obj T, sub string) (T, error) {
	out := r.newT()
	m, err := meta.Accessor(obj)
	if err != nil {
		return out, err
	}
	q := r.req("PUT").Name(m.GetName())
	if sub != "" {
		q = q.SubResource(sub)
	}
	err = q.Body(obj).Do(ctx).Into(out)
	return out, err
}

// Patch patches an object or one of its subresources.
func (r *Resource[T, L]) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, sub ...string) (T, error) {
	out := r.newT()
	q := r.rc.Patch(pt).NamespaceIfScoped(r.ns, r.ns != "").Resource(r.resource).Name(name)
	if len(sub) > 0 {
		q = q.SubResource(sub...)
	}
	err := q.Body(data).Do(ctx).Into(out)
	return out, err
}

// Delete removes an object.
func (r *Resource[T, L]) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return r.req("DELETE").Name(name).Body(&opts).Do(ctx).Error()
}

// String names the resource for messages.
func (r *Resource[T, L]) String() string {
	if r.ns == "" {
		return r.resource
	}
	return fmt.Sprintf("%s in namespace %s", r.resource, r.ns)
}

// Ping asks the API server for its version: every authenticated user may
// (system:public-info-viewer), so it tells whether the server answers.
func (c *Core) Ping(ctx context.Context) error {
	_, err := c.core.Get().AbsPath("/version").DoRaw(ctx)
	return err
}
