package httpapi

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goim/goim/internal/secret"
)

// writeFile writes content to a new file in a temporary directory.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCredentials: the tokens of each scope are the union of the
// variable, the file and the list; bad sources are refused without
// echoing a token; no credential at all is refused unless anonymous
// access is allowed.
func TestCredentials(t *testing.T) {
	const (
		a = "token-a-0123456789abcdef"
		b = "token-b-0123456789abcdef"
		c = "token-c-0123456789abcdef"
		r = "token-r-0123456789abcdef"
		s = "token-s-0123456789abcdef"
	)
	tests := []struct {
		name      string
		env       string // GOIM_HTTP_TOKENS
		readEnv   string // GOIM_HTTP_READ_TOKENS
		file      string // tokens_file content; "" for none
		readFile  string // read_tokens_file content; "" for none
		tokens    []string
		read      []string
		anonymous bool
		wantFull  []string
		wantRead  []string
		wantErr   string // a substring of the error; "" for none
		wantIs    error
	}{
		{name: "inline", tokens: []string{a}, wantFull: []string{a}},
		{name: "union of every source, no repeats", env: b + "," + a + "\n" + b, file: "# full tokens\n\n  " + c + "  \n" + a + "\n",
			tokens: []string{a, c}, wantFull: []string{b, a, c}},
		{name: "read scope from every source", readEnv: r, readFile: s + "\n", read: []string{r}, tokens: []string{a},
			wantFull: []string{a}, wantRead: []string{r, s}},
		{name: "read only is a credential", read: []string{r}, wantRead: []string{r}},
		{name: "none", wantIs: ErrNoCredential, wantErr: "http.allow_anonymous"},
		{name: "blank variable is none", env: " , \n", wantIs: ErrNoCredential},
		{name: "none but anonymous allowed", anonymous: true},
		{name: "short token in the variable", env: a + ",short", wantErr: "GOIM_HTTP_TOKENS: token 2 must be at least 16 bytes, got 5"},
		{name: "token with a space in the read variable", readEnv: "has space 0123456789abcdef", tokens: []string{a},
			wantErr: "GOIM_HTTP_READ_TOKENS: token 1 must be visible ASCII without spaces"},
		{name: "bad line in the file", file: a + "\nshort\n", wantErr: "token 2 must be at least 16 bytes, got 5"},
		{name: "file of comments only", file: "# nothing yet\n", wantErr: "http.tokens_file: secret: empty"},
		{name: "token of both scopes", tokens: []string{a}, readEnv: a, wantErr: "http.read_tokens: a read-scope token is also a full-scope token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvTokens, tt.env)
			t.Setenv(EnvReadTokens, tt.readEnv)
			cfg := testConfig()
			cfg.Tokens, cfg.ReadTokens, cfg.AllowAnonymous = tt.tokens, tt.read, tt.anonymous
			if tt.file != "" {
				cfg.TokensFile = writeFile(t, tt.file)
			}
			if tt.readFile != "" {
				cfg.ReadTokensFile = writeFile(t, tt.readFile)
			}
			got, err := cfg.Credentials()
			switch {
			case tt.wantErr == "" && tt.wantIs == nil && err != nil:
				t.Fatalf("Credentials: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Credentials: %v, want an error containing %q", err, tt.wantErr)
			case tt.wantIs != nil && !errors.Is(err, tt.wantIs):
				t.Fatalf("Credentials: %v, want %v", err, tt.wantIs)
			}
			if err != nil {
				for _, tok := range []string{a, b, c, r, s, "short", "has space"} {
					if strings.Contains(err.Error(), tok) {
						t.Errorf("error %q echoes a token", err)
					}
				}
				if _, nerr := New(cfg, &fakeService{}, Deps{}); nerr == nil || nerr.Error() != "httpapi: "+err.Error() {
					t.Errorf("New: %v, want the Credentials error", nerr)
				}
				return
			}
			if !slices.Equal(got.Full, tt.wantFull) || !slices.Equal(got.Read, tt.wantRead) {
				t.Errorf("Credentials = full %q read %q, want %q %q", got.Full, got.Read, tt.wantFull, tt.wantRead)
			}
			if got.Anonymous() != (len(tt.wantFull)+len(tt.wantRead) == 0) {
				t.Errorf("Anonymous = %v", got.Anonymous())
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		cfg := testConfig()
		cfg.TokensFile = filepath.Join(t.TempDir(), "nope")
		if _, err := cfg.Credentials(); err == nil || !strings.Contains(err.Error(), "http.tokens_file") {
			t.Fatalf("Credentials: %v, want an error naming http.tokens_file", err)
		}
	})
}

// TestServerErrorLogLimited: net/http's own error lines, which can come
// at a client's pace, are logged at most once a second, with the count
// held back.
func TestServerErrorLogLimited(t *testing.T) {
	var logs syncBuffer
	s, err := New(testConfig(), &fakeService{}, Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		s.srv.ErrorLog.Printf("http: error %d", i)
	}
	lines := strings.Count(logs.String(), "net/http error")
	if lines < 1 || lines >= n/2 || !strings.Contains(logs.String(), `line="http: error 0"`) {
		t.Errorf("%d net/http error lines for %d, want the first and a few at most:\n%s", lines, n, logs.String())
	}
}

// FuzzTokenList runs a token variable's value and an inline list through
// the token parsing: accepted tokens are valid, distinct and from the
// input; a refusal never quotes a token.
func FuzzTokenList(f *testing.F) {
	for _, seed := range [][2]string{
		{"token-a-0123456789abcdef", ""}, {"a-0123456789abcdef,b-0123456789abcdef\nc-0123456789abcdef", "d-0123456789abcdef"},
		{" , \n", ""}, {"short", ""}, {"has space 0123456789abcdef", ""}, {"\x00\xff-0123456789abcdef", "✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓✓"},
		{"dup-0123456789abcdef,dup-0123456789abcdef", "dup-0123456789abcdef"}, {"# not a comment here-0123456789", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, env, inline string) {
		inputs := append(secret.List(env), inline)
		got, err := resolveTokens(EnvTokens, env, "http.tokens_file", "", "http.tokens", []string{inline})
		if err != nil {
			for _, in := range inputs {
				if len(in) > 100 && !strings.Contains(in, "\n") && strings.Contains(err.Error(), in) {
					t.Fatalf("error %q quotes a token", err)
				}
			}
			return
		}
		for i, tok := range got {
			if why := checkToken(tok); why != "" || slices.Contains(got[:i], tok) || !slices.Contains(inputs, tok) {
				t.Fatalf("token %q accepted: %q, repeated or not given", tok, why)
			}
		}
	})
}
