package render

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestRestoreSpoolFitsTheScratchVolume(t *testing.T) {
	q := func(s string) *resource.Quantity { v := resource.MustParse(s); return &v }
	for _, c := range []struct {
		medium corev1.StorageMedium
		limit  *resource.Quantity
		want   string
	}{
		{"", nil, ""},           // the agent's default
		{"", q("10Gi"), ""},     // half is more than the default
		{"", q("1Gi"), "512Mi"}, // half the limit
		{corev1.StorageMediumMemory, nil, "256Mi"},
		{corev1.StorageMediumMemory, q("128Mi"), "64Mi"},
		{"", q("1Ki"), "1Mi"}, // never less than 1Mi
	} {
		if got := restoreSpool(c.medium, c.limit); got != c.want {
			t.Errorf("restoreSpool(%q, %v) = %q, want %q", c.medium, c.limit, got, c.want)
		}
	}
}
