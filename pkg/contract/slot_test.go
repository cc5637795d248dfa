package contract

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubectl-stash/kubectl-stash/pkg/contract/schedule"
)

// Config names as Kubernetes allows them (DNS-1123 subdomains up to 253).
var slotConfigs = []string{
	"nightly",
	"a",
	strings.Repeat("a", 52),
	strings.Repeat("a", 53),
	strings.Repeat("b", 63),
	"mysql-shop-production-eu-west-1-nightly-full-backup-with-retention",
	strings.Repeat("x", 51) + "-y",
	strings.Repeat("x", 51) + ".y",
	strings.Repeat("x", 50) + "--zzz",
	strings.Repeat("x", 51) + "--zzz",
	"db.shop.example.com-" + strings.Repeat("n", 40),
	strings.Repeat("c", 253),
}

func zones() []*time.Location {
	return []*time.Location{time.UTC, time.FixedZone("UTC+14", 14*3600), time.FixedZone("UTC-9:30", -(9*3600 + 1800)), time.FixedZone("UTC+5:45", 5*3600+45*60)}
}

// Every session name is a valid Kubernetes object name and label value
// (DNS-1123, at most 63 characters), whatever the config's length.
func TestSessionNameIsAValidName(t *testing.T) {
	slots := []time.Time{time.Unix(0, 0), time.Unix(1_700_000_000, 0), time.Date(2286, 11, 20, 17, 46, 40, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 0, 0, time.UTC)}
	for _, c := range slotConfigs {
		if errs := validation.IsDNS1123Subdomain(c); len(errs) != 0 {
			t.Fatalf("fixture %q is no valid config name: %v", c, errs)
		}
		for _, s := range slots {
			n := SessionName(c, s)
			if len(n) > 63 {
				t.Errorf("SessionName(%d chars, %v) is %d chars: %q", len(c), s, len(n), n)
			}
			if errs := validation.IsDNS1123Subdomain(n); len(errs) != 0 {
				t.Errorf("SessionName(%q, %v) = %q: %v", c, s, n, errs)
			}
			if errs := validation.IsValidLabelValue(n); len(errs) != 0 {
				t.Errorf("SessionName(%q, %v) = %q is no label value: %v", c, s, n, errs)
			}
			if !strings.HasSuffix(n, "-"+itoa(s.Unix())) {
				t.Errorf("SessionName(%q, %v) = %q does not end in the slot", c, s, n)
			}
			if len(c) <= 63-len("-"+itoa(s.Unix())) && !strings.HasPrefix(n, c+"-") {
				t.Errorf("SessionName(%q, %v) = %q: a name that fits was cut", c, s, n)
			}
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// The same config and slot give the same name in every zone; another slot
// gives another name.
func TestSessionNamePerSlot(t *testing.T) {
	base := time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC) // a DST change in Europe
	for _, c := range slotConfigs {
		seen := map[string]time.Time{}
		for i := 0; i < 48; i++ {
			slot := base.Add(time.Duration(i) * 30 * time.Minute)
			want := SessionName(c, slot)
			for _, z := range zones() {
				if got := SessionName(c, slot.In(z)); got != want {
					t.Errorf("SessionName(%q) for %v in %s = %q, in UTC %q", c, slot, z, got, want)
				}
			}
			if prev, dup := seen[want]; dup {
				t.Errorf("SessionName(%q): slots %v and %v share %q", c, prev, slot, want)
			}
			seen[want] = slot
		}
	}
	// Monotonic clock readings do not change the name.
	now := time.Now().Truncate(time.Minute)
	if SessionName("c", now) != SessionName("c", now.Round(0)) {
		t.Error("the monotonic reading changes the name")
	}
}

// ShortName keeps names that fit, and cuts longer ones to exactly max with
// a hash, so different long names stay different and each is a DNS-1123
// label.
func TestShortName(t *testing.T) {
	long := strings.Repeat("a", 70)
	cases := []struct {
		name string
		max  int
	}{
		{"stash-agent-db", 63},
		{strings.Repeat("a", 63), 63},
		{strings.Repeat("a", 64), 63},
		{long, 63},
		{long + "b", 63},
		{strings.Repeat("a", 51) + "-" + strings.Repeat("b", 20), 63},
		{strings.Repeat("a", 51) + "." + strings.Repeat("b", 20), 63},
		{strings.Repeat("a", 50) + "-.-" + strings.Repeat("b", 20), 63},
		{"stash-repo-init-" + strings.Repeat("r", 100), 63},
		{strings.Repeat("q", 40), 20},
	}
	seen := map[string]string{}
	for _, c := range cases {
		got := ShortName(c.name, c.max)
		if again := ShortName(c.name, c.max); again != got {
			t.Errorf("ShortName(%q) is not deterministic: %q, %q", c.name, got, again)
		}
		if len(c.name) <= c.max {
			if got != c.name {
				t.Errorf("ShortName(%q, %d) = %q, want it unchanged", c.name, c.max, got)
			}
		} else {
			if len(got) > c.max {
				t.Errorf("ShortName(%d chars, %d) = %q (%d)", len(c.name), c.max, got, len(got))
			}
			if errs := validation.IsDNS1123Label(got); len(errs) != 0 {
				t.Errorf("ShortName(%q, %d) = %q: %v", c.name, c.max, got, errs)
			}
			if !strings.HasPrefix(c.name, strings.TrimRight(got[:len(got)-11], "-.")) {
				t.Errorf("ShortName(%q) = %q does not keep a prefix", c.name, got)
			}
		}
		if other, dup := seen[got]; dup && other != c.name {
			t.Errorf("ShortName(%q) = ShortName(%q) = %q", c.name, other, got)
		}
		seen[got] = c.name
	}
}

// The slot of a firing, named: firings of one slot (a little late) share
// the session name, the next slot does not, and the zone the agent runs in
// (or the schedule's CRON_TZ) does not matter.
func TestScheduleSlotNames(t *testing.T) {
	cases := []struct {
		expr string
		slot time.Time // a slot of the schedule
		next time.Time // the slot after it
		lags []time.Duration
	}{
		{"@every 5s", time.Unix(1_700_000_000, 0), time.Unix(1_700_000_005, 0), []time.Duration{0, 40 * time.Millisecond, 2 * time.Second, -time.Second}},
		{"@every 1h", time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 4, 0, 0, 0, time.UTC), []time.Duration{0, 250 * time.Millisecond, 20 * time.Minute}},
		{"0 2 * * *", time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC), time.Date(2026, 1, 2, 2, 0, 0, 0, time.UTC), []time.Duration{0, 700 * time.Millisecond, 59 * time.Second}},
		{"*/5 * * * *", time.Date(2026, 1, 1, 2, 5, 0, 0, time.UTC), time.Date(2026, 1, 1, 2, 10, 0, 0, time.UTC), []time.Duration{0, 3 * time.Second}},
		{"CRON_TZ=Asia/Kathmandu 0 2 * * *", time.Date(2026, 1, 1, 2, 0, 0, 0, time.FixedZone("NPT", 5*3600+45*60)), time.Date(2026, 1, 2, 2, 0, 0, 0, time.FixedZone("NPT", 5*3600+45*60)), []time.Duration{0, 10 * time.Second}},
	}
	for _, c := range cases {
		s, err := schedule.Parse(c.expr)
		if err != nil {
			if strings.HasPrefix(c.expr, "CRON_TZ=") {
				t.Logf("%s: %v (no zone database here)", c.expr, err)
				continue
			}
			t.Fatalf("Parse(%q): %v", c.expr, err)
		}
		want := SessionName("nightly", c.slot)
		for _, lag := range c.lags {
			for _, z := range zones() {
				fired := c.slot.Add(lag).In(z)
				if got := SessionName("nightly", s.Slot(fired)); got != want {
					t.Errorf("%s fired %v late in %s: session %q, want %q", c.expr, lag, z, got, want)
				}
			}
		}
		if n := s.Next(c.slot); !n.Equal(c.next) {
			t.Errorf("%s: Next(%v) = %v, want %v", c.expr, c.slot, n, c.next)
		}
		if got := SessionName("nightly", s.Slot(c.next)); got == want {
			t.Errorf("%s: the next slot has the same session %q", c.expr, got)
		}
		if got := SessionName("nightly", s.Slot(s.Next(c.slot))); got == want {
			t.Errorf("%s: Next's slot has the same session %q", c.expr, got)
		}
	}
}
