package binlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"
)

// event builds one v4 event: header plus body (the length covers both).
func event(ts uint32, typ byte, server uint32, body []byte) []byte {
	h := make([]byte, headerLen)
	binary.LittleEndian.PutUint32(h[0:4], ts)
	h[4] = typ
	binary.LittleEndian.PutUint32(h[5:9], server)
	binary.LittleEndian.PutUint32(h[9:13], uint32(headerLen+len(body)))
	return append(h, body...)
}

func gtidEvent(ts uint32, server uint32, domain uint32, seq uint64) []byte {
	b := make([]byte, 13)
	binary.LittleEndian.PutUint64(b[0:8], seq)
	binary.LittleEndian.PutUint32(b[8:12], domain)
	return event(ts, typeMariaGTID, server, b)
}

func TestScannerReadsWholeEventsIncrementally(t *testing.T) {
	var f bytes.Buffer
	f.Write(Magic)
	f.Write(event(1000, typeFormatDescription, 1, make([]byte, 80)))
	f.Write(gtidEvent(1001, 1, 0, 7))
	f.Write(event(1001, 2, 1, []byte("BEGIN")))
	f.Write(event(1001, 16, 1, make([]byte, 8))) // xid
	whole := f.Len()
	second := gtidEvent(1003, 1, 0, 8)
	f.Write(second[:10]) // a partial event: the server is still writing

	var seen []string
	s := NewScanner(func(g GTID, at time.Time, off int64) {
		seen = append(seen, fmt.Sprintf("%s@%s:%d", g, at.Format("05"), off))
	})
	if err := s.Continue(bytes.NewReader(f.Bytes())); err != nil {
		t.Fatal(err)
	}
	if s.Info.Size != int64(whole) || s.Info.Transactions != 1 || s.Info.LastGTID.String() != "0-1-7" || s.Info.Closed {
		t.Fatalf("after the first part: %+v", s.Info)
	}
	if !s.Info.First.Equal(time.Unix(1000, 0)) || !s.Info.Last.Equal(time.Unix(1001, 0)) {
		t.Errorf("times %v..%v, want 1000..1001", s.Info.First.Unix(), s.Info.Last.Unix())
	}
	// The rest arrives; the scan goes on from the last whole event.
	f.Write(second[10:])
	f.Write(event(1004, typeRotate, 1, []byte("\x04\x00\x00\x00\x00\x00\x00\x00mysql-bin.000002")))
	if err := s.Continue(bytes.NewReader(f.Bytes()[s.Info.Size:])); err != nil {
		t.Fatal(err)
	}
	if s.Info.Size != int64(f.Len()) || s.Info.Transactions != 2 || s.Info.FirstGTID.String() != "0-1-7" || s.Info.LastGTID.String() != "0-1-8" || !s.Info.Closed {
		t.Fatalf("after the rest: %+v", s.Info)
	}
	if got := seen; len(got) != 2 || got[0] != fmt.Sprintf("0-1-7@41:%d", 4+headerLen+80) || got[1] != fmt.Sprintf("0-1-8@43:%d", whole) {
		t.Errorf("GTIDs seen %v", got)
	}
}

func TestScannerRejectsOtherFiles(t *testing.T) {
	if err := NewScanner(nil).Continue(bytes.NewReader([]byte("-- MySQL dump"))); !errors.Is(err, ErrNotBinlog) {
		t.Errorf("a dump file: %v, want ErrNotBinlog", err)
	}
	if err := NewScanner(nil).Continue(bytes.NewReader(nil)); err != nil {
		t.Errorf("an empty file is a file not written yet: %v", err)
	}
	bad := append(append([]byte{}, Magic...), event(1, 2, 1, nil)...)
	binary.LittleEndian.PutUint32(bad[4+9:4+13], 5)
	if err := NewScanner(nil).Continue(bytes.NewReader(bad)); err == nil {
		t.Error("an event shorter than its header was accepted")
	}
}
