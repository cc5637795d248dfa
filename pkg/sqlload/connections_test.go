package sqlload

import "testing"

func TestAutoConnections(t *testing.T) {
	for cpus, want := range map[int]int{0: 2, -1: 2, 1: 4, 2: 4, 3: 6, 4: 8, 64: 8} {
		if got := AutoConnections(cpus); got != want {
			t.Errorf("AutoConnections(%d) = %d, want %d", cpus, got, want)
		}
	}
}
