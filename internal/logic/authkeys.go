package logic

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/secret"
	"github.com/golang-jwt/jwt/v5"
)

// MaxAuthKeys is the most keys auth.keys_dir may hold: a rotation needs
// two or three; the bound keeps a directory pointed at by mistake from
// being read whole.
const MaxAuthKeys = 256

// MinRSABits is the smallest RSA verification key accepted.
const MinRSABits = 2048

// The JWT algorithms logic verifies: one per kind of key.
const (
	algHS256 = "HS256" // an HMAC secret
	algRS256 = "RS256" // an RSA public key
	algES256 = "ES256" // an EC P-256 public key
)

// verifyKey is one verification key and the one algorithm it verifies, so
// that a token signed with another algorithm is refused (no key
// confusion: an HS256 token "signed" with a public key's bytes).
type verifyKey struct {
	alg string // algHS256, algRS256 or algES256
	key any    // []byte, *rsa.PublicKey or *ecdsa.PublicKey
}

// keyset is one load of the verification keys. It is never changed once
// built: a reload builds a new one.
type keyset struct {
	parser *jwt.Parser // accepts only the algorithms of the keys below
	hmac   *verifyKey  // auth.hmac_key_file; nil when unset
	pub    *verifyKey  // auth.public_key_file; nil when unset
	dir    bool        // auth.keys_dir is set: a token's kid must name one of byKid
	byKid  map[string]verifyKey
}

// readKey reads the key file at path, the [auth] key field, and parses
// it; errors name the key.
func readKey[K any](field, path string, parse func([]byte) (K, error)) (K, error) {
	b, err := secret.ReadFile(path)
	if err != nil {
		var zero K
		return zero, fmt.Errorf("logic: auth.%s: %w", field, err)
	}
	k, err := parse(b)
	if err != nil {
		return k, fmt.Errorf("logic: auth.%s: %w", field, err)
	}
	return k, nil
}

// loadKeys reads the key files of cfg and builds their keyset. No key at
// all is an error unless cfg.Insecure.
func loadKeys(cfg AuthConfig) (*keyset, error) {
	ks := &keyset{dir: cfg.KeysDir != ""}
	if cfg.HMACKeyFile != "" {
		k, err := readKey("hmac_key_file", cfg.HMACKeyFile, hmacKey)
		if err != nil {
			return nil, err
		}
		ks.hmac = &k
	}
	if cfg.PublicKeyFile != "" {
		k, err := readKey("public_key_file", cfg.PublicKeyFile, publicKey)
		if err != nil {
			return nil, err
		}
		ks.pub = &k
	}
	if ks.dir {
		var err error
		if ks.byKid, err = loadKeysDir(cfg.KeysDir); err != nil {
			return nil, fmt.Errorf("logic: auth.keys_dir: %w", err)
		}
	}
	if ks.count() == 0 && !cfg.Insecure {
		return nil, errors.New("logic: auth: no key to verify tokens with (set a key file or keys_dir, or insecure = true)")
	}
	algs := ks.algs()
	if algs == nil {
		algs = []string{} // nil would allow every algorithm
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(algs), // only the loaded keys' algorithms: no "none"
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
	ks.parser = jwt.NewParser(opts...)
	return ks, nil
}

// loadKeysDir reads every key of dir, by kid.
func loadKeysDir(dir string) (map[string]verifyKey, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	keys := map[string]verifyKey{}
	files := map[string]string{} // kid -> file name, for the duplicate error
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue // editors' and Kubernetes' (..data) entries
		}
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path) // follows symbolic links (mounted secrets)
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		kid := strings.TrimSuffix(name, filepath.Ext(name))
		if err := protocol.CheckKey(kid); err != nil {
			return nil, fmt.Errorf("%s: the file name without its extension is the kid: %w", name, err)
		}
		if other, ok := files[kid]; ok {
			return nil, fmt.Errorf("%s and %s: both are kid %q", other, name, kid)
		}
		if len(keys) == MaxAuthKeys {
			return nil, fmt.Errorf("more than %d keys", MaxAuthKeys)
		}
		b, err := secret.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var k verifyKey
		if bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("-----BEGIN")) {
			k, err = publicKey(b)
		} else {
			k, err = hmacKey(b)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		keys[kid], files[kid] = k, name
	}
	return keys, nil
}

// hmacKey is an HS256 secret.
func hmacKey(b []byte) (verifyKey, error) {
	if len(b) < 32 {
		return verifyKey{}, fmt.Errorf("the secret has %d bytes, at least 32 needed", len(b))
	}
	return verifyKey{alg: algHS256, key: bytes.Clone(b)}, nil
}

// publicKey parses a PEM public key (PKIX "PUBLIC KEY", PKCS #1 "RSA
// PUBLIC KEY", or a certificate's key): RSA for RS256, EC P-256 for ES256.
// A private key is refused: logic never needs one.
func publicKey(b []byte) (verifyKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return verifyKey{}, errors.New("not a PEM RSA or EC public key")
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return verifyKey{}, fmt.Errorf("a %s: logic verifies with the public key only (openssl pkey -in FILE -pubout)", block.Type)
		}
		return verifyKey{}, fmt.Errorf("PEM block %q: not a public key", block.Type)
	}
	if err != nil {
		return verifyKey{}, fmt.Errorf("PEM %s: %w", block.Type, err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < MinRSABits {
			return verifyKey{}, fmt.Errorf("an RSA key of %d bits, at least %d needed", n, MinRSABits)
		}
		return verifyKey{alg: algRS256, key: k}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return verifyKey{}, fmt.Errorf("an EC key on %s: ES256 needs P-256", k.Curve.Params().Name)
		}
		return verifyKey{alg: algES256, key: k}, nil
	}
	return verifyKey{}, fmt.Errorf("a %T: not an RSA or EC public key", pub)
}

// count is the number of keys.
func (ks *keyset) count() int {
	n := len(ks.byKid)
	if ks.hmac != nil {
		n++
	}
	if ks.pub != nil {
		n++
	}
	return n
}

// kids are the key ids of keys_dir, sorted.
func (ks *keyset) kids() []string {
	kids := make([]string, 0, len(ks.byKid))
	for kid := range ks.byKid {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	return kids
}

// algs are the algorithms of the keys, sorted, each once.
func (ks *keyset) algs() []string {
	var algs []string
	for _, k := range ks.byKid {
		algs = append(algs, k.alg)
	}
	for _, k := range []*verifyKey{ks.hmac, ks.pub} {
		if k != nil {
			algs = append(algs, k.alg)
		}
	}
	slices.Sort(algs)
	return slices.Compact(algs)
}

// key picks the verification key of t (a jwt.Keyfunc; the parser already
// refused any algorithm no key has). With keys_dir set, a kid must name
// one of its keys; without, a kid is ignored, as before keys_dir existed.
// A token without kid (or with an ignored one) uses the key file of its
// algorithm, or the directory's only key when no file is set. The key's
// algorithm must be the token's.
func (ks *keyset) key(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	var k *verifyKey
	if raw, ok := t.Header["kid"]; ok && ks.dir {
		kid, ok := raw.(string)
		if !ok {
			return nil, errors.New("kid is not a string")
		}
		if protocol.CheckKey(kid) != nil {
			return nil, errors.New("kid is not a valid key id")
		}
		found, ok := ks.byKid[kid]
		if !ok {
			return nil, fmt.Errorf("no key with kid %q", kid)
		}
		k = &found
	} else {
		switch {
		case ks.hmac != nil && ks.hmac.alg == alg:
			k = ks.hmac
		case ks.pub != nil && ks.pub.alg == alg:
			k = ks.pub
		case ks.hmac == nil && ks.pub == nil && len(ks.byKid) == 1:
			for _, only := range ks.byKid {
				k = &only
			}
		default:
			return nil, fmt.Errorf("no %s key for a token without kid", alg)
		}
	}
	if k.alg != alg {
		return nil, fmt.Errorf("the key is for %s, the token is %s", k.alg, alg)
	}
	return k.key, nil
}

// fingerprint describes the key files of cfg as a reload check sees them:
// each file's path, size and modification time (or the error reading
// them). Two equal fingerprints mean nothing changed that a load would
// see, barring a same-size rewrite within the file system's time
// resolution.
func fingerprint(cfg AuthConfig) string {
	var b strings.Builder
	stat := func(path string) {
		fi, err := os.Stat(path)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", path, err)
			return
		}
		fmt.Fprintf(&b, "%s %d %d %v\n", path, fi.Size(), fi.ModTime().UnixNano(), fi.Mode())
	}
	for _, path := range []string{cfg.HMACKeyFile, cfg.PublicKeyFile} {
		if path != "" {
			stat(path)
		}
	}
	if cfg.KeysDir != "" {
		entries, err := os.ReadDir(cfg.KeysDir)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", cfg.KeysDir, err)
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				stat(filepath.Join(cfg.KeysDir, e.Name()))
			}
		}
	}
	return b.String()
}
