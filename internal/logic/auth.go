package logic

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/conf"
	"github.com/golang-jwt/jwt/v5"
)

// ErrAuth is wrapped by every reason Authenticate refuses a connection.
var ErrAuth = errors.New("logic: auth refused")

// AuthConfig is the [auth] section: how logic verifies the auth body a
// client sends to a comet.
type AuthConfig struct {
	// Insecure accepts goim v2's plain JSON auth body and trusts the mid,
	// key and room it claims. For development only (the all-in-one config
	// sets it); logic logs a warning at start. Default false.
	Insecure bool `toml:"insecure"`
	// HMACKeyFile holds the HS256 secret (the file's bytes, trailing
	// newlines removed; at least 32 bytes). Default "" (HS256 off).
	HMACKeyFile string `toml:"hmac_key_file"`
	// PublicKeyFile is a PEM RSA or EC public key, for RS256 or ES256
	// tokens. Default "" (off). One of the two key files is required unless
	// insecure.
	PublicKeyFile string `toml:"public_key_file"`
	// Issuer, when set, must equal the token's iss. Default "".
	Issuer string `toml:"issuer"`
	// Audience, when set, must be in the token's aud. Default "".
	Audience string `toml:"audience"`
	// Leeway tolerates clock skew on exp, nbf and iat. Default "30s".
	Leeway conf.Duration `toml:"leeway"`
	// AnyRoom lets a signed token without a "rooms" claim join any room
	// (at auth and with op 12). Default false: such a token joins no
	// room. A token with a rooms claim is limited to it either way.
	// Insecure mode ignores it (any room, as goim v2).
	AnyRoom bool `toml:"any_room"`
}

// DefaultAuth returns the [auth] defaults.
func DefaultAuth() AuthConfig {
	return AuthConfig{Leeway: conf.Duration(30 * time.Second)}
}

// Validate records the section's problems in p.
func (c AuthConfig) Validate(p *conf.Problems) {
	if !c.Insecure {
		p.Check(c.HMACKeyFile != "" || c.PublicKeyFile != "", "",
			"set hmac_key_file or public_key_file to verify tokens (or insecure = true for development)")
	}
	p.Check(c.Leeway >= 0, "leeway", "must be >= 0, got %v", c.Leeway)
}

// Claims are what a connection token says. sub is the user id (decimal,
// > 0); exp is required. rooms lists the rooms the connection may join,
// at auth and later with op 12: each entry a room id (exact match), a
// room id prefix ending in "*" ("live://*": every live room) or "*" alone
// (any room); see protocol.CheckRoomPattern. Without a rooms claim the
// connection joins no room unless auth.any_room is set; "rooms": [] joins
// none.
type Claims struct {
	jwt.RegisteredClaims
	Rooms []string `json:"rooms,omitempty"`
}

// Identity is what logic grants a connection.
type Identity struct {
	Mid      int64
	Key      string // empty: logic generates one
	RoomID   string // "" or a valid room id (protocol.CheckRoomID)
	Platform string
	Accepts  []int32
	// Rooms are the patterns of the rooms the connection may join, when
	// RoomsLimited (ConnectReply.rooms and rooms_limited).
	Rooms        []string
	RoomsLimited bool
}

// Authenticator turns an auth body into an Identity.
type Authenticator struct {
	insecure bool
	anyRoom  bool
	parser   *jwt.Parser
	hmac     []byte
	pub      crypto.PublicKey // *rsa.PublicKey or *ecdsa.PublicKey
}

// NewAuthenticator loads the key files of cfg.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
	a := &Authenticator{insecure: cfg.Insecure, anyRoom: cfg.AnyRoom}
	var methods []string
	if cfg.HMACKeyFile != "" {
		b, err := os.ReadFile(cfg.HMACKeyFile)
		if err != nil {
			return nil, fmt.Errorf("logic: auth.hmac_key_file: %w", err)
		}
		a.hmac = bytes.TrimRight(b, "\r\n")
		if len(a.hmac) < 32 {
			return nil, fmt.Errorf("logic: auth.hmac_key_file: the secret has %d bytes, at least 32 needed", len(a.hmac))
		}
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if cfg.PublicKeyFile != "" {
		b, err := os.ReadFile(cfg.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("logic: auth.public_key_file: %w", err)
		}
		if k, err := jwt.ParseRSAPublicKeyFromPEM(b); err == nil {
			a.pub = k
			methods = append(methods, jwt.SigningMethodRS256.Alg())
		} else if k, err := jwt.ParseECPublicKeyFromPEM(b); err == nil {
			a.pub = k
			methods = append(methods, jwt.SigningMethodES256.Alg())
		} else {
			return nil, fmt.Errorf("logic: auth.public_key_file: not a PEM RSA or EC public key")
		}
	}
	if !a.insecure && len(methods) == 0 {
		return nil, errors.New("logic: auth: no key to verify tokens with (set a key file or insecure = true)")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods), // only the configured algorithms: no "none", no key confusion
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway.D()),
		jwt.WithIssuedAt(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

// Authenticate checks an auth frame body. A room_id that is not a valid
// room id is refused in both modes, wrapping protocol.ErrRoomID (the
// client's bug, like a body that is not the auth JSON). Signed mode: the
// body's token is verified, the user id comes only from its subject, the
// rooms claim (or auth.any_room) says which rooms the connection may join
// and so limits room_id, and the body's key is ignored (logic generates
// keys, so a client cannot take over another connection's key). Insecure
// mode trusts goim v2's plain JSON: any room, not limited.
func (a *Authenticator) Authenticate(body []byte) (Identity, error) {
	ab, err := protocol.ParseAuthBody(body)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrAuth, err)
	}
	if ab.RoomID != "" {
		if err := protocol.CheckRoomID(ab.RoomID); err != nil {
			return Identity{}, fmt.Errorf("%w: room_id: %w", ErrAuth, err)
		}
	}
	id := Identity{RoomID: ab.RoomID, Platform: ab.Platform, Accepts: ab.Accepts}
	if a.insecure {
		id.Mid, id.Key = ab.Mid, ab.Key
		return id, nil
	}
	if ab.Token == "" {
		return Identity{}, fmt.Errorf("%w: no token in the auth body", ErrAuth)
	}
	var claims Claims
	if _, err := a.parser.ParseWithClaims(ab.Token, &claims, a.key); err != nil {
		return Identity{}, fmt.Errorf("%w: token: %w", ErrAuth, err)
	}
	mid, err := strconv.ParseInt(claims.Subject, 10, 64)
	if err != nil || mid <= 0 {
		return Identity{}, fmt.Errorf("%w: token subject %q is not a user id > 0", ErrAuth, claims.Subject)
	}
	for i, p := range claims.Rooms {
		if err := protocol.CheckRoomPattern(p); err != nil {
			// Not wrapped: a bad claim is a refused token, not a bad body.
			return Identity{}, fmt.Errorf("%w: token rooms claim entry %d: %v", ErrAuth, i, err)
		}
	}
	id.Rooms = claims.Rooms
	id.RoomsLimited = claims.Rooms != nil || !a.anyRoom
	if id.RoomID != "" && id.RoomsLimited && !protocol.RoomAllowed(id.Rooms, id.RoomID) {
		if claims.Rooms == nil {
			return Identity{}, fmt.Errorf("%w: room %q: the token has no rooms claim (and auth.any_room is off)", ErrAuth, id.RoomID)
		}
		return Identity{}, fmt.Errorf("%w: room %q is not in the token's rooms", ErrAuth, id.RoomID)
	}
	id.Mid = mid
	return id, nil
}

// key picks the verification key for the token's algorithm (the parser
// already refused any algorithm not configured).
func (a *Authenticator) key(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		return a.hmac, nil
	case *jwt.SigningMethodRSA:
		if k, ok := a.pub.(*rsa.PublicKey); ok {
			return k, nil
		}
	case *jwt.SigningMethodECDSA:
		if k, ok := a.pub.(*ecdsa.PublicKey); ok {
			return k, nil
		}
	}
	return nil, fmt.Errorf("no key for %s", t.Method.Alg())
}

// NewKey returns a fresh connection key: a random UUID (version 4), as
// goim v2 generated.
func NewKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
