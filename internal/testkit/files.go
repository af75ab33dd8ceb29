package testkit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RPCSecret writes a random internal gRPC secret (64 hex digits) into a
// file of the test's temporary directory and returns the secret and the
// file's path, for the [rpc] secret_file of services run as processes.
func RPCSecret(t testing.TB) (secret, file string) {
	t.Helper()
	secret = RandomHex(32)
	file = filepath.Join(t.TempDir(), "rpc.secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return secret, file
}

// ShippedConfig copies the config file at path into the test's temporary
// directory with every "/etc/goim/" in it pointing into that directory
// instead, writes files there (name -> contents, for the key and secret
// files the config names), and returns the copy's path: a shipped config
// checked with its files present.
func ShippedConfig(t testing.TB, path string, files map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, filepath.Base(path))
	text := strings.ReplaceAll(string(b), "/etc/goim/", filepath.ToSlash(dir)+"/")
	if err := os.WriteFile(out, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}
