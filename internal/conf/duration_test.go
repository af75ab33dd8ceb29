package conf_test

import (
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/goim/goim/internal/conf"
)

func TestDurationRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		text string
	}{
		{name: "zero", d: 0, text: "0s"},
		{name: "milliseconds", d: 250 * time.Millisecond, text: "250ms"},
		{name: "seconds", d: 5 * time.Second, text: "5s"},
		{name: "mixed", d: 90 * time.Minute, text: "1h30m0s"},
		{name: "negative decodes, Validate rejects", d: -2 * time.Second, text: "-2s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := conf.Duration(tt.d)
			text, err := d.MarshalText()
			if err != nil {
				t.Fatalf("MarshalText: %v", err)
			}
			if string(text) != tt.text || d.String() != tt.text {
				t.Errorf("MarshalText = %q, String = %q, want %q", text, d.String(), tt.text)
			}
			var back conf.Duration
			if err := back.UnmarshalText(text); err != nil {
				t.Fatalf("UnmarshalText(%q): %v", text, err)
			}
			if back != d || back.D() != tt.d {
				t.Errorf("round trip = %v (D %v), want %v", back, back.D(), tt.d)
			}
		})
	}
}

func TestDurationTOMLRoundTrip(t *testing.T) {
	type cfg struct {
		Timeout conf.Duration `toml:"timeout"`
	}
	in := cfg{Timeout: conf.Duration(1500 * time.Millisecond)}
	data, err := toml.Marshal(in)
	if err != nil {
		t.Fatalf("toml.Marshal: %v", err)
	}
	if want := `timeout = "1.5s"`; strings.TrimSpace(string(data)) != want {
		t.Errorf("toml.Marshal = %q, want %q", data, want)
	}
	var out cfg
	if err := conf.Decode("round.toml", string(data), &out); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if out != in {
		t.Errorf("round trip = %v, want %v", out, in)
	}
}

func TestDurationUnmarshalTextError(t *testing.T) {
	tests := []struct {
		name string
		text string
	}{
		{name: "empty", text: ""},
		{name: "no unit", text: "5"},
		{name: "words", text: "five seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := conf.Duration(time.Second)
			err := d.UnmarshalText([]byte(tt.text))
			if err == nil || !strings.Contains(err.Error(), `"5s"`) {
				t.Errorf("UnmarshalText(%q) error = %v, want one suggesting \"5s\"", tt.text, err)
			}
			if d != conf.Duration(time.Second) {
				t.Errorf("UnmarshalText(%q) changed the value to %v", tt.text, d)
			}
		})
	}
}
