package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goim/goim/internal/buildinfo"
	"github.com/goim/goim/internal/logic"
	"github.com/golang-jwt/jwt/v5"
)

// keyFiles are signing keys in the formats openssl writes and the public
// halves logic verifies with.
type keyFiles struct {
	dir                        string
	hmac                       string // the secret, as logic's hmac_key_file
	rsaPKCS1, rsaPKCS8, rsaPub string
	ecSEC1, ecPKCS8, ecPub     string
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkix(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PUBLIC KEY", der)
}

func pkcs8(t *testing.T, priv any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

func newKeyFiles(t *testing.T) *keyFiles {
	t.Helper()
	dir := t.TempDir()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ek)
	if err != nil {
		t.Fatal(err)
	}
	// openssl ecparam -genkey writes the curve's parameters first.
	params := pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})
	return &keyFiles{
		dir:      dir,
		hmac:     writeFile(t, dir, "hmac.key", []byte("goim-token-test-secret-0123456789abcdef\n")),
		rsaPKCS1: writeFile(t, dir, "rsa1.pem", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))),
		rsaPKCS8: writeFile(t, dir, "rsa8.pem", pkcs8(t, rk)),
		rsaPub:   writeFile(t, dir, "rsa.pub", pkix(t, &rk.PublicKey)),
		ecSEC1:   writeFile(t, dir, "ec1.pem", append(params, pemBlock("EC PRIVATE KEY", sec1)...)),
		ecPKCS8:  writeFile(t, dir, "ec8.pem", pkcs8(t, ek)),
		ecPub:    writeFile(t, dir, "ec.pub", pkix(t, &ek.PublicKey)),
	}
}

// mint runs the command and returns the token it printed.
func mint(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(args, &out, &errOut); err != nil {
		t.Fatalf("goim-token %q: %v\n%s", args, err, errOut.String())
	}
	tok, ok := strings.CutSuffix(out.String(), "\n")
	if !ok || strings.Count(tok, ".") != 2 {
		t.Fatalf("output %q is not one JWT and a newline", out.String())
	}
	return tok
}

func authBody(t *testing.T, tok, room string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"token": tok, "room_id": room, "mid": 999, "key": "from-body"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMintedTokensAccepted: a token minted for each algorithm and key
// format is accepted by logic's Authenticator with the matching key, with
// the user, rooms, key, issuer, audience and kid the flags gave.
func TestMintedTokensAccepted(t *testing.T) {
	k := newKeyFiles(t)
	keysDir := t.TempDir()
	// The kid's key in logic's keys_dir is the public half (or the secret).
	for name, src := range map[string]string{"hs-1.key": k.hmac, "rs-1.pem": k.rsaPub, "es-1.pem": k.ecPub} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, keysDir, name, b)
	}
	cases := []struct {
		name     string
		cfg      logic.AuthConfig
		args     []string
		wantAlg  string
		room     string
		wantKey  string
		wantRoom []string
	}{
		{name: "HS256 inferred", cfg: logic.AuthConfig{HMACKeyFile: k.hmac},
			args: []string{"-key", k.hmac, "-sub", "42", "-rooms", "live://*"}, wantAlg: "HS256", room: "live://1000", wantRoom: []string{"live://*"}},
		{name: "HS256 explicit", cfg: logic.AuthConfig{HMACKeyFile: k.hmac},
			args: []string{"-key", k.hmac, "-alg", "HS256", "-sub", "42"}, wantAlg: "HS256", wantRoom: nil},
		{name: "RS256 PKCS #1", cfg: logic.AuthConfig{PublicKeyFile: k.rsaPub},
			args: []string{"-key", k.rsaPKCS1, "-sub", "42", "-rooms", "live://1,chat://2", "-exp", "5m"}, wantAlg: "RS256", room: "chat://2", wantRoom: []string{"live://1", "chat://2"}},
		{name: "RS256 PKCS #8, explicit", cfg: logic.AuthConfig{PublicKeyFile: k.rsaPub},
			args: []string{"-key", k.rsaPKCS8, "-alg", "RS256", "-sub", "42", "-rooms", "*"}, wantAlg: "RS256", room: "x://y", wantRoom: []string{"*"}},
		{name: "ES256 SEC 1 with parameters", cfg: logic.AuthConfig{PublicKeyFile: k.ecPub, Issuer: "goim", Audience: "comet"},
			args: []string{"-key", k.ecSEC1, "-sub", "42", "-iss", "goim", "-aud", "comet"}, wantAlg: "ES256", wantRoom: nil},
		{name: "ES256 PKCS #8", cfg: logic.AuthConfig{PublicKeyFile: k.ecPub},
			args: []string{"-key", k.ecPKCS8, "-alg", "ES256", "-sub", "42", "-rooms", "live://1", "-rooms", "live://2"}, wantAlg: "ES256", room: "live://2", wantRoom: []string{"live://1", "live://2"}},
		{name: "HS256 by kid", cfg: logic.AuthConfig{KeysDir: keysDir},
			args: []string{"-key", k.hmac, "-kid", "hs-1", "-sub", "42"}, wantAlg: "HS256"},
		{name: "RS256 by kid (-key-id)", cfg: logic.AuthConfig{KeysDir: keysDir},
			args: []string{"-key", k.rsaPKCS8, "-key-id", "rs-1", "-sub", "42"}, wantAlg: "RS256"},
		{name: "ES256 by kid, connection key", cfg: logic.AuthConfig{KeysDir: keysDir, TokenKeys: true},
			args: []string{"-key", k.ecPKCS8, "-kid", "es-1", "-sub", "42", "-conn-key", "phone-42"}, wantAlg: "ES256", wantKey: "phone-42"},
		{name: "connection key ignored without token_keys", cfg: logic.AuthConfig{HMACKeyFile: k.hmac},
			args: []string{"-key", k.hmac, "-sub", "42", "-conn-key", "phone-42"}, wantAlg: "HS256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := mint(t, tc.args...)
			parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
			if err != nil {
				t.Fatal(err)
			}
			if parsed.Method.Alg() != tc.wantAlg {
				t.Fatalf("alg %s, want %s", parsed.Method.Alg(), tc.wantAlg)
			}
			a, err := logic.NewAuthenticator(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			id, err := a.Authenticate(authBody(t, tok, tc.room))
			if err != nil {
				t.Fatalf("logic refused the token: %v", err)
			}
			if id.Mid != 42 || id.Key != tc.wantKey || id.RoomID != tc.room || !slices.Equal(id.Rooms, tc.wantRoom) || !id.RoomsLimited {
				t.Fatalf("identity %+v", id)
			}
		})
	}
}

// TestMintedTokenClaims: exp follows -exp, iat is set, the kid is in the
// header, and without -rooms there is no rooms claim.
func TestMintedTokenClaims(t *testing.T) {
	k := newKeyFiles(t)
	tok := mint(t, "-key", k.hmac, "-sub", "7", "-exp", "90s", "-kid", "k1")
	var c jwt.MapClaims
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, &c)
	if err != nil {
		t.Fatal(err)
	}
	exp, iat := c["exp"].(float64), c["iat"].(float64)
	if exp-iat != 90 || parsed.Header["kid"] != "k1" || c["sub"] != "7" {
		t.Fatalf("header %v claims %v", parsed.Header, c)
	}
	if _, ok := c["rooms"]; ok {
		t.Fatalf("rooms claim without -rooms: %v", c)
	}
	if _, ok := c["key"]; ok {
		t.Fatalf("key claim without -conn-key: %v", c)
	}
}

// TestBadInput: every kind of bad input is refused with an error naming
// the flag, and nothing is printed.
func TestBadInput(t *testing.T) {
	k := newKeyFiles(t)
	dir := t.TempDir()
	short := writeFile(t, dir, "short.key", []byte("too short\n"))
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakRSA := writeFile(t, dir, "weak.pem", pkcs8(t, weak))
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec384 := writeFile(t, dir, "p384.pem", pkcs8(t, p384))
	encrypted := writeFile(t, dir, "enc.pem", pemBlock("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}))
	garbagePEM := writeFile(t, dir, "garbage.pem", pemBlock("RSA PRIVATE KEY", []byte{1, 2, 3}))
	cases := []struct {
		name string
		args []string
		want string
	}{
		{name: "no key", args: []string{"-sub", "1"}, want: "-key: required"},
		{name: "missing key file", args: []string{"-key", filepath.Join(dir, "nope"), "-sub", "1"}, want: "no such file"},
		{name: "short secret", args: []string{"-key", short, "-sub", "1"}, want: "at least 32"},
		{name: "public key", args: []string{"-key", k.rsaPub, "-sub", "1"}, want: "signing needs the private key"},
		{name: "encrypted key", args: []string{"-key", encrypted, "-sub", "1"}, want: "decrypt it first"},
		{name: "corrupt PEM", args: []string{"-key", garbagePEM, "-sub", "1"}, want: "-key " + garbagePEM},
		{name: "weak RSA", args: []string{"-key", weakRSA, "-sub", "1"}, want: "1024 bits"},
		{name: "EC P-384", args: []string{"-key", ec384, "-sub", "1"}, want: "P-384"},
		{name: "alg of another key", args: []string{"-key", k.hmac, "-alg", "RS256", "-sub", "1"}, want: "is for HS256"},
		{name: "alg RS256 with an EC key", args: []string{"-key", k.ecPKCS8, "-alg", "RS256", "-sub", "1"}, want: "is for ES256"},
		{name: "unknown alg", args: []string{"-key", k.hmac, "-alg", "none", "-sub", "1"}, want: `-alg "none"`},
		{name: "no sub", args: []string{"-key", k.hmac}, want: "-sub: required"},
		{name: "sub zero", args: []string{"-key", k.hmac, "-sub", "0"}, want: `-sub "0"`},
		{name: "sub not a number", args: []string{"-key", k.hmac, "-sub", "alice"}, want: `-sub "alice"`},
		{name: "bad room", args: []string{"-key", k.hmac, "-sub", "1", "-rooms", "live://1,live://a b"}, want: `-rooms "live://a b"`},
		{name: "zero exp", args: []string{"-key", k.hmac, "-sub", "1", "-exp", "0s"}, want: "-exp 0s"},
		{name: "negative exp", args: []string{"-key", k.hmac, "-sub", "1", "-exp", "-1h"}, want: "must be > 0"},
		{name: "bad kid", args: []string{"-key", k.hmac, "-sub", "1", "-kid", "a/b"}, want: `-kid "a/b"`},
		{name: "bad connection key", args: []string{"-key", k.hmac, "-sub", "1", "-conn-key", "a,b"}, want: `-conn-key "a,b"`},
		{name: "long connection key", args: []string{"-key", k.hmac, "-sub", "1", "-conn-key", strings.Repeat("k", 129)}, want: "at most 128"},
		{name: "unknown flag", args: []string{"-key", k.hmac, "-sub", "1", "-room", "x"}, want: "not defined"},
		{name: "stray argument", args: []string{"-key", k.hmac, "-sub", "1", "extra"}, want: "unexpected arguments"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(tc.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Fatalf("printed %q on error", out.String())
			}
		})
	}
	// Several problems are reported together.
	err = run([]string{"-sub", "0", "-exp", "0s"}, &bytes.Buffer{}, &bytes.Buffer{})
	for _, want := range []string{"-sub", "-exp", "-key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

// TestWrongKeyRefused: logic refuses a token minted with another key, or
// with a kid its keys_dir lacks.
func TestWrongKeyRefused(t *testing.T) {
	k := newKeyFiles(t)
	other := newKeyFiles(t)
	a, err := logic.NewAuthenticator(logic.AuthConfig{PublicKeyFile: k.ecPub})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(authBody(t, mint(t, "-key", other.ecPKCS8, "-sub", "1"), "")); err == nil {
		t.Fatal("token of another EC key accepted")
	}
	if _, err := a.Authenticate(authBody(t, mint(t, "-key", k.hmac, "-sub", "1"), "")); err == nil {
		t.Fatal("HS256 token accepted by an ES256-only logic")
	}
	keysDir := t.TempDir()
	b, err := os.ReadFile(k.ecPub)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keysDir, "es-1.pem", b)
	a, err = logic.NewAuthenticator(logic.AuthConfig{KeysDir: keysDir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(authBody(t, mint(t, "-key", k.ecPKCS8, "-kid", "es-2", "-sub", "1"), "")); err == nil || !strings.Contains(err.Error(), `no key with kid "es-2"`) {
		t.Fatalf("unknown kid: %v", err)
	}
}

// TestVersion: -version prints the build and mints nothing.
func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"-version"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if want := "goim-token " + buildinfo.Version() + "\n"; out.String() != want {
		t.Errorf("-version printed %q, want %q", out.String(), want)
	}
}
