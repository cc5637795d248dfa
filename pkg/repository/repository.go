// Package repository turns a Repository and its Secret into what restic
// needs: the repository string, the environment and files. Credentials go
// only into the environment or 0600 files.
package repository

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	stashv1alpha1 "github.com/kubectl-stash/kubectl-stash/pkg/apis/stash/v1alpha1"
	"github.com/kubectl-stash/kubectl-stash/pkg/restic"
)

// Secret keys (Stash's).
const (
	KeyResticPassword = "RESTIC_PASSWORD"
	KeyCACertData     = "CA_CERT_DATA"
	KeyRestUser       = "REST_SERVER_USERNAME"
	KeyRestPassword   = "REST_SERVER_PASSWORD"
	KeyGoogleJSON     = "GOOGLE_SERVICE_ACCOUNT_JSON_KEY"
)

// ErrMissingKey marks a Secret without a key the backend needs.
var ErrMissingKey = errors.New("secret lacks a required key")

// BackendType names the backend set in a spec.
func BackendType(b stashv1alpha1.Backend) string {
	switch {
	case b.Local != nil:
		return "local"
	case b.S3 != nil:
		return "s3"
	case b.GCS != nil:
		return "gcs"
	case b.Azure != nil:
		return "azure"
	case b.Swift != nil:
		return "swift"
	case b.B2 != nil:
		return "b2"
	case b.Rest != nil:
		return "rest"
	}
	return ""
}

// RequiredKeys lists the Secret keys a backend cannot work without.
func RequiredKeys(backend string) []string {
	switch backend {
	case "s3":
		return []string{KeyResticPassword, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
	case "gcs":
		return []string{KeyResticPassword, "GOOGLE_PROJECT_ID", KeyGoogleJSON}
	case "azure":
		return []string{KeyResticPassword, "AZURE_ACCOUNT_NAME", "AZURE_ACCOUNT_KEY"}
	case "b2":
		return []string{KeyResticPassword, "B2_ACCOUNT_ID", "B2_ACCOUNT_KEY"}
	default: // local, rest (auth optional), swift (several auth schemes)
		return []string{KeyResticPassword}
	}
}

// CheckSecret says which required key is missing, if any.
func CheckSecret(backend, secretName string, data map[string][]byte) error {
	var missing []string
	for _, k := range RequiredKeys(backend) {
		if len(data[k]) == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: Secret %s has no %s, which the %s backend needs: add it with `kubectl create secret generic %s --from-literal=%s=...` or patch the Secret",
			ErrMissingKey, secretName, strings.Join(missing, ", "), backend, secretName, missing[0])
	}
	return nil
}

// Describe gives the backend, bucket and prefix, for labels and messages.
func Describe(b stashv1alpha1.Backend) (backend, bucket, prefix string) {
	backend = BackendType(b)
	switch {
	case b.S3 != nil:
		return backend, b.S3.Bucket, b.S3.Prefix
	case b.GCS != nil:
		return backend, b.GCS.Bucket, b.GCS.Prefix
	case b.Azure != nil:
		return backend, b.Azure.Container, b.Azure.Prefix
	case b.Swift != nil:
		return backend, b.Swift.Container, b.Swift.Prefix
	case b.B2 != nil:
		return backend, b.B2.Bucket, b.B2.Prefix
	case b.Local != nil:
		return backend, "", path.Join(b.Local.MountPath, b.Local.SubPath)
	case b.Rest != nil:
		return backend, "", b.Rest.URL
	}
	return backend, "", ""
}

// URL is restic's repository string for a backend.
func URL(b stashv1alpha1.Backend) (string, error) {
	clean := func(p string) string { return strings.Trim(p, "/") }
	switch {
	case b.Local != nil:
		if err := CheckSubPath(b.Local.SubPath); err != nil {
			return "", err
		}
		return path.Join(b.Local.MountPath, b.Local.SubPath), nil
	case b.S3 != nil:
		ep := strings.TrimRight(b.S3.Endpoint, "/")
		u := "s3:" + ep + "/" + b.S3.Bucket
		if p := clean(b.S3.Prefix); p != "" {
			u += "/" + p
		}
		return u, nil
	case b.GCS != nil:
		return "gs:" + b.GCS.Bucket + ":/" + clean(b.GCS.Prefix), nil
	case b.Azure != nil:
		return "azure:" + b.Azure.Container + ":/" + clean(b.Azure.Prefix), nil
	case b.Swift != nil:
		return "swift:" + b.Swift.Container + ":/" + clean(b.Swift.Prefix), nil
	case b.B2 != nil:
		return "b2:" + b.B2.Bucket + ":" + clean(b.B2.Prefix), nil
	case b.Rest != nil:
		return "rest:" + b.Rest.URL, nil
	}
	return "", fmt.Errorf("repository has no backend set")
}

// CheckSubPath accepts a local backend's subPath: a directory inside the
// volume, so relative and without "..", as Kubernetes requires of a
// volumeMount's subPath.
func CheckSubPath(sub string) error {
	if sub == "" {
		return nil
	}
	if path.IsAbs(sub) || slices.Contains(strings.Split(sub, "/"), "..") {
		return fmt.Errorf("spec.backend.local.subPath %q must be a directory inside the volume: a relative path without \"..\"", sub)
	}
	return nil
}

// Config builds a restic.Repo. Files (CA, Google key) are written 0600 into
// a new directory under scratch; call cleanup when done.
func Config(repo *stashv1alpha1.Repository, secret map[string][]byte, scratch, resticBin string) (r *restic.Repo, cleanup func(), err error) {
	b := repo.Spec.Backend
	backend := BackendType(b)
	if err := CheckSecret(backend, b.StorageSecretName, secret); err != nil {
		return nil, nil, err
	}
	u, err := URL(b)
	if err != nil {
		return nil, nil, fmt.Errorf("repository %s/%s: %w", repo.Namespace, repo.Name, err)
	}
	dir, err := os.MkdirTemp(scratch, "repo-")
	if err != nil {
		return nil, nil, fmt.Errorf("scratch directory %s: %w", scratch, err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	r = &restic.Repo{Binary: resticBin, URL: u, Env: map[string]string{}, CacheDir: filepath.Join(scratch, "restic-cache")}
	// Pass through the credential variables restic itself reads.
	keys := make([]string, 0, len(secret))
	for k := range secret {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := string(secret[k])
		switch {
		case k == KeyResticPassword:
			r.Env["RESTIC_PASSWORD"] = v
		case k == KeyRestUser:
			r.Env["RESTIC_REST_USERNAME"] = v
		case k == KeyRestPassword:
			r.Env["RESTIC_REST_PASSWORD"] = v
		case k == KeyCACertData:
			p := filepath.Join(dir, "ca.crt")
			if err := os.WriteFile(p, secret[k], 0o600); err != nil {
				cleanup()
				return nil, nil, err
			}
			r.CACertFile = p
		case k == KeyGoogleJSON:
			p := filepath.Join(dir, "gcs.json")
			if err := os.WriteFile(p, secret[k], 0o600); err != nil {
				cleanup()
				return nil, nil, err
			}
			r.Env["GOOGLE_APPLICATION_CREDENTIALS"] = p
		case strings.HasPrefix(k, "AWS_"), strings.HasPrefix(k, "GOOGLE_"), strings.HasPrefix(k, "AZURE_"),
			strings.HasPrefix(k, "B2_"), strings.HasPrefix(k, "ST_"), strings.HasPrefix(k, "OS_"):
			r.Env[k] = v
		}
	}
	if s3 := b.S3; s3 != nil {
		if s3.Region != "" {
			r.Options = append(r.Options, "s3.region="+s3.Region)
		}
		r.InsecureTLS = s3.InsecureTLS
	}
	return r, cleanup, nil
}
