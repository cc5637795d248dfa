package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
)

// accessCheck is one request and whether the agent's Role should allow it.
type accessCheck struct {
	verb, method, path, body string
	allowed                  bool
}

// newCheckAccessCmd proves, from inside the pod, that the agent's
// ServiceAccount can do what it needs and nothing it does not: each request
// is really made, and a 403 means Forbidden.
func newCheckAccessCmd() *cobra.Command {
	var ns, appBinding, kubeconfig string
	cmd := &cobra.Command{
		Use:   "check-access",
		Short: "Make the agent's requests, and some it must not make, and report which the API server allows",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ns == "" || appBinding == "" {
				return fmt.Errorf("check-access needs --namespace (or POD_NAMESPACE) and --appbinding")
			}
			rc, err := restConfig(kubeconfig)
			if err != nil {
				return err
			}
			hc, err := rest.HTTPClientFor(rc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			return checkAccess(ctx, cmd.OutOrStdout(), hc, strings.TrimRight(rc.Host, "/"), ns, appBinding)
		},
	}
	cmd.Flags().StringVar(&ns, "namespace", os.Getenv("POD_NAMESPACE"), "the agent's namespace")
	cmd.Flags().StringVar(&appBinding, "appbinding", "", "the agent's AppBinding")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig; in-cluster config when empty")
	return cmd
}

func checkAccess(ctx context.Context, out io.Writer, hc *http.Client, host, ns, ab string) error {
	abPath := "/apis/appcatalog.appscode.com/v1alpha1/namespaces/" + ns + "/appbindings/"
	secret := ""
	if b, code, err := do(ctx, hc, http.MethodGet, host+abPath+ab, ""); err == nil && code == http.StatusOK {
		var obj struct {
			Spec struct {
				Secret *struct{ Name string } `json:"secret"`
			} `json:"spec"`
		}
		if json.Unmarshal(b, &obj) == nil && obj.Spec.Secret != nil {
			secret = obj.Spec.Secret.Name
		}
	}
	checks := []accessCheck{
		{"get appbindings/" + ab, http.MethodGet, abPath + ab, "", true},
		{"list backupsessions", http.MethodGet, "/apis/stash.appscode.com/v1beta1/namespaces/" + ns + "/backupsessions", "", true},
		{"list restoresessions", http.MethodGet, "/apis/stash.appscode.com/v1beta1/namespaces/" + ns + "/restoresessions", "", true},
		{"list secrets", http.MethodGet, "/api/v1/namespaces/" + ns + "/secrets", "", false},
		{"get secrets/not-named-in-the-role", http.MethodGet, "/api/v1/namespaces/" + ns + "/secrets/not-named-in-the-role", "", false},
		{"list secrets -n kube-system", http.MethodGet, "/api/v1/namespaces/kube-system/secrets", "", false},
		{"get appbindings/another-database", http.MethodGet, abPath + "another-database", "", false},
		{"list pods", http.MethodGet, "/api/v1/namespaces/" + ns + "/pods", "", false},
		{"create pods", http.MethodPost, "/api/v1/namespaces/" + ns + "/pods", `{"apiVersion":"v1","kind":"Pod"}`, false},
		{"list nodes", http.MethodGet, "/api/v1/nodes", "", false},
		{"delete backupconfigurations", http.MethodDelete, "/apis/stash.appscode.com/v1beta1/namespaces/" + ns + "/backupconfigurations/x", "", false},
	}
	if secret != "" {
		checks = append(checks, accessCheck{"get secrets/" + secret, http.MethodGet, "/api/v1/namespaces/" + ns + "/secrets/" + secret, "", true})
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tEXPECTED\tREQUEST")
	var wrong []string
	for _, c := range checks {
		_, code, err := do(ctx, hc, c.method, host+c.path, c.body)
		if err != nil {
			return fmt.Errorf("%s: %w", c.verb, err)
		}
		got := "allowed"
		if code == http.StatusForbidden {
			got = "forbidden"
		} else if code == http.StatusUnauthorized {
			return fmt.Errorf("%s: the API server does not accept the agent's token (401)", c.verb)
		}
		want := map[bool]string{true: "allowed", false: "forbidden"}[c.allowed]
		fmt.Fprintf(tw, "%s\t%s\t%s\n", got, want, c.verb)
		if got != want {
			wrong = append(wrong, c.verb+" is "+got)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(wrong) > 0 {
		return fmt.Errorf("the agent's access is not what its Role should grant: %s", strings.Join(wrong, "; "))
	}
	return nil
}

// do makes one request; only the response body of a GET is read.
func do(ctx context.Context, hc *http.Client, method, url, body string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return b, resp.StatusCode, err
}
