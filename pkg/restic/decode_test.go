package restic

import (
	"bytes"
	"strings"
	"testing"
)

func TestDecodeLine(t *testing.T) {
	huge := `{"message_type":"status","current_files":["` + strings.Repeat("x", 2<<20) + `"]}`
	tests := []struct {
		name    string
		line    string
		wantErr bool
		check   func(t *testing.T, ev Event)
	}{
		{name: "status", line: `{"message_type":"status","percent_done":0.5,"total_files":1,"bytes_done":2594412,"total_bytes":5000000,"seconds_elapsed":3,"current_files":["/a.sql"]}`,
			check: func(t *testing.T, ev Event) {
				if ev.Type != "status" || ev.Status == nil || ev.Summary != nil || ev.Error != nil {
					t.Fatalf("event = %+v", ev)
				}
				s := ev.Status
				if s.PercentDone != 0.5 || s.BytesDone != 2594412 || s.TotalBytes != 5000000 || s.TotalFiles != 1 || s.SecondsElapsed != 3 {
					t.Errorf("status = %+v", s)
				}
			}},
		{name: "summary", line: `{"message_type":"summary","files_new":1,"files_changed":0,"files_unmodified":0,"dirs_new":0,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":1,"tree_blobs":1,"data_added":286,"data_added_packed":338,"total_files_processed":1,"total_bytes_processed":5,"total_duration":0.85859253,"backup_start":"2026-11-23T23:19:29.597488007Z","backup_end":"2026-11-23T23:19:30.456080526Z","snapshot_id":"f74a90be2faa86e65e456e1c548466a3bd60ff995776b7b98d8520b75b5fc657"}` + "\r\n",
			check: func(t *testing.T, ev Event) {
				s := ev.Summary
				if s == nil || ev.Status != nil {
					t.Fatalf("event = %+v", ev)
				}
				if s.SnapshotID[:8] != "f74a90be" || s.FilesNew != 1 || s.DataAdded != 286 || s.DataAddedPacked != 338 ||
					s.TotalFilesProcessed != 1 || s.TotalBytesProcessed != 5 || s.TotalDuration != 0.85859253 || s.BackupEnd.IsZero() {
					t.Errorf("summary = %+v", s)
				}
			}},
		{name: "error", line: `{"message_type":"error","error":{"message":"failed to save /a.sql: Fatal: command failed: exit status 1"},"during":"archival","item":"/a.sql"}`,
			check: func(t *testing.T, ev Event) {
				e := ev.Error
				if e == nil || e.During != "archival" || e.Item != "/a.sql" || !strings.Contains(e.Message, "command failed") {
					t.Errorf("event = %+v, error = %+v", ev, e)
				}
			}},
		{name: "exit error", line: `{"message_type":"exit_error","code":12,"message":"Fatal: wrong password or no key found"}`,
			check: func(t *testing.T, ev Event) {
				if e := ev.Error; e == nil || e.Code != 12 || e.Message != "Fatal: wrong password or no key found" {
					t.Errorf("event = %+v", ev)
				}
			}},
		{name: "unknown type", line: `{"message_type":"verbose_status","action":"new","item":"/a.sql"}`,
			check: func(t *testing.T, ev Event) {
				if ev.Type != "verbose_status" || ev.Status != nil || ev.Summary != nil || ev.Error != nil {
					t.Errorf("event = %+v", ev)
				}
			}},
		{name: "unknown fields", line: `{"message_type":"status","future_field":{"a":[1,2]},"bytes_done":7}`,
			check: func(t *testing.T, ev Event) {
				if ev.Status == nil || ev.Status.BytesDone != 7 {
					t.Errorf("event = %+v", ev)
				}
			}},
		{name: "empty", line: "", wantErr: true},
		{name: "blank", line: " \t\r", wantErr: true},
		{name: "garbage", line: "Fatal: repository does not exist", wantErr: true},
		{name: "binary", line: "\x00\xff\xfe{", wantErr: true},
		{name: "truncated", line: `{"message_type":"summary","files_new":1,"snapshot_id":"f74a`, wantErr: true},
		{name: "array", line: `[{"message_type":"status"}]`, wantErr: true},
		{name: "no type", line: `{"percent_done":1}`, wantErr: true},
		{name: "type not a string", line: `{"message_type":7}`, wantErr: true},
		{name: "negative count", line: `{"message_type":"status","bytes_done":-1}`, wantErr: true},
		{name: "bad time", line: `{"message_type":"summary","backup_start":"yesterday"}`, wantErr: true},
		{name: "trailing data", line: `{"message_type":"status"} {}`, wantErr: true},
		{name: "2 MiB line", line: huge, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := DecodeLine([]byte(tt.line))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("DecodeLine() = %+v, want an error", ev)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeLine() error: %v", err)
			}
			tt.check(t, ev)
		})
	}
}

func TestLineSplitter(t *testing.T) {
	var got []string
	s := &lineSplitter{max: 10, emit: func(line []byte, tooLong bool) {
		if tooLong {
			got = append(got, "<long>")
			return
		}
		got = append(got, string(line))
	}}
	// Lines split across writes, an over-long line split across writes,
	// an empty line and a last line without newline.
	for _, w := range []string{"ab", "c\nde", "f\n0123456", "789abc", "def\n\nok\nlast"} {
		if n, err := s.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", w, n, err)
		}
	}
	s.flush()
	want := []string{"abc", "def", "<long>", "", "ok", "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q, want %q", got, want)
	}
	if cap(s.buf) > 2*s.max {
		t.Errorf("buffer grew to %d", cap(s.buf))
	}
}

// A 2 MiB garbage line in backup output is skipped and the summary that
// follows it is still found.
func TestLineSplitterHugeLine(t *testing.T) {
	var summaries int
	s := &lineSplitter{max: maxLine, emit: func(line []byte, tooLong bool) {
		if tooLong {
			return
		}
		if ev, err := DecodeLine(line); err == nil && ev.Summary != nil {
			summaries++
		}
	}}
	huge := bytes.Repeat([]byte("{\"message_type\":\"status\""), (2<<20)/24)
	for len(huge) > 0 {
		n := min(len(huge), 32<<10)
		s.Write(huge[:n])
		huge = huge[n:]
	}
	s.Write([]byte("\n" + `{"message_type":"summary","snapshot_id":"abc"}` + "\n"))
	s.flush()
	if summaries != 1 {
		t.Errorf("summaries = %d, want 1", summaries)
	}
}

func FuzzDecodeLine(f *testing.F) {
	f.Add([]byte(`{"message_type":"status","percent_done":0.25,"bytes_done":10}`))
	const secret = "fuzz-secret-value"
	f.Fuzz(func(t *testing.T, line []byte) {
		ev, err := DecodeLine(line)
		if err == nil {
			if ev.Type == "" {
				t.Errorf("no type for %q", line)
			}
			set := 0
			for _, ok := range []bool{ev.Status != nil, ev.Summary != nil, ev.Error != nil} {
				if ok {
					set++
				}
			}
			if set > 1 {
				t.Errorf("%d payloads for %q", set, line)
			}
		}

		// The same bytes as restic's stderr never let the secret through,
		// however they are escaped or split.
		sink := newStderrSink(newRedactor(&Repo{Env: map[string]string{"RESTIC_PASSWORD": secret}}, nil))
		sink.Write(line)
		sink.Write([]byte("\n"))
		sink.Write(line)
		sink.flush()
		e := sink.newError(t.Context(), "backup", 1)
		if strings.Contains(e.Error(), secret) || strings.Contains(e.Stderr, secret) {
			t.Errorf("secret leaked for %q: %s / %s", line, e.Error(), e.Stderr)
		}
	})
}
