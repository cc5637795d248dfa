package contract

import (
	"strings"
	"testing"
	"time"
)

func TestParsePITR(t *testing.T) {
	for _, c := range []struct {
		ann  map[string]string
		want PITR
		err  string
	}{
		{nil, PITR{Interval: DefaultPITRInterval}, ""},
		{map[string]string{AnnotationPITR: "true"}, PITR{On: true, Interval: DefaultPITRInterval}, ""},
		{map[string]string{AnnotationPITR: "true", AnnotationPITRInterval: "5s"}, PITR{On: true, Interval: 5 * time.Second}, ""},
		{map[string]string{AnnotationPITR: "false"}, PITR{Interval: DefaultPITRInterval}, ""},
		{map[string]string{AnnotationPITR: "yes"}, PITR{}, `want "true" or "false"`},
		{map[string]string{AnnotationPITR: ""}, PITR{}, "is empty"},
		{map[string]string{AnnotationPITR: "true", AnnotationPITRInterval: "500ms"}, PITR{}, "from 1s to 1h"},
		{map[string]string{AnnotationPITR: "true", AnnotationPITRInterval: "thirty"}, PITR{}, "from 1s to 1h"},
		{map[string]string{AnnotationPITRInterval: "10s"}, PITR{}, "is not \"true\""},
	} {
		got, err := ParsePITR(c.ann)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v, want one saying %q", c.ann, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%v: %+v, %v; want %+v", c.ann, got, err, c.want)
		}
	}
}

func TestBinlogVersionTagsRoundTrip(t *testing.T) {
	v := BinlogVersion{File: "mysql-bin.000012", Size: 4096, First: time.Unix(100, 0).UTC(), Last: time.Unix(200, 0).UTC(), Committed: time.Unix(205, 0).UTC(),
		FirstGTID: "0-1-5", LastGTID: "0-1-9", Transactions: 5, Closed: true}
	tags := v.Tags("shop")
	for _, tag := range tags {
		if strings.Contains(tag, ",") {
			t.Fatalf("tag %q holds a comma, which restic splits on", tag)
		}
	}
	got, ok := ParseBinlogVersion("abc", tags)
	v.Snapshot = "abc"
	if !ok || got != v {
		t.Errorf("round trip: %+v, %v; want %+v", got, ok, v)
	}
	if _, ok := ParseBinlogVersion("x", []string{"appbinding=shop", "session=s1"}); ok {
		t.Error("a dump snapshot's tags were taken for a binlog version")
	}
}

func TestLatestVersionsKeepsTheLargestOfEachFile(t *testing.T) {
	at := func(s int64) time.Time { return time.Unix(s, 0) }
	vs := []BinlogVersion{
		{Snapshot: "a1", File: "b.000010", Size: 100, Committed: at(1)},
		{Snapshot: "a2", File: "b.000010", Size: 300, Committed: at(3)},
		{Snapshot: "c1", File: "b.000009", Size: 500, Committed: at(0)},
		{Snapshot: "d1", File: "b.000011", Size: 50, Committed: at(4)},
		{Snapshot: "a3", File: "b.000010", Size: 200, Committed: at(2)},
	}
	latest, superseded := LatestVersions(vs)
	var names []string
	for _, v := range latest {
		names = append(names, v.Snapshot)
	}
	if strings.Join(names, ",") != "c1,a2,d1" {
		t.Errorf("latest %v, want c1,a2,d1 (file order: 000009 < 000010 < 000011)", names)
	}
	if len(superseded) != 2 {
		t.Errorf("superseded %+v, want a1 and a3", superseded)
	}
	if !BinlogLess("b.999999", "b.1000000") || BinlogLess("b.000002", "b.000002") {
		t.Error("BinlogLess does not order by number")
	}
}

func TestLatestVersionsKeepsTwoServersFilesApartInTheOrderWritten(t *testing.T) {
	at := func(s int64) time.Time { return time.Unix(s, 0) }
	vs := []BinlogVersion{
		{Snapshot: "old7", File: "b.000007", Size: 900, First: at(700)},
		{Snapshot: "old1", File: "b.000001", Size: 900, First: at(100)},
		{Snapshot: "new1", File: "b.000001", Size: 300, First: at(2000)}, // a reset: same name, another file
		{Snapshot: "new2", File: "b.000002", Size: 50, First: at(2100)},
	}
	latest, superseded := LatestVersions(vs)
	var names []string
	for _, v := range latest {
		names = append(names, v.Snapshot)
	}
	if strings.Join(names, ",") != "old1,old7,new1,new2" || len(superseded) != 0 {
		t.Errorf("latest %v (superseded %d), want old1,old7,new1,new2: the smaller new file must not supersede the old one of its name", names, len(superseded))
	}
}
