package allinone

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goim/goim/internal/comet"
	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/job"
	"github.com/goim/goim/internal/logic"
	"github.com/goim/goim/internal/rpcauth"
	"github.com/goim/goim/internal/testkit"
)

// TestCheckConfigOpensEveryFile: what -check-config runs (Load's
// Validate, then the service's CheckFiles) opens every file a
// configuration names. Every key of logic, comet and job whose name ends
// in _file or _dir is found from the configuration structs; with all of
// them naming good files (and TLS and SASL on, so that every one is used)
// the check passes, and with any one of them naming a missing file it
// fails naming that file. A new file key without a case in fileContent
// fails the test until it gets one.
func TestCheckConfigOpensEveryFile(t *testing.T) {
	t.Setenv(rpcauth.EnvSecret, "")
	files := newFileSet(t)
	type service struct {
		name  string
		base  any               // pointer to the config with every switch on
		check func(v any) error // Validate, then CheckFiles
	}
	lc := logic.Default()
	lc.Redis.TLS, lc.Redis.Username = true, "goim"
	lc.Kafka.TLS, lc.Kafka.SASLMechanism, lc.Kafka.SASLUser = true, "SCRAM-SHA-256", "goim"
	cc := comet.Default()
	jc := job.Default()
	jc.Comets = map[string]string{"comet-1": "127.0.0.1:3109"}
	jc.Kafka.TLS, jc.Kafka.SASLMechanism, jc.Kafka.SASLUser = true, "SCRAM-SHA-512", "goim"
	services := []service{
		{name: "logic", base: &lc, check: func(v any) error {
			c := *v.(*logic.Config)
			if err := c.Validate(); err != nil {
				return err
			}
			_, err := logic.CheckFiles(c)
			return err
		}},
		{name: "comet", base: &cc, check: func(v any) error {
			c := *v.(*comet.Config)
			return errors.Join(c.Validate(), comet.CheckFiles(c))
		}},
		{name: "job", base: &jc, check: func(v any) error {
			c := *v.(*job.Config)
			return errors.Join(c.Validate(), job.CheckFiles(c))
		}},
	}
	for _, s := range services {
		t.Run(s.name, func(t *testing.T) {
			var fileKeys []conf.EnvKey
			good := map[string]string{}
			for _, k := range conf.EnvKeys(s.base) {
				last := k.Path[strings.LastIndexByte(k.Path, '.')+1:]
				if !strings.HasSuffix(last, "_file") && !strings.HasSuffix(last, "_dir") && !strings.HasSuffix(last, "_files") {
					continue
				}
				fileKeys = append(fileKeys, k)
				good[k.Var] = files.content(t, k.Path)
			}
			if len(fileKeys) == 0 {
				t.Fatal("no file key found")
			}
			t.Logf("%d file keys", len(fileKeys))
			if err := s.check(withEnv(t, s.base, good)); err != nil {
				t.Fatalf("every file present: %v", err)
			}
			for _, k := range fileKeys {
				missing := filepath.Join(t.TempDir(), "missing-"+strings.ReplaceAll(k.Path, ".", "-"))
				env := map[string]string{}
				for name, v := range good {
					env[name] = v
				}
				env[k.Var] = missing
				err := s.check(withEnv(t, s.base, env))
				if err == nil || !strings.Contains(err.Error(), missing) {
					t.Errorf("%s naming a missing file: -check-config error %v, want one naming %s", k.Path, err, missing)
				}
			}
		})
	}
}

// withEnv is a copy of the config base points to with the keys of env
// (variable -> value) set as the environment would set them.
func withEnv(t *testing.T, base any, env map[string]string) any {
	t.Helper()
	var cp any
	switch b := base.(type) {
	case *logic.Config:
		c := *b
		cp = &c
	case *comet.Config:
		c := *b
		cp = &c
	case *job.Config:
		c := *b
		cp = &c
	default:
		t.Fatalf("withEnv: %T", base)
	}
	if err := conf.ApplyEnv(cp, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	return cp
}

// fileSet holds one good file of each kind a configuration names.
type fileSet struct {
	ca                         *testkit.CA
	server, client             testkit.CertFiles
	hmac, pub, secret, pw, tok string
	readTok, keysDir           string
}

func newFileSet(t *testing.T) *fileSet {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ca := testkit.NewCA(t, "check-files")
	keysDir := filepath.Join(dir, "jwt-keys")
	if err := os.Mkdir(keysDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keysDir, "k1.key"), []byte("kid-k1-hmac-key-for-the-check-files-test-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &fileSet{
		keysDir: keysDir,
		ca:      ca, server: ca.Server("comet", "localhost"), client: ca.Client("goim"),
		hmac:    write("hmac.key", "hmac-key-for-the-check-files-test-0123456789\n"),
		pub:     write("ec.pub", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))),
		secret:  write("rpc.secret", testkit.RandomHex(32)+"\n"),
		pw:      write("password", "a-password\n"),
		tok:     write("http-tokens", "# full scope\ncheck-files-full-token-0123456789\n"),
		readTok: write("http-read-tokens", "check-files-read-token-0123456789\n"),
	}
}

// content is the good file for the file key at path.
func (f *fileSet) content(t *testing.T, path string) string {
	t.Helper()
	last := path[strings.LastIndexByte(path, '.')+1:]
	switch {
	case last == "tls_ca_file":
		return f.ca.CertFile
	case path == "tls.cert_file":
		return f.server.CertFile
	case path == "tls.key_file":
		return f.server.KeyFile
	case last == "tls_cert_file":
		return f.client.CertFile
	case last == "tls_key_file":
		return f.client.KeyFile
	case last == "hmac_key_file":
		return f.hmac
	case last == "public_key_file":
		return f.pub
	case last == "secret_file":
		return f.secret
	case last == "password_file", last == "sasl_password_file":
		return f.pw
	case last == "tokens_file":
		return f.tok
	case last == "read_tokens_file":
		return f.readTok
	case last == "keys_dir":
		return f.keysDir
	}
	t.Fatalf("file key %s: this test has no good file for it; add one to fileSet.content (and make sure -check-config opens it)", path)
	return ""
}
