package logic

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
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
	// newlines removed; at least 32 bytes) that verifies tokens without a
	// kid. Default "" (off).
	HMACKeyFile string `toml:"hmac_key_file"`
	// PublicKeyFile is a PEM RSA (at least 2048 bits) or EC P-256 public
	// key, for RS256 or ES256 tokens without a kid. Default "" (off). One
	// of hmac_key_file, public_key_file and keys_dir is required unless
	// insecure.
	PublicKeyFile string `toml:"public_key_file"`
	// KeysDir is a directory of verification keys selected by the token
	// header's kid: each file is one key, its name without the extension
	// is the kid ("2025-01.pem" is kid "2025-01"; ASCII letters, digits and
	// - . _ ~ : @, at most 128 bytes). A file holds an HS256 secret (at
	// least 32 bytes) or a PEM public key as public_key_file does. Names
	// starting with "." and subdirectories are skipped; at most
	// MaxAuthKeys keys. With keys_dir set a token's kid must name one of
	// its keys; a token without kid uses hmac_key_file or public_key_file
	// (by its alg), or the directory's key when it holds only one and
	// neither file is set. Default "" (off).
	KeysDir string `toml:"keys_dir"`
	// ReloadInterval is how often logic checks the key files' sizes and
	// modification times, and reloads every key when one changed (as
	// SIGHUP does); a failed reload keeps the keys in use. 0 disables the
	// check (SIGHUP only). Default "30s".
	ReloadInterval conf.Duration `toml:"reload_interval"`
	// TokenKeys makes a token's "key" claim the connection's key, so a
	// backend that signs it can push to the connection with
	// /goim/push/keys. A second connection with the same key replaces the
	// first (which is closed). The claim must pass protocol.CheckKey. A
	// token without it gets a generated key. Default false: logic
	// generates every key and ignores the claim.
	TokenKeys bool `toml:"token_keys"`
	// ReplyKey puts the connection's key in the body of the auth reply
	// (op 8) as JSON, {"key":"..."}. Default false: an empty body, as
	// goim v2 clients expect.
	ReplyKey bool `toml:"reply_key"`
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
	return AuthConfig{Leeway: conf.Duration(30 * time.Second), ReloadInterval: conf.Duration(30 * time.Second)}
}

// Validate records the section's problems in p.
func (c AuthConfig) Validate(p *conf.Problems) {
	if !c.Insecure {
		p.Check(c.HMACKeyFile != "" || c.PublicKeyFile != "" || c.KeysDir != "", "",
			"set hmac_key_file, public_key_file or keys_dir to verify tokens (or insecure = true for development)")
	}
	p.Check(c.Leeway >= 0, "leeway", "must be >= 0, got %v", c.Leeway)
	p.Check(c.ReloadInterval == 0 || c.ReloadInterval.D() >= time.Second, "reload_interval",
		"must be 0 (off) or at least 1s, got %v", c.ReloadInterval)
}

// Claims are what a connection token says. sub is the user id (decimal,
// > 0); exp is required. rooms lists the rooms the connection may join,
// at auth and later with op 12: each entry a room id (exact match), a
// room id prefix ending in "*" ("live://*": every live room) or "*" alone
// (any room); see protocol.CheckRoomPattern. Without a rooms claim the
// connection joins no room unless auth.any_room is set; "rooms": [] joins
// none. key is the connection key, used only with auth.token_keys.
type Claims struct {
	jwt.RegisteredClaims
	Rooms []string `json:"rooms,omitempty"`
	Key   string   `json:"key,omitempty"`
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
	// Reliable: the auth body opted in to reliable delivery; Since is then
	// where the client said its view of each stream ended (user, key, room
	// order, the streams it named).
	Reliable bool
	Since    []*protocol.Position
}

// Authenticator turns an auth body into an Identity. Its verification
// keys can be reloaded while it serves (Reload).
type Authenticator struct {
	cfg  AuthConfig
	keys atomic.Pointer[keyset] // the keys in use, swapped whole by a reload

	loadMu sync.Mutex // serializes loads; guards tried
	tried  string     // the key files' fingerprint at the last load
}

// NewAuthenticator loads the key files of cfg.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
	a := &Authenticator{cfg: cfg}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload reads every key file of the config again and uses the new keys
// from the next token on. On error the keys in use stay and the error says
// which file is wrong.
func (a *Authenticator) Reload() error {
	a.loadMu.Lock()
	defer a.loadMu.Unlock()
	return a.load()
}

// ReloadIfChanged reloads the keys when a key file's size or modification
// time changed (or one appeared or went) since the last load, successful
// or not: a file that failed to load is retried once it changes again.
// reloaded says whether it tried.
func (a *Authenticator) ReloadIfChanged() (reloaded bool, err error) {
	a.loadMu.Lock()
	defer a.loadMu.Unlock()
	if fingerprint(a.cfg) == a.tried {
		return false, nil
	}
	return true, a.load()
}

// load reads the keys. a.loadMu is held.
func (a *Authenticator) load() error {
	a.tried = fingerprint(a.cfg) // before reading: a change while reading is seen next time
	ks, err := loadKeys(a.cfg)
	if err != nil {
		return err
	}
	a.keys.Store(ks)
	return nil
}

// Keys returns how many verification keys are in use and the kids among
// them (keys_dir's, sorted).
func (a *Authenticator) Keys() (n int, kids []string) {
	ks := a.keys.Load()
	return ks.count(), ks.kids()
}

// ReplyKey reports whether the auth reply carries the connection's key
// (auth.reply_key).
func (a *Authenticator) ReplyKey() bool { return a.cfg.ReplyKey }

// Authenticate checks an auth frame body. A room_id that is not a valid
// room id is refused in both modes, wrapping protocol.ErrRoomID (the
// client's bug, like a body that is not the auth JSON). Signed mode: the
// body's token is verified, the user id comes only from its subject, the
// rooms claim (or auth.any_room) says which rooms the connection may join
// and so limits room_id, and the body's key is ignored: the key is the
// token's key claim with auth.token_keys, else empty (logic generates
// one), so a client cannot take over a key no token of its own names.
// Insecure mode trusts goim v2's plain JSON: any room, not limited.
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
	id := Identity{RoomID: ab.RoomID, Platform: ab.Platform, Accepts: ab.Accepts, Reliable: ab.Reliable}
	if ab.Reliable {
		id.Since = ab.Since.Positions()
	}
	if a.cfg.Insecure {
		id.Mid, id.Key = ab.Mid, ab.Key
		return id, nil
	}
	if ab.Token == "" {
		return Identity{}, fmt.Errorf("%w: no token in the auth body", ErrAuth)
	}
	ks := a.keys.Load()
	var claims Claims
	if _, err := ks.parser.ParseWithClaims(ab.Token, &claims, ks.key); err != nil {
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
	if a.cfg.TokenKeys && claims.Key != "" {
		if err := protocol.CheckKey(claims.Key); err != nil {
			return Identity{}, fmt.Errorf("%w: token key claim: %v", ErrAuth, err)
		}
		id.Key = claims.Key
	}
	id.Rooms = claims.Rooms
	id.RoomsLimited = claims.Rooms != nil || !a.cfg.AnyRoom
	if id.RoomID != "" && id.RoomsLimited && !protocol.RoomAllowed(id.Rooms, id.RoomID) {
		if claims.Rooms == nil {
			return Identity{}, fmt.Errorf("%w: room %q: the token has no rooms claim (and auth.any_room is off)", ErrAuth, id.RoomID)
		}
		return Identity{}, fmt.Errorf("%w: room %q is not in the token's rooms", ErrAuth, id.RoomID)
	}
	id.Mid = mid
	return id, nil
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
