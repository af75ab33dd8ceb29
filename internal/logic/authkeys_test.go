package logic

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/internal/conf"
	"github.com/golang-jwt/jwt/v5"
)

// keyDir is an auth.keys_dir of a test, with helpers to add and remove
// keys and sign with them.
type keyDir struct {
	t    *testing.T
	dir  string
	priv map[string]any // kid -> signing key ([]byte, *rsa.PrivateKey, *ecdsa.PrivateKey)
}

func newKeyDir(t *testing.T) *keyDir {
	t.Helper()
	return &keyDir{t: t, dir: t.TempDir(), priv: map[string]any{}}
}

func (d *keyDir) write(name string, data []byte) string {
	d.t.Helper()
	p := filepath.Join(d.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		d.t.Fatal(err)
	}
	return p
}

func pemPublic(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// addHMAC adds an HS256 secret as kid.key.
func (d *keyDir) addHMAC(kid string) {
	d.t.Helper()
	secret := []byte("secret-of-" + kid + "-0123456789abcdef0123456789")
	d.write(kid+".key", append(secret, '\n'))
	d.priv[kid] = secret
}

// addEC adds an EC P-256 public key as kid.pem.
func (d *keyDir) addEC(kid string) {
	d.t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		d.t.Fatal(err)
	}
	d.write(kid+".pem", pemPublic(d.t, &k.PublicKey))
	d.priv[kid] = k
}

// addRSA adds an RSA public key as kid.pem.
func (d *keyDir) addRSA(kid string, bits int) {
	d.t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		d.t.Fatal(err)
	}
	d.write(kid+".pem", pemPublic(d.t, &k.PublicKey))
	d.priv[kid] = k
}

func (d *keyDir) remove(name string) {
	d.t.Helper()
	if err := os.Remove(filepath.Join(d.dir, name)); err != nil {
		d.t.Fatal(err)
	}
}

// sign makes a token of mid signed with kid's key; kid goes in the header
// unless noKid.
func (d *keyDir) sign(kid string, mid int64, noKid bool) string {
	d.t.Helper()
	var method jwt.SigningMethod
	switch d.priv[kid].(type) {
	case []byte:
		method = jwt.SigningMethodHS256
	case *rsa.PrivateKey:
		method = jwt.SigningMethodRS256
	case *ecdsa.PrivateKey:
		method = jwt.SigningMethodES256
	default:
		d.t.Fatalf("no key %q", kid)
	}
	c := Claims{}
	c.Subject = fmt.Sprint(mid)
	c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
	tok := jwt.NewWithClaims(method, c)
	if !noKid {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(d.priv[kid])
	if err != nil {
		d.t.Fatal(err)
	}
	return s
}

func (d *keyDir) body(kid string, mid int64) []byte {
	return body(d.t, map[string]any{"token": d.sign(kid, mid, false)})
}

// accepts checks that a accepts the token of kid (and that mid came from
// it), or refuses it with an error containing wantErr.
func accepts(t *testing.T, a *Authenticator, b []byte, mid int64, wantErr string) {
	t.Helper()
	id, err := a.Authenticate(b)
	if wantErr != "" {
		if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error %v, want ErrAuth containing %q", err, wantErr)
		}
		return
	}
	if err != nil || id.Mid != mid {
		t.Fatalf("identity %+v, %v; want mid %d", id, err, mid)
	}
}

// TestKeysDirSelection: the token header's kid picks the key of keys_dir;
// a token without kid uses the key file of its algorithm, or the only key.
func TestKeysDirSelection(t *testing.T) {
	d := newKeyDir(t)
	d.addHMAC("hs-1")
	d.addEC("es-1")
	d.addRSA("rs-1", 2048)
	k := newTestKeys(t)
	a, err := NewAuthenticator(AuthConfig{KeysDir: d.dir, HMACKeyFile: k.hmacF, Leeway: conf.Duration(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if n, kids := a.Keys(); n != 4 || !slices.Equal(kids, []string{"es-1", "hs-1", "rs-1"}) {
		t.Fatalf("Keys() = %d %q", n, kids)
	}
	kidOf := func(method jwt.SigningMethod, key any, kid any) []byte {
		c := Claims{}
		c.Subject, c.ExpiresAt = "5", jwt.NewNumericDate(time.Now().Add(time.Hour))
		tok := jwt.NewWithClaims(method, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return body(t, map[string]any{"token": s})
	}
	rsPub, err := os.ReadFile(filepath.Join(d.dir, "rs-1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		body    []byte
		mid     int64
		wantErr string
	}{
		{name: "HS256 by kid", body: d.body("hs-1", 11), mid: 11},
		{name: "ES256 by kid", body: d.body("es-1", 12), mid: 12},
		{name: "RS256 by kid", body: d.body("rs-1", 13), mid: 13},
		{name: "no kid: hmac_key_file", body: body(t, map[string]any{"token": sign(t, jwt.SigningMethodHS256, k.hmac, Claims{})}), mid: 1001},
		{name: "no kid, no file of the alg", body: body(t, map[string]any{"token": d.sign("es-1", 14, true)}), wantErr: "no ES256 key for a token without kid"},
		{name: "unknown kid", body: kidOf(jwt.SigningMethodHS256, d.priv["hs-1"], "hs-2"), wantErr: `no key with kid "hs-2"`},
		{name: "kid of a key file is unknown", body: kidOf(jwt.SigningMethodHS256, k.hmac, "hmac"), wantErr: `no key with kid "hmac"`},
		{name: "kid not a string", body: kidOf(jwt.SigningMethodHS256, d.priv["hs-1"], 7), wantErr: "kid is not a string"},
		{name: "kid outside the charset", body: kidOf(jwt.SigningMethodHS256, d.priv["hs-1"], "../hs-1"), wantErr: "kid is not a valid key id"},
		{name: "kid of another algorithm's key", body: kidOf(jwt.SigningMethodES256, d.priv["es-1"], "rs-1"), wantErr: "the key is for RS256, the token is ES256"},
		{name: "HS256 with an RSA key's PEM as secret (key confusion)", body: kidOf(jwt.SigningMethodHS256, rsPub, "rs-1"), wantErr: "the key is for RS256, the token is HS256"},
		{name: "kid's key, wrong signature", body: kidOf(jwt.SigningMethodHS256, []byte("another-secret-another-secret-0000"), "hs-1"), wantErr: "signature is invalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { accepts(t, a, tc.body, tc.mid, tc.wantErr) })
	}

	t.Run("the only key serves tokens without kid", func(t *testing.T) {
		one := newKeyDir(t)
		one.addEC("only")
		a, err := NewAuthenticator(AuthConfig{KeysDir: one.dir})
		if err != nil {
			t.Fatal(err)
		}
		accepts(t, a, body(t, map[string]any{"token": one.sign("only", 21, true)}), 21, "")
		one.addEC("second")
		if err := a.Reload(); err != nil {
			t.Fatal(err)
		}
		accepts(t, a, body(t, map[string]any{"token": one.sign("only", 21, true)}), 0, "no ES256 key for a token without kid")
		accepts(t, a, one.body("only", 21), 21, "")
	})
	t.Run("without keys_dir a kid is ignored", func(t *testing.T) {
		a, err := NewAuthenticator(AuthConfig{HMACKeyFile: k.hmacF})
		if err != nil {
			t.Fatal(err)
		}
		accepts(t, a, kidOf(jwt.SigningMethodHS256, k.hmac, "anything"), 5, "")
	})
}

// TestKeysDirLoad: what a keys_dir may hold, and every way a load fails,
// naming the file.
func TestKeysDirLoad(t *testing.T) {
	good := func(t *testing.T) *keyDir {
		d := newKeyDir(t)
		d.addHMAC("a")
		return d
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		setup   func(d *keyDir)
		wantErr string // "" loads
		kids    []string
	}{
		{name: "one key", setup: func(*keyDir) {}, kids: []string{"a"}},
		{name: "dot files and directories skipped", kids: []string{"a"}, setup: func(d *keyDir) {
			d.write(".a.key.swp", []byte("x"))
			if err := os.Mkdir(filepath.Join(d.dir, "..data"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(d.dir, "sub"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "symbolic link followed (mounted secrets)", kids: []string{"a", "linked"}, setup: func(d *keyDir) {
			target := filepath.Join(t.TempDir(), "target.key")
			if err := os.WriteFile(target, []byte("linked-secret-0123456789abcdef012345"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(d.dir, "linked.key")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "kid is the name without the last extension", kids: []string{"a", "v2.2025"}, setup: func(d *keyDir) { d.addEC("v2.2025") }},
		{name: "file without extension", kids: []string{"a", "plain"}, setup: func(d *keyDir) { d.write("plain", []byte("plain-secret-0123456789abcdef0123456")) }},
		{name: "certificate", kids: []string{"a", "cert"}, setup: func(d *keyDir) { d.write("cert.pem", testCert(t)) }},
		{name: "short secret", wantErr: "b.key: the secret has 5 bytes", setup: func(d *keyDir) { d.write("b.key", []byte("short")) }},
		{name: "a README is not a key", wantErr: "README: the secret has", setup: func(d *keyDir) { d.write("README", []byte("keys")) }},
		{name: "empty file", wantErr: "empty", setup: func(d *keyDir) { d.write("e.key", []byte("\n")) }},
		{name: "kid outside the charset", wantErr: `a b.key: the file name without its extension is the kid`, setup: func(d *keyDir) { d.write("a b.key", []byte("secret-secret-secret-secret-secret-1")) }},
		{name: "duplicate kid", wantErr: `a.key and a.pem: both are kid "a"`, setup: func(d *keyDir) {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			d.write("a.pem", pemPublic(t, &k.PublicKey))
		}},
		{name: "private key", wantErr: "p.pem: a PRIVATE KEY: logic verifies with the public key only", setup: func(d *keyDir) {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			der, _ := x509.MarshalPKCS8PrivateKey(k)
			d.write("p.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		}},
		{name: "EC P-384", wantErr: "e.pem: an EC key on P-384: ES256 needs P-256", setup: func(d *keyDir) { d.write("e.pem", pemPublic(t, &ec384.PublicKey)) }},
		{name: "RSA 1024", wantErr: "r.pem: an RSA key of 1024 bits, at least 2048 needed", setup: func(d *keyDir) { d.addRSA("r", 1024) }},
		{name: "corrupt PEM", wantErr: "c.pem: PEM PUBLIC KEY", setup: func(d *keyDir) {
			d.write("c.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}))
		}},
		{name: "PEM of another kind", wantErr: `x.pem: PEM block "X509 CRL": not a public key`, setup: func(d *keyDir) {
			d.write("x.pem", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte{1}}))
		}},
		{name: "dangling symbolic link", wantErr: "no such file", setup: func(d *keyDir) {
			if err := os.Symlink(filepath.Join(d.dir, "nowhere"), filepath.Join(d.dir, "gone.key")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "more than MaxAuthKeys", wantErr: fmt.Sprintf("more than %d keys", MaxAuthKeys), setup: func(d *keyDir) {
			for i := range MaxAuthKeys {
				d.write(fmt.Sprintf("k%03d.key", i), []byte("secret-secret-secret-secret-secret-1"))
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := good(t)
			tc.setup(d)
			a, err := NewAuthenticator(AuthConfig{KeysDir: d.dir})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), "auth.keys_dir: ") || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming auth.keys_dir and containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, kids := a.Keys(); !slices.Equal(kids, tc.kids) {
				t.Fatalf("kids %q, want %q", kids, tc.kids)
			}
		})
	}
	t.Run("MaxAuthKeys keys load", func(t *testing.T) {
		d := newKeyDir(t)
		for i := range MaxAuthKeys {
			d.write(fmt.Sprintf("k%03d.key", i), []byte("secret-secret-secret-secret-secret-1"))
		}
		a, err := NewAuthenticator(AuthConfig{KeysDir: d.dir})
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := a.Keys(); n != MaxAuthKeys {
			t.Fatalf("%d keys", n)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		if _, err := NewAuthenticator(AuthConfig{KeysDir: filepath.Join(t.TempDir(), "nope")}); err == nil || !strings.Contains(err.Error(), "no such file") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("empty directory: no key", func(t *testing.T) {
		if _, err := NewAuthenticator(AuthConfig{KeysDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "no key to verify tokens") {
			t.Fatalf("error %v", err)
		}
	})
}

// testCert is a self-signed certificate of an EC P-256 key, PEM.
func testCert(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestKeyRotation: a new kid's tokens are accepted once its file is added
// and the keys reloaded; the old kid's are refused once its file is
// removed and the keys reloaded; a reload that fails keeps the keys in
// use; ReloadIfChanged reloads only when a file changed.
func TestKeyRotation(t *testing.T) {
	d := newKeyDir(t)
	d.addHMAC("2025-01")
	a, err := NewAuthenticator(AuthConfig{KeysDir: d.dir})
	if err != nil {
		t.Fatal(err)
	}
	accepts(t, a, d.body("2025-01", 1), 1, "")
	if reloaded, err := a.ReloadIfChanged(); reloaded || err != nil {
		t.Fatalf("nothing changed: reloaded %v, %v", reloaded, err)
	}

	// Add the new key: refused until the reload, then accepted beside the
	// old.
	d.addHMAC("2025-02")
	accepts(t, a, d.body("2025-02", 2), 0, `no key with kid "2025-02"`)
	if reloaded, err := a.ReloadIfChanged(); !reloaded || err != nil {
		t.Fatalf("key added: reloaded %v, %v", reloaded, err)
	}
	accepts(t, a, d.body("2025-02", 2), 2, "")
	accepts(t, a, d.body("2025-01", 1), 1, "")

	// A broken file fails the reload: the keys in use stay.
	d.write("broken.pem", []byte("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n"))
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), "broken.pem") {
		t.Fatalf("reload with a broken file: %v", err)
	}
	accepts(t, a, d.body("2025-02", 2), 2, "")
	accepts(t, a, d.body("2025-01", 1), 1, "")
	// Not retried until something changes again.
	if reloaded, _ := a.ReloadIfChanged(); reloaded {
		t.Fatal("an unchanged broken file was reloaded again")
	}
	d.remove("broken.pem")

	// Remove the old key: refused after the reload.
	d.remove("2025-01.key")
	if reloaded, err := a.ReloadIfChanged(); !reloaded || err != nil {
		t.Fatalf("key removed: reloaded %v, %v", reloaded, err)
	}
	accepts(t, a, d.body("2025-01", 1), 0, `no key with kid "2025-01"`)
	accepts(t, a, d.body("2025-02", 2), 2, "")
	if n, kids := a.Keys(); n != 1 || !slices.Equal(kids, []string{"2025-02"}) {
		t.Fatalf("Keys() = %d %q", n, kids)
	}

	// A kid moved to another algorithm: ES256 tokens are accepted, HS256
	// ones refused (no HS256 key left).
	d.remove("2025-02.key")
	d.addEC("2025-02")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	accepts(t, a, d.body("2025-02", 3), 3, "")
	accepts(t, a, body(t, map[string]any{"token": d.sign("2025-01", 1, false)}), 0, "signing method HS256 is invalid")

	// Removing every key fails the reload (no key left): the last stays.
	d.remove("2025-02.pem")
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Fatalf("reload of an empty directory: %v", err)
	}
	accepts(t, a, d.body("2025-02", 3), 3, "")
}

// TestHMACKeyFileReload: the single key files are reloaded too.
func TestHMACKeyFileReload(t *testing.T) {
	k := newTestKeys(t)
	a, err := NewAuthenticator(AuthConfig{HMACKeyFile: k.hmacF})
	if err != nil {
		t.Fatal(err)
	}
	old := body(t, map[string]any{"token": sign(t, jwt.SigningMethodHS256, k.hmac, Claims{})})
	accepts(t, a, old, 1001, "")
	newSecret := []byte("the-new-secret-0123456789abcdef-0123456789")
	if err := os.WriteFile(k.hmacF, newSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	if reloaded, err := a.ReloadIfChanged(); !reloaded || err != nil {
		t.Fatalf("reloaded %v, %v", reloaded, err)
	}
	accepts(t, a, old, 0, "signature is invalid")
	accepts(t, a, body(t, map[string]any{"token": sign(t, jwt.SigningMethodHS256, newSecret, Claims{})}), 1001, "")
}
