package logging

import (
	"bytes"
	"encoding/json"
	"flag"
	"log/slog"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(t *testing.T, out string)
		wantErr string
	}{
		{
			name: "defaults: text at info",
			check: func(t *testing.T, out string) {
				if !strings.Contains(out, "level=INFO msg=hello k=v") || strings.Contains(out, "hidden") {
					t.Errorf("text output %q", out)
				}
			},
		},
		{
			name: "json at debug",
			args: []string{"-log-format", "json", "-log-level", "debug"},
			check: func(t *testing.T, out string) {
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) != 2 {
					t.Fatalf("got %d lines, want 2: %q", len(lines), out)
				}
				var m map[string]any
				if err := json.Unmarshal([]byte(lines[1]), &m); err != nil {
					t.Fatalf("line %q is not JSON: %v", lines[1], err)
				}
				if m["msg"] != "hello" || m["level"] != "INFO" || m["k"] != "v" || m["time"] == nil {
					t.Errorf("JSON line %v", m)
				}
			},
		},
		{name: "bad format", args: []string{"-log-format", "xml"}, wantErr: `-log-format: "xml" is not "text" or "json"`},
		{name: "bad level", args: []string{"-log-level", "loud"}, wantErr: "-log-level: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("svc", flag.ContinueOnError)
			f := AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			log, err := f.New(&buf)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("New error %v, want one starting %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("hidden")
			log.Info("hello", "k", "v")
			tt.check(t, buf.String())
		})
	}
}

func TestOrDiscard(t *testing.T) {
	if OrDiscard(nil) == nil {
		t.Fatal("OrDiscard(nil) = nil")
	}
	l := slog.New(slog.DiscardHandler)
	if OrDiscard(l) != l {
		t.Fatal("OrDiscard(l) is not l")
	}
}
