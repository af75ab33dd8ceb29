package buildinfo

import (
	"bytes"
	"flag"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	tests := []struct {
		name       string
		bi         debug.BuildInfo
		want       Info
		wantString string
		wantCommit string
	}{
		{
			name: "go build in a modified checkout",
			bi: debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20260101120000-0123456789ab+dirty"},
				Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.modified", Value: "true"}}},
			want:       Info{Version: "v0.0.0-20260101120000-0123456789ab+dirty", Commit: "0123456789abcdef", Modified: true, Go: "go1.26.8"},
			wantString: "v0.0.0-20260101120000-0123456789ab+dirty commit 0123456789abcdef (modified) go1.26.8",
			wantCommit: "0123456789abcdef-modified",
		},
		{
			name: "go install of a tag",
			bi:   debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"}},
			want: Info{Version: "v1.2.0", Commit: Unknown, Go: "go1.26.8"}, wantString: "v1.2.0 commit unknown go1.26.8",
			wantCommit: Unknown,
		},
		{
			name: "nothing stamped",
			bi:   debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.modified", Value: "false"}}},
			want: Info{Version: Unknown, Commit: Unknown, Go: runtime.Version()}, wantString: "unknown commit unknown " + runtime.Version(),
			wantCommit: Unknown,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fromBuildInfo(&tt.bi)
			if got != tt.want {
				t.Errorf("fromBuildInfo = %+v, want %+v", got, tt.want)
			}
			if s := got.String(); s != tt.wantString {
				t.Errorf("String = %q, want %q", s, tt.wantString)
			}
			if c := got.CommitLabel(); c != tt.wantCommit {
				t.Errorf("CommitLabel = %q, want %q", c, tt.wantCommit)
			}
		})
	}
}

func TestRead(t *testing.T) {
	in := Read()
	if in.Version == "" || in.Commit == "" || in.Go != runtime.Version() {
		t.Errorf("Read() = %+v: empty fields, or Go is not %s", in, runtime.Version())
	}
	if Version() != in.String() {
		t.Errorf("Version() = %q, want %q", Version(), in.String())
	}
}

func TestFlag(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want bool
	}{
		{name: "absent", args: []string{"-x"}, want: false},
		{name: "given", args: []string{"-version", "-x"}, want: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
			v := AddFlag(fs)
			fs.Bool("x", false, "")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if got := v.Print(&out, "cmd"); got != tt.want {
				t.Fatalf("Print = %v, want %v", got, tt.want)
			}
			if tt.want && out.String() != "cmd "+Version()+"\n" {
				t.Errorf("printed %q, want %q", out.String(), "cmd "+Version()+"\n")
			}
			if !tt.want && out.Len() > 0 {
				t.Errorf("printed %q without -version", out.String())
			}
		})
	}
	if !strings.Contains(Version(), " commit ") {
		t.Errorf("Version() = %q lacks the commit", Version())
	}
}
