package logic

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/conf"
	"github.com/golang-jwt/jwt/v5"
)

type testKeys struct {
	hmac    []byte
	rsa     *rsa.PrivateKey
	ec      *ecdsa.PrivateKey
	hmacF   string // files for the config
	rsaPubF string
	ecPubF  string
}

func newTestKeys(t *testing.T) *testKeys {
	t.Helper()
	dir := t.TempDir()
	k := &testKeys{hmac: []byte("0123456789abcdef0123456789abcdef-secret")}
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pubPEM := func(pub any) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	k.hmacF = write("hmac.key", append(append([]byte(nil), k.hmac...), '\n'))
	k.rsaPubF = write("rsa.pub", pubPEM(&k.rsa.PublicKey))
	k.ecPubF = write("ec.pub", pubPEM(&k.ec.PublicKey))
	return k
}

// sign makes a token; claims are filled with a valid subject and expiry
// unless the caller set them.
func sign(t *testing.T, method jwt.SigningMethod, key any, c Claims) string {
	t.Helper()
	if c.Subject == "" {
		c.Subject = "1001"
	}
	if c.ExpiresAt == nil {
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
	}
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func body(t *testing.T, fields map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAuthenticate(t *testing.T) {
	k := newTestKeys(t)
	auth := func(cfg AuthConfig) *Authenticator {
		t.Helper()
		cfg.Leeway = conf.Duration(time.Second)
		a, err := NewAuthenticator(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	hmacAuth := auth(AuthConfig{HMACKeyFile: k.hmacF})
	anyRoom := auth(AuthConfig{HMACKeyFile: k.hmacF, AnyRoom: true})
	hs := func(c Claims) string { return sign(t, jwt.SigningMethodHS256, k.hmac, c) }
	emptyRooms, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "1001", "rooms": []string{},
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString(k.hmac)
	if err != nil {
		t.Fatal(err)
	}
	rsaAuth := auth(AuthConfig{PublicKeyFile: k.rsaPubF})
	ecAuth := auth(AuthConfig{PublicKeyFile: k.ecPubF, Issuer: "goim-test", Audience: "comet"})
	insecure := auth(AuthConfig{Insecure: true})
	tokenKeys := auth(AuthConfig{HMACKeyFile: k.hmacF, TokenKeys: true})
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPubPEM, err := os.ReadFile(k.rsaPubF)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name    string
		a       *Authenticator
		body    []byte
		want    Identity
		wantErr string // substring; empty = accepted
		roomErr bool   // the error wraps protocol.ErrRoomID (a bad room_id: InvalidArgument)
	}{
		{
			name: "HS256 token gives the subject as mid; the body's key is ignored",
			a:    hmacAuth,
			body: body(t, map[string]any{"token": hs(Claims{Rooms: []string{"live://1"}}), "mid": 7, "key": "victim-key",
				"room_id": "live://1", "platform": "web", "accepts": []int32{1000}}),
			want: Identity{Mid: 1001, RoomID: "live://1", Platform: "web", Accepts: []int32{1000}, Rooms: []string{"live://1"}, RoomsLimited: true},
		},
		{
			name: "RS256 token",
			a:    rsaAuth,
			body: body(t, map[string]any{"token": sign(t, jwt.SigningMethodRS256, k.rsa, Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "42"}})}),
			want: Identity{Mid: 42, RoomsLimited: true},
		},
		{
			name: "ES256 token with issuer and audience",
			a:    ecAuth,
			body: body(t, map[string]any{"token": sign(t, jwt.SigningMethodES256, k.ec, Claims{RegisteredClaims: jwt.RegisteredClaims{
				Issuer: "goim-test", Audience: jwt.ClaimStrings{"comet"}}})}),
			want: Identity{Mid: 1001, RoomsLimited: true},
		},
		{
			name: "room allowed by the token",
			a:    hmacAuth,
			body: body(t, map[string]any{"room_id": "live://2", "token": hs(Claims{Rooms: []string{"live://1", "live://2"}})}),
			want: Identity{Mid: 1001, RoomID: "live://2", Rooms: []string{"live://1", "live://2"}, RoomsLimited: true},
		},
		{
			name: "room allowed by a pattern",
			a:    hmacAuth,
			body: body(t, map[string]any{"room_id": "live://9", "token": hs(Claims{Rooms: []string{"chat://1", "live://*"}})}),
			want: Identity{Mid: 1001, RoomID: "live://9", Rooms: []string{"chat://1", "live://*"}, RoomsLimited: true},
		},
		{
			name: "any room by the * pattern, still limited to it",
			a:    hmacAuth,
			body: body(t, map[string]any{"room_id": "x://y", "token": hs(Claims{Rooms: []string{"*"}})}),
			want: Identity{Mid: 1001, RoomID: "x://y", Rooms: []string{"*"}, RoomsLimited: true},
		},
		{
			name: "no rooms claim, no room: limited to none",
			a:    hmacAuth,
			body: body(t, map[string]any{"token": hs(Claims{})}),
			want: Identity{Mid: 1001, RoomsLimited: true},
		},
		{
			name:    "no rooms claim joins no room",
			a:       hmacAuth,
			body:    body(t, map[string]any{"room_id": "live://1", "token": hs(Claims{})}),
			wantErr: `room "live://1": the token has no rooms claim (and auth.any_room is off)`,
		},
		{
			name: "any_room: no rooms claim joins any room, not limited",
			a:    anyRoom,
			body: body(t, map[string]any{"room_id": "live://1", "token": hs(Claims{})}),
			want: Identity{Mid: 1001, RoomID: "live://1"},
		},
		{
			name:    "any_room: a rooms claim still limits",
			a:       anyRoom,
			body:    body(t, map[string]any{"room_id": "live://2", "token": hs(Claims{Rooms: []string{"live://1"}})}),
			wantErr: `room "live://2" is not in the token's rooms`,
		},
		{
			name:    "any_room: an empty rooms claim joins none",
			a:       anyRoom,
			body:    body(t, map[string]any{"room_id": "live://2", "token": emptyRooms}),
			wantErr: `room "live://2" is not in the token's rooms`,
		},
		{
			name: "any_room: an empty rooms claim, no room: limited to none",
			a:    anyRoom,
			body: body(t, map[string]any{"token": emptyRooms}),
			want: Identity{Mid: 1001, Rooms: []string{}, RoomsLimited: true},
		},
		{
			name: "token_keys: the key claim is the key, the body's is ignored",
			a:    tokenKeys,
			body: body(t, map[string]any{"key": "victim-key", "token": hs(Claims{Key: "user-1001:phone"})}),
			want: Identity{Mid: 1001, Key: "user-1001:phone", RoomsLimited: true},
		},
		{
			name: "token_keys: no key claim, logic generates the key",
			a:    tokenKeys,
			body: body(t, map[string]any{"key": "victim-key", "token": hs(Claims{})}),
			want: Identity{Mid: 1001, RoomsLimited: true},
		},
		{
			name: "without token_keys the key claim is ignored",
			a:    hmacAuth,
			body: body(t, map[string]any{"token": hs(Claims{Key: "user-1001:phone"})}),
			want: Identity{Mid: 1001, RoomsLimited: true},
		},
		{
			name:    "token_keys: a key claim outside the charset refuses the token",
			a:       tokenKeys,
			body:    body(t, map[string]any{"token": hs(Claims{Key: "a,b"})}),
			wantErr: "token key claim: protocol: invalid connection key: byte 1 (0x2c) is not allowed",
		},
		{
			name:    "token_keys: a key claim too long refuses the token",
			a:       tokenKeys,
			body:    body(t, map[string]any{"token": hs(Claims{Key: strings.Repeat("k", protocol.MaxKeyLen+1)})}),
			wantErr: "token key claim: protocol: invalid connection key: 129 bytes, at most 128",
		},
		{
			name:    "bad rooms claim entry refuses the token",
			a:       anyRoom,
			body:    body(t, map[string]any{"token": hs(Claims{Rooms: []string{"live://1", "live://a b"}})}),
			wantErr: "token rooms claim entry 1: protocol: invalid room id: byte 8 (0x20) is not allowed",
		},
		{
			name:    "room_id too long",
			a:       anyRoom,
			body:    body(t, map[string]any{"room_id": "live://" + strings.Repeat("r", 122), "token": hs(Claims{})}),
			wantErr: "room_id: protocol: invalid room id: 129 bytes, at most 128",
			roomErr: true,
		},
		{
			name:    "room_id with a control byte",
			a:       hmacAuth,
			body:    body(t, map[string]any{"room_id": "live://1\n", "token": hs(Claims{Rooms: []string{"*"}})}),
			wantErr: "room_id: protocol: invalid room id: byte 8 (0x0a) is not allowed",
			roomErr: true,
		},
		{
			name: "insecure mode trusts goim v2's JSON",
			a:    insecure,
			body: []byte(`{"mid":123, "key":"mine", "room_id":"live://1000", "platform":"web", "accepts":[1000,1001]}`),
			want: Identity{Mid: 123, Key: "mine", RoomID: "live://1000", Platform: "web", Accepts: []int32{1000, 1001}},
		},
		{
			name:    "insecure mode still checks the room id",
			a:       insecure,
			body:    []byte(`{"mid":123, "room_id":"live://<b>"}`),
			wantErr: "room_id: protocol: invalid room id: byte 7 (0x3c) is not allowed",
			roomErr: true,
		},
		{name: "no token", a: hmacAuth, body: []byte(`{"mid":1}`), wantErr: "no token"},
		{name: "not JSON", a: hmacAuth, body: []byte(`mid=1`), wantErr: "not a JSON object"},
		{name: "not JSON, insecure", a: insecure, body: []byte(`{"mid":"1"}`), wantErr: `field "mid"`},
		{
			name:    "expired",
			a:       hmacAuth,
			body:    body(t, map[string]any{"token": sign(t, jwt.SigningMethodHS256, k.hmac, Claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Minute))}})}),
			wantErr: "token is expired",
		},
		{
			name: "no expiry",
			a:    hmacAuth,
			body: body(t, map[string]any{"token": func() string {
				s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "1"}).SignedString(k.hmac)
				return s
			}()}),
			wantErr: "missing required claim",
		},
		{
			name:    "signed with another secret",
			a:       hmacAuth,
			body:    body(t, map[string]any{"token": sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-000"), Claims{})}),
			wantErr: "signature is invalid",
		},
		{
			name:    "signed with another RSA key",
			a:       rsaAuth,
			body:    body(t, map[string]any{"token": sign(t, jwt.SigningMethodRS256, otherRSA, Claims{})}),
			wantErr: "verification error",
		},
		{
			name:    "algorithm none",
			a:       hmacAuth,
			body:    body(t, map[string]any{"token": sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, Claims{})}),
			wantErr: "signing method none is invalid",
		},
		{
			name:    "HS256 signed with the RSA public key (key confusion)",
			a:       rsaAuth,
			body:    body(t, map[string]any{"token": sign(t, jwt.SigningMethodHS256, rsaPubPEM, Claims{})}),
			wantErr: "signing method HS256 is invalid",
		},
		{
			name:    "subject not a number",
			a:       hmacAuth,
			body:    body(t, map[string]any{"token": sign(t, jwt.SigningMethodHS256, k.hmac, Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice"}})}),
			wantErr: `subject "alice"`,
		},
		{
			name:    "subject zero",
			a:       hmacAuth,
			body:    body(t, map[string]any{"token": sign(t, jwt.SigningMethodHS256, k.hmac, Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "0"}})}),
			wantErr: `subject "0"`,
		},
		{
			name:    "room outside the token's rooms",
			a:       hmacAuth,
			body:    body(t, map[string]any{"room_id": "live://9", "token": sign(t, jwt.SigningMethodHS256, k.hmac, Claims{Rooms: []string{"live://1"}})}),
			wantErr: `room "live://9"`,
		},
		{
			name:    "wrong issuer",
			a:       ecAuth,
			body:    body(t, map[string]any{"token": sign(t, jwt.SigningMethodES256, k.ec, Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: "evil", Audience: jwt.ClaimStrings{"comet"}}})}),
			wantErr: "invalid issuer",
		},
		{
			name:    "garbage token",
			a:       hmacAuth,
			body:    body(t, map[string]any{"token": "a.b.c"}),
			wantErr: "malformed",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.a.Authenticate(tc.body)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want ErrAuth containing %q", err, tc.wantErr)
				}
				if errors.Is(err, protocol.ErrRoomID) != tc.roomErr {
					t.Fatalf("error %v: wraps protocol.ErrRoomID = %v, want %v", err, !tc.roomErr, tc.roomErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Mid != tc.want.Mid || got.Key != tc.want.Key || got.RoomID != tc.want.RoomID ||
				got.Platform != tc.want.Platform || len(got.Accepts) != len(tc.want.Accepts) ||
				!slices.Equal(got.Rooms, tc.want.Rooms) || (got.Rooms == nil) != (tc.want.Rooms == nil) ||
				got.RoomsLimited != tc.want.RoomsLimited {
				t.Fatalf("identity %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNewAuthenticatorErrors(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	notPEM := filepath.Join(dir, "notpem")
	_ = os.WriteFile(short, []byte("too short\n"), 0o600)
	_ = os.WriteFile(notPEM, []byte("hello"), 0o600)
	cases := []struct {
		name    string
		cfg     AuthConfig
		wantErr string
	}{
		{name: "no key and not insecure", cfg: AuthConfig{}, wantErr: "no key"},
		{name: "missing file", cfg: AuthConfig{HMACKeyFile: filepath.Join(dir, "nope")}, wantErr: "no such file"},
		{name: "short secret", cfg: AuthConfig{HMACKeyFile: short}, wantErr: "at least 32"},
		{name: "not a public key", cfg: AuthConfig{PublicKeyFile: notPEM}, wantErr: "not a PEM"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewAuthenticator(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	for _, tc := range []struct {
		name    string
		cfg     AuthConfig
		wantErr string // "" valid
	}{
		{name: "no key and not insecure", cfg: AuthConfig{}, wantErr: "set hmac_key_file, public_key_file or keys_dir"},
		{name: "keys_dir alone", cfg: AuthConfig{KeysDir: "/etc/goim/jwt-keys"}},
		{name: "reload_interval off", cfg: AuthConfig{KeysDir: "/k", ReloadInterval: 0}},
		{name: "reload_interval 1s", cfg: AuthConfig{KeysDir: "/k", ReloadInterval: conf.Duration(time.Second)}},
		{name: "reload_interval under 1s", cfg: AuthConfig{KeysDir: "/k", ReloadInterval: conf.Duration(time.Millisecond)}, wantErr: "reload_interval: must be 0 (off) or at least 1s"},
		{name: "negative reload_interval", cfg: AuthConfig{KeysDir: "/k", ReloadInterval: conf.Duration(-time.Second)}, wantErr: "reload_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p conf.Problems
			tc.cfg.Validate(&p)
			err := p.Err()
			if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate: %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewKey(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		k := NewKey()
		if !uuid.MatchString(k) {
			t.Fatalf("key %q is not a UUID v4", k)
		}
		if seen[k] {
			t.Fatalf("duplicate key %q", k)
		}
		seen[k] = true
	}
}

// FuzzAuthenticate: any body gets an identity or an error wrapping ErrAuth,
// never a panic, in both modes (signed with and without any_room); an
// accepted identity's room is a valid room id its rooms allow.
func FuzzAuthenticate(f *testing.F) {
	f.Add([]byte(`{"mid":123,"room_id":"live://1","accepts":[1000]}`))
	f.Add([]byte(`{"token":"eyJhbGciOiJIUzI1NiJ9.e30.x"}`))
	f.Add([]byte(`{"token":"a.b.c","mid":"x"}`))
	f.Add([]byte(`{"token":"eyJhbGciOiJIUzI1NiIsImtpZCI6IngifQ.e30.x","key":"k"}`))
	f.Add([]byte(`{"mid":1,"room_id":"live://a b"}`))
	f.Add([]byte(`{"mid":1,"room_id":"` + strings.Repeat("r", 129) + `"}`))
	f.Add([]byte(`{"mid":1,"room_id":"live://\u00e9"}`))
	dir := f.TempDir()
	key := filepath.Join(dir, "k")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		f.Fatal(err)
	}
	secure, err := NewAuthenticator(AuthConfig{HMACKeyFile: key})
	if err != nil {
		f.Fatal(err)
	}
	anyRoom, err := NewAuthenticator(AuthConfig{HMACKeyFile: key, AnyRoom: true})
	if err != nil {
		f.Fatal(err)
	}
	insecure, _ := NewAuthenticator(AuthConfig{Insecure: true})
	tokenKeys, err := NewAuthenticator(AuthConfig{HMACKeyFile: key, TokenKeys: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, a := range []*Authenticator{secure, anyRoom, insecure, tokenKeys} {
			id, err := a.Authenticate(b)
			if err != nil {
				if !errors.Is(err, ErrAuth) {
					t.Fatalf("error %v does not wrap ErrAuth", err)
				}
				continue
			}
			if id.RoomID != "" && protocol.CheckRoomID(id.RoomID) != nil {
				t.Fatalf("room_id %q accepted", id.RoomID)
			}
			if id.RoomsLimited && id.RoomID != "" && !protocol.RoomAllowed(id.Rooms, id.RoomID) {
				t.Fatalf("room_id %q accepted outside rooms %q", id.RoomID, id.Rooms)
			}
			if a != insecure && id.Key != "" && (a != tokenKeys || protocol.CheckKey(id.Key) != nil) {
				t.Fatalf("key %q accepted from a token", id.Key)
			}
			if a == insecure && (id.RoomsLimited || id.Rooms != nil) {
				t.Fatalf("insecure identity limited: %+v", id)
			}
		}
	})
}
