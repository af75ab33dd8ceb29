// Package secret reads the secrets of a service's configuration: the push
// API's bearer tokens, the internal gRPC secret, the Redis password, the
// Kafka SASL password, key files. A secret never has to sit in a TOML file:
// each can come from a file of its own (mode 0600, mounted by the
// operator's secret store) or from an environment variable.
//
// Precedence for one secret: the environment variable when it is set and
// not empty, else the file when one is configured, else the inline value.
// Source says which one was used, for the start-up log (never the value).
package secret

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxFileSize bounds a secret file: a secret or a list of tokens is small,
// and a path pointing at a big file by mistake must not be read whole.
const MaxFileSize = 1 << 20

// ErrEmpty: a secret file or variable holds nothing usable.
var ErrEmpty = errors.New("secret: empty")

// ReadFile returns the contents of a secret file with trailing newlines
// (CR and LF) removed. An empty result, a missing file or one larger than
// MaxFileSize is an error that names the path.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxFileSize+1)); err != nil {
		return nil, fmt.Errorf("secret: read %s: %w", path, err)
	}
	if buf.Len() > MaxFileSize {
		return nil, fmt.Errorf("secret: %s is larger than %d bytes", path, MaxFileSize)
	}
	b := bytes.TrimRight(buf.Bytes(), "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrEmpty, path)
	}
	return b, nil
}

// ReadLines returns the non-empty lines of a secret file, each trimmed of
// surrounding spaces; lines starting with "#" are comments. A file with no
// such line is an error.
func ReadLines(path string) ([]string, error) {
	b, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := Lines(string(b))
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s has only blank or comment lines", ErrEmpty, path)
	}
	return out, nil
}

// Lines splits s into its non-empty, non-comment lines, trimmed.
func Lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// List splits the value of a list variable: entries separated by commas
// or newlines, trimmed, empty entries dropped.
func List(s string) []string {
	return Lines(strings.ReplaceAll(s, ",", "\n"))
}

// Source names where a secret came from, for logs.
type Source string

// Sources.
const (
	SourceNone   Source = "none"
	SourceEnv    Source = "environment"
	SourceFile   Source = "file"
	SourceInline Source = "config"
	// SourceCode: set by the program itself, such as the secret the
	// all-in-one generates for its own services.
	SourceCode Source = "code"
)

// Resolve returns one secret by the package's precedence: the variable env
// (when env is not "" and the variable is set and not empty), else file
// (when not ""), else inline. Nothing configured gives "", SourceNone and
// no error.
func Resolve(env, file, inline string) (string, Source, error) {
	if env != "" {
		if v := os.Getenv(env); strings.TrimSpace(v) != "" {
			return strings.TrimRight(v, "\r\n"), SourceEnv, nil
		}
	}
	if file != "" {
		b, err := ReadFile(file)
		if err != nil {
			return "", SourceNone, err
		}
		return string(b), SourceFile, nil
	}
	if inline != "" {
		return inline, SourceInline, nil
	}
	return "", SourceNone, nil
}

// ResolveList returns a list secret (several accepted tokens): the union,
// in order and without repeats, of the variable env (entries separated by
// commas or newlines), the lines of file and inline. Unlike Resolve every
// source counts, so tokens can be rotated by adding the new one in any
// place before removing the old one.
func ResolveList(env, file string, inline []string) ([]string, error) {
	var all []string
	if env != "" {
		all = append(all, List(os.Getenv(env))...)
	}
	if file != "" {
		l, err := ReadLines(file)
		if err != nil {
			return nil, err
		}
		all = append(all, l...)
	}
	return Unique(append(all, inline...)), nil
}

// Unique drops the repeats of list in place, keeping the first of each in
// order, and returns the shortened list.
func Unique(list []string) []string {
	seen := make(map[string]bool, len(list))
	out := list[:0]
	for _, t := range list {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}
