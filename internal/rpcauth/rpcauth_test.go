package rpcauth

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/goim/goim/internal/conf"
	"github.com/goim/goim/internal/secret"
	"github.com/goim/goim/internal/testkit"
)

// Secrets of the tests: 32 bytes and more.
var (
	secretA = strings.Repeat("a", 32)
	secretB = "b-" + strings.Repeat("0123456789", 4)
	secretC = strings.Repeat("c", 40) // never accepted
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rpc.secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	t.Setenv(EnvSecret, "")
	file := writeFile(t, "# rotation: new one first\n"+secretB+"\n\n"+secretA+"\n")
	k, err := Config{SecretFile: file}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if k.send != secretB || k.Accepted() != 2 || k.Source() != secret.SourceFile || k.Insecure() {
		t.Fatalf("file: send %q, %d accepted, from %s, insecure %v", k.send, k.Accepted(), k.Source(), k.Insecure())
	}
	if !k.valid([]string{"Bearer " + secretA}) || !k.valid([]string{"bearer " + secretB}) || k.valid([]string{"Bearer " + secretC}) {
		t.Fatal("file: every line must be accepted, and nothing else")
	}

	// The variable wins over the file; secrets in code win over both.
	t.Setenv(EnvSecret, secretC+", "+secretA)
	if k, err = (Config{SecretFile: file}).Load(); err != nil || k.send != secretC || k.Accepted() != 2 || k.Source() != secret.SourceEnv {
		t.Fatalf("env: %v, %+v", err, k)
	}
	if k, err = (Config{SecretFile: file, Secrets: []string{secretA}}).Load(); err != nil || k.send != secretA || k.Accepted() != 1 ||
		k.Source() != secret.SourceCode {
		t.Fatalf("code: %v, %+v", err, k)
	}
	t.Setenv(EnvSecret, " \n")
	if k, err = (Config{SecretFile: file}).Load(); err != nil || k.Source() != secret.SourceFile {
		t.Fatalf("a blank variable counts as unset: %v, %+v", err, k)
	}
}

func TestLoadRefuses(t *testing.T) {
	t.Setenv(EnvSecret, "")
	cases := []struct {
		name string
		cfg  Config
		want string // in the error
	}{
		{name: "nothing", cfg: Config{}, want: "no internal gRPC secret"},
		{name: "short", cfg: Config{SecretFile: writeFile(t, secretA+"\nshort\n")}, want: "entry 2: the secret has 5 bytes"},
		{name: "space", cfg: Config{Secrets: []string{secretA + " x"}}, want: "not printable ASCII"},
		{name: "control", cfg: Config{Secrets: []string{secretA + "\x00"}}, want: "not printable ASCII"},
		{name: "missing file", cfg: Config{SecretFile: filepath.Join(t.TempDir(), "absent")}, want: "rpc.secret_file"},
		{name: "comments only", cfg: Config{SecretFile: writeFile(t, "# nothing\n")}, want: "rpc.secret_file"},
		{name: "short even when insecure", cfg: Config{Insecure: true, Secrets: []string{"x"}}, want: "at least 32"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.Load()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secretA) {
				t.Fatalf("the error shows a secret: %v", err)
			}
		})
	}
	if _, err := (Config{}).Load(); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("no secret: %v, want ErrNoSecret", err)
	}
	k, err := Config{Insecure: true}.Load()
	if err != nil || k.Sends() || k.Credentials() != nil || len(k.DialOptions()) != 0 {
		t.Fatalf("insecure without a secret: %v, %+v", err, k)
	}
}

func TestValidate(t *testing.T) {
	t.Setenv(EnvSecret, "")
	check := func(c Config) error {
		var p conf.Problems
		c.Validate(p.Sub("rpc"))
		return p.Err()
	}
	testkit.WantProblems(t, check(Config{}), []string{"rpc.secret_file"})
	testkit.WantProblems(t, check(Config{Insecure: true}), nil)
	testkit.WantProblems(t, check(Config{SecretFile: "/etc/goim/rpc.secret"}), nil)
	testkit.WantProblems(t, check(Config{Secrets: []string{secretA}}), nil)
	t.Setenv(EnvSecret, secretA)
	testkit.WantProblems(t, check(Config{}), nil)
}

func TestGenerate(t *testing.T) {
	a, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate()
	if a == b || checkSecret(a) != nil {
		t.Fatalf("Generate gave %q and %q", a, b)
	}
}

// server serves the gRPC health service (one unary and one streaming
// method) with keys' options on 127.0.0.1 until the test ends.
func server(t *testing.T, cfg Config) (addr string, unauth prometheus.Counter) {
	t.Helper()
	k, err := cfg.Load()
	if err != nil {
		t.Fatal(err)
	}
	unauth, err = NewCounter(prometheus.NewRegistry(), "test")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(k.ServerOptions(unauth, testkit.Logger(t))...)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(ln)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return ln.Addr().String(), unauth
}

// client dials addr sending the secrets of cfg (nothing for the zero
// Config with insecure set).
func client(t *testing.T, addr string, cfg Config) healthpb.HealthClient {
	t.Helper()
	k, err := cfg.Load()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(addr, append(k.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return healthpb.NewHealthClient(cc)
}

// call makes one unary and one streaming call and returns their codes.
func call(t *testing.T, c healthpb.HealthClient, ctx context.Context) (unary, stream codes.Code) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
	unary = status.Code(err)
	w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	return unary, status.Code(err)
}

func TestServer(t *testing.T) {
	t.Setenv(EnvSecret, "")
	// Rotation: the server accepts the old and the new secret.
	addr, unauth := server(t, Config{SecretFile: writeFile(t, secretB+"\n"+secretA+"\n")})
	cases := []struct {
		name    string
		client  Config
		ctx     context.Context
		want    codes.Code
		counted float64 // calls counted in unauth by this case
	}{
		{name: "no secret", client: Config{Insecure: true}, ctx: context.Background(), want: codes.Unauthenticated, counted: 2},
		{name: "wrong secret", client: Config{Secrets: []string{secretC}}, ctx: context.Background(), want: codes.Unauthenticated, counted: 2},
		{name: "not bearer", client: Config{Insecure: true},
			ctx: metadata.AppendToOutgoingContext(context.Background(), "authorization", "Basic "+secretA), want: codes.Unauthenticated, counted: 2},
		{name: "prefix of a secret", client: Config{Insecure: true},
			ctx: metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+secretA[:31]), want: codes.Unauthenticated, counted: 2},
		{name: "current secret", client: Config{Secrets: []string{secretB}}, ctx: context.Background(), want: codes.OK},
		{name: "previous secret", client: Config{Secrets: []string{secretA, secretC}}, ctx: context.Background(), want: codes.OK},
		{name: "lower-case scheme", client: Config{Insecure: true},
			ctx: metadata.AppendToOutgoingContext(context.Background(), "authorization", "bearer "+secretB), want: codes.OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(unauth)
			unary, stream := call(t, client(t, addr, tc.client), tc.ctx)
			if unary != tc.want || stream != tc.want {
				t.Fatalf("unary %v, stream %v; want %v", unary, stream, tc.want)
			}
			if got := testutil.ToFloat64(unauth) - before; got != tc.counted {
				t.Fatalf("counted %v calls, want %v", got, tc.counted)
			}
		})
	}
}

func TestServerInsecure(t *testing.T) {
	t.Setenv(EnvSecret, "")
	// Rolling upgrade: a secret is configured but not required; calls
	// without it are served and counted.
	addr, unauth := server(t, Config{Insecure: true, Secrets: []string{secretA}})
	if u, s := call(t, client(t, addr, Config{Insecure: true}), context.Background()); u != codes.OK || s != codes.OK {
		t.Fatalf("no secret, insecure server: %v %v", u, s)
	}
	if got := testutil.ToFloat64(unauth); got != 2 {
		t.Fatalf("counted %v calls, want 2", got)
	}
	if u, s := call(t, client(t, addr, Config{Secrets: []string{secretA}}), context.Background()); u != codes.OK || s != codes.OK {
		t.Fatalf("right secret, insecure server: %v %v", u, s)
	}
	if got := testutil.ToFloat64(unauth); got != 2 {
		t.Fatalf("a call with the secret was counted: %v", got)
	}

	// No secret at all: nothing to check, nothing counted.
	addr, unauth = server(t, Config{Insecure: true})
	if u, s := call(t, client(t, addr, Config{Secrets: []string{secretC}}), context.Background()); u != codes.OK || s != codes.OK {
		t.Fatalf("insecure server without a secret: %v %v", u, s)
	}
	if got := testutil.ToFloat64(unauth); got != 0 {
		t.Fatalf("counted %v calls, want 0", got)
	}
}

func TestUnaryServerInterceptor(t *testing.T) {
	k, err := Config{Secrets: []string{secretA}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	unauth, _ := NewCounter(prometheus.NewRegistry(), "test")
	icpt := k.UnaryServerInterceptor(unauth, nil)
	info := &grpc.UnaryServerInfo{FullMethod: "/x.Y/Z"}
	ran := false
	h := func(context.Context, any) (any, error) { ran = true; return nil, nil }
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+secretA))
	if _, err := icpt(ctx, nil, info, h); err != nil || !ran {
		t.Fatalf("right secret: %v, handler ran %v", err, ran)
	}
	ran = false
	_, err = icpt(context.Background(), nil, info, h)
	if status.Code(err) != codes.Unauthenticated || ran || !Refused(err) {
		t.Fatalf("no metadata: %v, handler ran %v", err, ran)
	}
	if Refused(status.Error(codes.Unauthenticated, "bad token")) || Refused(nil) {
		t.Fatal("Refused must only match the secret's refusal")
	}
	if testutil.ToFloat64(unauth) != 1 {
		t.Fatal("the refusal was not counted")
	}
}

// FuzzValid: any authorization value is accepted only when it is the
// scheme (any case) and exactly an accepted secret; nothing panics.
func FuzzValid(f *testing.F) {
	k, err := Config{Secrets: []string{secretA, secretB}}.Load()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"Bearer " + secretA, "bearer " + secretB, "Bearer ", "Bearer", "", "Basic " + secretA, "BEARER " + secretA + "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := k.valid([]string{v})
		want := len(v) > len(scheme) && strings.EqualFold(v[:len(scheme)], scheme) &&
			(v[len(scheme):] == secretA || v[len(scheme):] == secretB)
		if got != want {
			t.Fatalf("valid(%q) = %v, want %v", v, got, want)
		}
	})
}
