package conf_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/goim/goim/internal/conf"
)

type testConfig struct {
	Name     string         `toml:"name"`
	TCP      testTCP        `toml:"tcp"`
	Upstream []testUpstream `toml:"upstream"`
}

type testTCP struct {
	Bind      []string      `toml:"bind"`
	SendBuf   int           `toml:"sndbuf"`
	KeepAlive bool          `toml:"keepalive"`
	Handshake conf.Duration `toml:"handshake"`
}

type testUpstream struct {
	Name    string        `toml:"name"`
	Timeout conf.Duration `toml:"timeout"`
}

func testDefault() testConfig {
	return testConfig{
		Name: "comet",
		TCP: testTCP{
			Bind:      []string{":3101"},
			SendBuf:   4096,
			KeepAlive: false,
			Handshake: conf.Duration(5 * time.Second),
		},
	}
}

const validTOML = `
# name is absent: keeps its default
[tcp]
bind = [":3101", ":3102"]
keepalive = true
handshake = "250ms"
# sndbuf is absent: keeps its default

[[upstream]]
name = "logic-a"
timeout = "1s"

[[upstream]]
name = "logic-b"
timeout = "1m30s"
`

func validWant() testConfig {
	want := testDefault()
	want.TCP.Bind = []string{":3101", ":3102"}
	want.TCP.KeepAlive = true
	want.TCP.Handshake = conf.Duration(250 * time.Millisecond)
	want.Upstream = []testUpstream{
		{Name: "logic-a", Timeout: conf.Duration(time.Second)},
		{Name: "logic-b", Timeout: conf.Duration(90 * time.Second)},
	}
	return want
}

func TestDecodeValid(t *testing.T) {
	tests := []struct {
		name string
		data string
		want testConfig
	}{
		{name: "nested tables, arrays, array of tables, durations", data: validTOML, want: validWant()},
		{name: "empty document keeps all defaults", data: "", want: testDefault()},
		{name: "comments only keep all defaults", data: "# nothing\n\n", want: testDefault()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := testDefault()
			if err := conf.Decode("test.toml", tt.data, &got); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name      string
		data      string
		wantIs    error    // if set, errors.Is(err, wantIs) must hold
		wantMsg   string   // if set, the whole message
		wantParts []string // substrings the message must contain
	}{
		{
			name:    "unknown top-level key",
			data:    "nmae = \"x\"\n",
			wantIs:  conf.ErrUnknownKey,
			wantMsg: "test.toml: unknown keys: nmae",
		},
		{
			name:    "unknown nested key",
			data:    "[tcp]\nbindd = [\":1\"]\n",
			wantIs:  conf.ErrUnknownKey,
			wantMsg: "test.toml: unknown keys: tcp.bindd",
		},
		{
			name:    "unknown key in array of tables is named once",
			data:    "[[upstream]]\nname = \"a\"\ntimeuot = \"1s\"\n[[upstream]]\nname = \"b\"\ntimeuot = \"2s\"\n",
			wantIs:  conf.ErrUnknownKey,
			wantMsg: "test.toml: unknown keys: upstream.timeuot",
		},
		{
			name:    "unknown inline table key",
			data:    "tcp = { bind = [\":1\"], sndbuff = 1 }\n",
			wantIs:  conf.ErrUnknownKey,
			wantMsg: "test.toml: unknown keys: tcp.sndbuff",
		},
		{
			name: "several unknown keys all named in file order, unknown table once",
			data: "nmae = \"x\"\n[tcp]\nbindd = 1\nsndbuf = 1\n[websocket]\ntls_open = true\nbind = \":1\"\n" +
				"[[upstream]]\ntimeuot = \"1s\"\n",
			wantIs:  conf.ErrUnknownKey,
			wantMsg: "test.toml: unknown keys: nmae, tcp.bindd, websocket, upstream.timeuot",
		},
		{
			name:      "integer duration",
			data:      "[tcp]\nhandshake = 5\n",
			wantParts: []string{"test.toml: ", `"tcp.handshake"`, "line 2", `"5s"`, "integer 5"},
		},
		{
			name:      "integer zero duration",
			data:      "[tcp]\nhandshake = 0\n",
			wantParts: []string{`"tcp.handshake"`, `"5s"`, "integer 0"},
		},
		{
			name:      "integer duration in array of tables",
			data:      "[[upstream]]\nname = \"a\"\ntimeout = 1000\n",
			wantParts: []string{`"upstream.timeout"`, "line 3", "integer 1000"},
		},
		{
			name:      "float duration",
			data:      "[tcp]\nhandshake = 1.5\n",
			wantParts: []string{`"tcp.handshake"`, `"5s"`, "float"},
		},
		{
			name:      "boolean duration",
			data:      "[tcp]\nhandshake = true\n",
			wantParts: []string{`"tcp.handshake"`, `"5s"`, "boolean"},
		},
		{
			name:      "bad duration string",
			data:      "[tcp]\nhandshake = \"5 seconds\"\n",
			wantParts: []string{`"tcp.handshake"`, `unknown unit`, `"5 seconds"`, `"5s"`},
		},
		{
			name:      "duration string without unit",
			data:      "[tcp]\nhandshake = \"5\"\n",
			wantParts: []string{`"tcp.handshake"`, "missing unit"},
		},
		{
			name:      "wrong type for int field",
			data:      "[tcp]\nsndbuf = \"big\"\n",
			wantParts: []string{"test.toml: ", `"tcp.sndbuf"`, "line 2"},
		},
		{
			name:      "syntax error",
			data:      "name = \"x\"\n\n[tcp]\nbind = = 1\n",
			wantParts: []string{"test.toml: ", "line 4"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := testDefault()
			err := conf.Decode("test.toml", tt.data, &got)
			if err == nil {
				t.Fatalf("Decode succeeded, want error; decoded %+v", got)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
			if tt.wantMsg != "" && err.Error() != tt.wantMsg {
				t.Errorf("message:\n got %q\nwant %q", err, tt.wantMsg)
			}
			for _, part := range tt.wantParts {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("message %q does not contain %q", err, part)
				}
			}
		})
	}
}

func TestDecodeSyntaxErrorPosition(t *testing.T) {
	got := testDefault()
	err := conf.Decode("test.toml", "name = \"x\"\nbind = [1,\n\n]]\n", &got)
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) does not wrap toml.ParseError", err, err)
	}
	if pe.Position.Line != 4 || pe.Position.Col < 1 {
		t.Errorf("position = line %d col %d, want line 4 and a column", pe.Position.Line, pe.Position.Col)
	}
}

func TestDecodeBadTarget(t *testing.T) {
	var n int
	tests := []struct {
		name string
		v    any
	}{
		{name: "non-pointer struct", v: testConfig{}},
		{name: "nil interface", v: nil},
		{name: "nil struct pointer", v: (*testConfig)(nil)},
		{name: "pointer to int", v: &n},
		{name: "pointer to map", v: &map[string]any{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := conf.Decode("test.toml", "name = \"x\"\n", tt.v)
			if err == nil {
				t.Fatal("Decode succeeded, want error")
			}
			if !strings.HasPrefix(err.Error(), "test.toml: ") || !strings.Contains(err.Error(), "pointer to a struct") {
				t.Errorf("message %q does not name the file and the requirement", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name      string
		path      string
		want      testConfig
		wantIs    error
		wantParts []string
	}{
		{
			name: "valid file",
			path: write("valid.toml", validTOML),
			want: validWant(),
		},
		{
			name:      "unknown key names the file",
			path:      write("unknown.toml", "[tcp]\nbindd = 1\n"),
			wantIs:    conf.ErrUnknownKey,
			wantParts: []string{"unknown.toml: unknown keys: tcp.bindd"},
		},
		{
			name:      "syntax error names the file and line",
			path:      write("syntax.toml", "name = \"x\"\nsndbuf = = 1\n"),
			wantParts: []string{"syntax.toml: ", "line 2"},
		},
		{
			name:      "missing file",
			path:      filepath.Join(dir, "missing.toml"),
			wantIs:    fs.ErrNotExist,
			wantParts: []string{"missing.toml"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := testDefault()
			err := conf.Load(tt.path, &got)
			if tt.wantIs == nil && tt.wantParts == nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("Load:\n got %+v\nwant %+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatal("Load succeeded, want error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
			for _, part := range tt.wantParts {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("message %q does not contain %q", err, part)
				}
			}
		})
	}
}
