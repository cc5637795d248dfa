// Package binlog reads what the agent needs from MariaDB and MySQL binary
// log files (format v4): where the last whole event ends, the time of the
// first and last event, and the GTIDs of the transactions. It reads event
// headers only; replaying a binlog is mariadb-binlog's job.
package binlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Magic starts every binlog file.
var Magic = []byte{0xfe, 'b', 'i', 'n'}

const headerLen = 19

// Event types the scanner looks at.
const (
	typeStop              = 3
	typeRotate            = 4
	typeFormatDescription = 15
	typeMariaGTID         = 162
)

// GTID is a MariaDB global transaction ID: domain-server-sequence.
type GTID struct {
	Domain, Server uint32
	Seq            uint64
}

func (g GTID) String() string {
	if g == (GTID{}) {
		return ""
	}
	return fmt.Sprintf("%d-%d-%d", g.Domain, g.Server, g.Seq)
}

// Info is what a scan found in a file, up to its last whole event.
type Info struct {
	// Size is the offset just after the last whole event: a copy cut there
	// replays cleanly even while the server is still writing the file.
	Size         int64
	Events       int
	Transactions int // GTID events: one per transaction (event group)
	// First and Last are the timestamps of the first and last event that
	// has one (the server's fake rotate has none).
	First, Last time.Time
	// FirstGTID and LastGTID are the first and last transaction's.
	FirstGTID, LastGTID GTID
	// Closed is set once the file ends with a rotate or stop event: the
	// server writes nothing more to it.
	Closed bool
}

// ErrNotBinlog is a file that does not start with the binlog magic.
var ErrNotBinlog = errors.New("not a binlog file: no magic number")

// Scanner scans a growing file incrementally: each Continue reads on from
// where the previous one stopped.
type Scanner struct {
	Info Info
	// gtids, if set, receives every transaction's GTID in file order.
	gtids func(g GTID, at time.Time, offset int64)
}

// NewScanner returns a scanner; each is called with every transaction's
// GTID, time and offset in the file (of its GTID event), in file order
// (nil: not needed).
func NewScanner(each func(g GTID, at time.Time, offset int64)) *Scanner { return &Scanner{gtids: each} }

// Continue reads whole events from r, which is positioned at s.Info.Size
// (0 for a new file). A partial event at the end is left for the next call.
func (s *Scanner) Continue(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	if s.Info.Size == 0 {
		magic := make([]byte, len(Magic))
		if _, err := io.ReadFull(br, magic); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil // nothing whole yet
			}
			return err
		}
		if string(magic) != string(Magic) {
			return ErrNotBinlog
		}
		s.Info.Size = int64(len(Magic))
	}
	hdr := make([]byte, headerLen)
	body := make([]byte, 0, 64)
	for {
		if _, err := io.ReadFull(br, hdr); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return err
		}
		ts := binary.LittleEndian.Uint32(hdr[0:4])
		typ := hdr[4]
		server := binary.LittleEndian.Uint32(hdr[5:9])
		length := binary.LittleEndian.Uint32(hdr[9:13])
		if length < headerLen {
			return fmt.Errorf("binlog event at offset %d claims %d bytes, less than its header", s.Info.Size, length)
		}
		rest := int(length) - headerLen
		// The GTID event's first 12 bytes are its sequence and domain.
		want := 0
		if typ == typeMariaGTID {
			want = min(rest, 12)
		}
		body = body[:want]
		if _, err := io.ReadFull(br, body); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return err
		}
		if n, err := br.Discard(rest - want); err != nil || n != rest-want {
			if err == nil || errors.Is(err, io.EOF) {
				return nil // the event is not whole yet
			}
			return err
		}
		s.Info.Size += int64(length)
		s.Info.Events++
		var at time.Time
		if ts != 0 {
			at = time.Unix(int64(ts), 0).UTC()
			if s.Info.First.IsZero() {
				s.Info.First = at
			}
			s.Info.Last = at
		}
		switch typ {
		case typeMariaGTID:
			if len(body) < 12 {
				return fmt.Errorf("binlog GTID event at offset %d is %d bytes", s.Info.Size-int64(length), length)
			}
			g := GTID{Seq: binary.LittleEndian.Uint64(body[0:8]), Domain: binary.LittleEndian.Uint32(body[8:12]), Server: server}
			if s.Info.Transactions == 0 {
				s.Info.FirstGTID = g
			}
			s.Info.LastGTID = g
			s.Info.Transactions++
			if s.gtids != nil {
				s.gtids(g, at, s.Info.Size-int64(length))
			}
			s.Info.Closed = false
		case typeRotate, typeStop:
			// A rotate at the start (the server's fake one, timestamp 0)
			// names the file; one after events closes it.
			if ts != 0 || s.Info.Events > 2 {
				s.Info.Closed = true
			}
		case typeFormatDescription:
		default:
			s.Info.Closed = false
		}
	}
}
