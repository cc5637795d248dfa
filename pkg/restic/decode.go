package restic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// maxLine is the longest JSON line decoded; longer ones are skipped.
const maxLine = 1 << 20

// Status is a backup progress event ("message_type":"status").
type Status struct {
	PercentDone      float64  `json:"percent_done"`
	TotalBytes       uint64   `json:"total_bytes"`
	BytesDone        uint64   `json:"bytes_done"`
	TotalFiles       uint64   `json:"total_files"`
	FilesDone        uint64   `json:"files_done"`
	SecondsElapsed   float64  `json:"seconds_elapsed"`
	SecondsRemaining float64  `json:"seconds_remaining"`
	ErrorCount       uint64   `json:"error_count"`
	CurrentFiles     []string `json:"current_files"`
}

// Summary is the backup's final "message_type":"summary".
type Summary struct {
	SnapshotID          string    `json:"snapshot_id"`
	FilesNew            uint64    `json:"files_new"`
	FilesChanged        uint64    `json:"files_changed"`
	FilesUnmodified     uint64    `json:"files_unmodified"`
	DirsNew             uint64    `json:"dirs_new"`
	DirsChanged         uint64    `json:"dirs_changed"`
	DirsUnmodified      uint64    `json:"dirs_unmodified"`
	DataBlobs           uint64    `json:"data_blobs"`
	TreeBlobs           uint64    `json:"tree_blobs"`
	DataAdded           uint64    `json:"data_added"`
	DataAddedPacked     uint64    `json:"data_added_packed"`
	TotalFilesProcessed uint64    `json:"total_files_processed"`
	TotalBytesProcessed uint64    `json:"total_bytes_processed"`
	TotalDuration       float64   `json:"total_duration"` // seconds
	BackupStart         time.Time `json:"backup_start"`
	BackupEnd           time.Time `json:"backup_end"`
}

// ErrorMessage is restic's "error" (one item failed) or "exit_error" (the
// run failed) message.
type ErrorMessage struct {
	Message string // error text
	During  string // "error" only, e.g. "archival"
	Item    string // "error" only, the file concerned
	Code    int    // "exit_error" only, restic's exit code
}

// Event is one decoded line of restic's JSON output. Type is always set;
// at most one of Status, Summary and Error is, and none for message types
// this package does not use.
type Event struct {
	Type    string
	Status  *Status
	Summary *Summary
	Error   *ErrorMessage
}

// DecodeLine decodes one JSON line of backup output. Unknown message types
// are not an error: they give an Event with only Type set.
func DecodeLine(line []byte) (Event, error) {
	if len(line) > maxLine {
		return Event{}, fmt.Errorf("restic: line of %d bytes exceeds %d", len(line), maxLine)
	}
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return Event{}, errors.New("restic: not a JSON object")
	}
	var head struct {
		MessageType string `json:"message_type"`
	}
	if err := json.Unmarshal(line, &head); err != nil {
		return Event{}, fmt.Errorf("restic: decode message: %w", err)
	}
	if head.MessageType == "" {
		return Event{}, errors.New("restic: message without message_type")
	}
	ev := Event{Type: head.MessageType}
	var err error
	switch head.MessageType {
	case "status":
		ev.Status = new(Status)
		err = json.Unmarshal(line, ev.Status)
	case "summary":
		ev.Summary = new(Summary)
		err = json.Unmarshal(line, ev.Summary)
	case "error":
		var m struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
			During string `json:"during"`
			Item   string `json:"item"`
		}
		err = json.Unmarshal(line, &m)
		ev.Error = &ErrorMessage{Message: m.Error.Message, During: m.During, Item: m.Item}
	case "exit_error":
		var m struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		err = json.Unmarshal(line, &m)
		ev.Error = &ErrorMessage{Message: m.Message, Code: m.Code}
	}
	if err != nil {
		return Event{}, fmt.Errorf("restic: decode %s message: %w", head.MessageType, err)
	}
	return ev, nil
}

// lineSplitter is an io.Writer that calls emit for each complete line. A
// line longer than max is never buffered: emit gets (nil, true) for it once
// its end is seen. So memory stays bounded whatever the child writes.
type lineSplitter struct {
	max      int
	emit     func(line []byte, tooLong bool)
	buf      []byte
	skipping bool
}

func (s *lineSplitter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !s.skipping {
			if len(s.buf)+len(chunk) > s.max {
				s.skipping, s.buf = true, nil
			} else {
				s.buf = append(s.buf, chunk...)
			}
		}
		if i < 0 {
			break
		}
		s.endLine()
		p = p[i+1:]
	}
	return n, nil
}

// flush emits a last line that had no newline.
func (s *lineSplitter) flush() {
	if s.skipping || len(s.buf) > 0 {
		s.endLine()
	}
}

func (s *lineSplitter) endLine() {
	if s.skipping {
		s.emit(nil, true)
	} else {
		s.emit(s.buf, false)
	}
	s.buf, s.skipping = s.buf[:0], false
}
