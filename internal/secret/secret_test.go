package secret

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func write(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadFile(t *testing.T) {
	b, err := ReadFile(write(t, "s3cret\r\n\n"))
	if err != nil || string(b) != "s3cret" {
		t.Fatalf("ReadFile = %q, %v; want s3cret", b, err)
	}
	if _, err := ReadFile(write(t, "\n\n")); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty file: %v, want ErrEmpty", err)
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing file: %v, want an error naming it", err)
	}
	if _, err := ReadFile(write(t, strings.Repeat("x", MaxFileSize+1))); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Fatalf("oversized file: %v, want a size error", err)
	}
	if _, err := ReadFile(write(t, strings.Repeat("x", MaxFileSize))); err != nil {
		t.Fatalf("file of exactly MaxFileSize: %v", err)
	}
}

func TestReadLines(t *testing.T) {
	got, err := ReadLines(write(t, "# tokens\n  one  \n\ntwo\n#three\n"))
	if err != nil || !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("ReadLines = %q, %v", got, err)
	}
	if _, err := ReadLines(write(t, "# only a comment\n")); !errors.Is(err, ErrEmpty) {
		t.Fatalf("comment-only file: %v, want ErrEmpty", err)
	}
}

func TestResolve(t *testing.T) {
	file := write(t, "from-file\n")
	const env = "GOIM_SECRET_TEST_RESOLVE"
	tests := []struct {
		name       string
		envValue   string
		file       string
		inline     string
		want       string
		wantSource Source
	}{
		{name: "environment wins", envValue: "from-env", file: file, inline: "inline", want: "from-env", wantSource: SourceEnv},
		{name: "blank environment ignored", envValue: "  ", file: file, inline: "inline", want: "from-file", wantSource: SourceFile},
		{name: "file over inline", file: file, inline: "inline", want: "from-file", wantSource: SourceFile},
		{name: "inline", inline: "inline", want: "inline", wantSource: SourceInline},
		{name: "nothing", want: "", wantSource: SourceNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(env, tt.envValue)
			got, src, err := Resolve(env, tt.file, tt.inline)
			if err != nil || got != tt.want || src != tt.wantSource {
				t.Fatalf("Resolve = %q, %s, %v; want %q, %s", got, src, err, tt.want, tt.wantSource)
			}
		})
	}
	if _, _, err := Resolve("", filepath.Join(t.TempDir(), "none"), "inline"); err == nil {
		t.Fatal("a configured file that cannot be read must fail, not fall back")
	}
}

func TestResolveList(t *testing.T) {
	const env = "GOIM_SECRET_TEST_LIST"
	t.Setenv(env, "a, b\nc,,")
	got, err := ResolveList(env, write(t, "c\nd\n"), []string{"e", "a"})
	if err != nil || !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Fatalf("ResolveList = %q, %v", got, err)
	}
	t.Setenv(env, "")
	if got, err := ResolveList(env, "", nil); err != nil || len(got) != 0 {
		t.Fatalf("nothing configured: %q, %v", got, err)
	}
}

// FuzzLines checks the token-list parsers: every entry is trimmed, non-empty
// and not a comment, and List never yields an entry holding a separator.
func FuzzLines(f *testing.F) {
	for _, s := range []string{"a,b\nc", "# c\n  x  \n", "", ",,\n\r\n", "tok\r\nen"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, l := range Lines(s) {
			if l == "" || l != strings.TrimSpace(l) || strings.HasPrefix(l, "#") || strings.Contains(l, "\n") {
				t.Fatalf("Lines(%q) yielded %q", s, l)
			}
		}
		for _, l := range List(s) {
			if l == "" || strings.ContainsAny(l, ",\n") {
				t.Fatalf("List(%q) yielded %q", s, l)
			}
		}
	})
}
