// Command goim-token mints a connection token: the JWT a client puts in
// the auth frame's "token" field, which logic verifies ([auth] in
// configs/logic.toml; claims in docs/protocol.md). It is for operators
// and tests; a production backend signs tokens itself, the same way.
//
//	goim-token -key /etc/goim/jwt-hmac.key -sub 42 -rooms 'live://*'
//	goim-token -key es256.pem -kid 2025-01 -sub 42 -rooms live://1000,chat://7 -exp 15m
//	goim-token -key rs256.pem -alg RS256 -sub 42 -conn-key phone-42 -iss goim -aud comet
//
// -key is an HS256 secret file (its bytes, trailing newlines removed, at
// least 32 bytes: what logic's hmac_key_file holds) or a PEM private key:
// RSA (at least 2048 bits) for RS256, EC P-256 for ES256. -alg defaults to
// the key's. The token is printed on stdout, followed by a newline.
package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/buildinfo"
	"github.com/goim/goim/internal/secret"
	"github.com/golang-jwt/jwt/v5"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "goim-token:", err)
		}
		os.Exit(1)
	}
}

// claims are the token's claims: logic's Claims (internal/logic/auth.go).
type claims struct {
	jwt.RegisteredClaims
	Rooms []string `json:"rooms,omitempty"`
	Key   string   `json:"key,omitempty"`
}

// minRSABits is logic's smallest RSA verification key.
const minRSABits = 2048

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("goim-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("key", "", "signing key file: an HS256 secret, or a PEM RSA or EC P-256 private key (required)")
	alg := fs.String("alg", "", "HS256, RS256 or ES256 (default: the key's)")
	sub := fs.String("sub", "", "the user id, decimal > 0 (required)")
	var rooms []string
	fs.Func("rooms", "comma-separated room patterns the connection may join: room ids, prefixes ending in * (live://*), or *; may be repeated (default: no rooms claim)", func(v string) error {
		for r := range strings.SplitSeq(v, ",") {
			if r = strings.TrimSpace(r); r != "" {
				rooms = append(rooms, r)
			}
		}
		return nil
	})
	exp := fs.Duration("exp", time.Hour, "lifetime: the token expires this long after now")
	var kid string
	fs.StringVar(&kid, "kid", "", "key id in the token header: the name, without extension, of the key's file in logic's auth.keys_dir")
	fs.StringVar(&kid, "key-id", "", "same as -kid")
	iss := fs.String("iss", "", "issuer claim (logic's auth.issuer)")
	aud := fs.String("aud", "", "audience claim (logic's auth.audience)")
	connKey := fs.String("conn-key", "", "the connection key claim \"key\" (used by logic with auth.token_keys = true)")
	version := buildinfo.AddFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if version.Print(stdout, "goim-token") {
		return nil
	}

	var c claims
	var problems []error
	switch mid, err := strconv.ParseInt(*sub, 10, 64); {
	case *sub == "":
		problems = append(problems, errors.New("-sub: required (the user id)"))
	case err != nil || mid <= 0:
		problems = append(problems, fmt.Errorf("-sub %q: not a user id (decimal, > 0)", *sub))
	default:
		c.Subject = *sub
	}
	for _, r := range rooms {
		if err := protocol.CheckRoomPattern(r); err != nil {
			problems = append(problems, fmt.Errorf("-rooms %q: %w", r, err))
		}
	}
	c.Rooms = rooms
	if *exp <= 0 {
		problems = append(problems, fmt.Errorf("-exp %v: must be > 0", *exp))
	}
	if kid != "" {
		if err := protocol.CheckKey(kid); err != nil {
			problems = append(problems, fmt.Errorf("-kid %q: %w", kid, err))
		}
	}
	if *connKey != "" {
		if err := protocol.CheckKey(*connKey); err != nil {
			problems = append(problems, fmt.Errorf("-conn-key %q: %w", *connKey, err))
		}
		c.Key = *connKey
	}
	method, key, err := signingKey(*keyFile, *alg)
	if err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return errors.Join(problems...)
	}

	now := time.Now()
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(*exp))
	c.Issuer = *iss
	if *aud != "" {
		c.Audience = jwt.ClaimStrings{*aud}
	}
	t := jwt.NewWithClaims(method, c)
	if kid != "" {
		t.Header["kid"] = kid
	}
	s, err := t.SignedString(key)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	_, err = fmt.Fprintln(stdout, s)
	return err
}

// signingKey reads the key file and returns the signing method (alg, or
// the key's when alg is empty) and the key to sign with.
func signingKey(path, alg string) (jwt.SigningMethod, any, error) {
	switch alg {
	case "", "HS256", "RS256", "ES256":
	default:
		return nil, nil, fmt.Errorf("-alg %q: not HS256, RS256 or ES256", alg)
	}
	if path == "" {
		return nil, nil, errors.New("-key: required (an HS256 secret file or a PEM private key)")
	}
	b, err := secret.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("-key: %w", err)
	}
	var method jwt.SigningMethod
	var key any
	if bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("-----BEGIN")) {
		priv, err := privateKey(b)
		if err != nil {
			return nil, nil, fmt.Errorf("-key %s: %w", path, err)
		}
		switch k := priv.(type) {
		case *rsa.PrivateKey:
			if n := k.N.BitLen(); n < minRSABits {
				return nil, nil, fmt.Errorf("-key %s: an RSA key of %d bits; logic needs at least %d", path, n, minRSABits)
			}
			method, key = jwt.SigningMethodRS256, k
		case *ecdsa.PrivateKey:
			if k.Curve != elliptic.P256() {
				return nil, nil, fmt.Errorf("-key %s: an EC key on %s; ES256 needs P-256", path, k.Curve.Params().Name)
			}
			method, key = jwt.SigningMethodES256, k
		default:
			return nil, nil, fmt.Errorf("-key %s: a %T: not an RSA or EC key", path, priv)
		}
	} else {
		if len(b) < 32 {
			return nil, nil, fmt.Errorf("-key %s: an HS256 secret of %d bytes; logic needs at least 32", path, len(b))
		}
		method, key = jwt.SigningMethodHS256, b
	}
	if alg != "" && alg != method.Alg() {
		return nil, nil, fmt.Errorf("-alg %s: the key in %s is for %s", alg, path, method.Alg())
	}
	return method, key, nil
}

// privateKey parses the first private key of a PEM file: PKCS #1 ("RSA
// PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY", after an optional "EC
// PARAMETERS" block) or PKCS #8 ("PRIVATE KEY"), as openssl writes them.
func privateKey(b []byte) (crypto.PrivateKey, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM private key in the file")
		}
		switch block.Type {
		case "EC PARAMETERS":
			continue
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(block.Bytes)
		case "PRIVATE KEY":
			return x509.ParsePKCS8PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("an encrypted private key: decrypt it first (openssl pkey -in FILE -out PLAIN)")
		case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
			return nil, fmt.Errorf("a %s: signing needs the private key (logic holds the public one)", strings.ToLower(block.Type))
		default:
			return nil, fmt.Errorf("PEM block %q: not a private key", block.Type)
		}
	}
}
