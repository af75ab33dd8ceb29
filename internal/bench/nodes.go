package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Nodes is what logic's /goim/nodes/weighted tells a client: where to
// connect, best first, and how to back off between reconnect attempts.
type Nodes struct {
	// Addrs are the comet addresses of the transport: every node listed,
	// with the answer's tcp_port or ws_port.
	Addrs []string
	// Backoff is the answer's backoff hint.
	Backoff Backoff
}

// ResolveNodes asks logic where clients should connect (GET
// /goim/nodes/weighted, once) and returns the comet addresses of the
// transport: every node listed, with the answer's tcp_port or ws_port.
// One call for the whole run, so logic counts it as one client; the
// connections are then spread round-robin over the nodes it named.
func ResolveNodes(ctx context.Context, api, transport, platform string, allowRemote bool) ([]string, error) {
	if !allowRemote {
		if err := checkURL(ctx, api); err != nil {
			return nil, fmt.Errorf("api %w", err)
		}
	}
	n, err := FetchNodes(ctx, http.DefaultClient, api, transport, platform)
	if err != nil {
		return nil, err
	}
	return n.Addrs, nil
}

// FetchNodes asks logic at api (an HTTP base URL) for the nodes of
// transport and platform and their backoff hint, within 10 s. It checks
// nothing about the target (see ResolveNodes).
func FetchNodes(ctx context.Context, client *http.Client, api, transport, platform string) (Nodes, error) {
	u := strings.TrimSuffix(api, "/") + "/goim/nodes/weighted?" + url.Values{"platform": {platform}}.Encode()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Nodes{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return Nodes{}, fmt.Errorf("nodes: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Nodes{}, fmt.Errorf("nodes: %w", err)
	}
	var env struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    struct {
			TCPPort int      `json:"tcp_port"`
			WSPort  int      `json:"ws_port"`
			Nodes   []string `json:"nodes"`
			Backoff struct {
				MaxDelay  float64 `json:"max_delay"`
				BaseDelay float64 `json:"base_delay"`
				Factor    float64 `json:"factor"`
				Jitter    float64 `json:"jitter"`
			} `json:"backoff"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return Nodes{}, fmt.Errorf("nodes: %d %q: %w", resp.StatusCode, b, err)
	}
	if resp.StatusCode != http.StatusOK || env.Code != 0 {
		return Nodes{}, fmt.Errorf("nodes: %d code %d: %s", resp.StatusCode, env.Code, env.Message)
	}
	port := env.Data.TCPPort
	if transport == TransportWS {
		port = env.Data.WSPort
	}
	if port <= 0 || len(env.Data.Nodes) == 0 {
		return Nodes{}, fmt.Errorf("nodes: no %s port or no node in %s", transport, b)
	}
	out := Nodes{Addrs: make([]string, 0, len(env.Data.Nodes))}
	for _, n := range env.Data.Nodes {
		out.Addrs = append(out.Addrs, net.JoinHostPort(n, strconv.Itoa(port)))
	}
	bo := env.Data.Backoff
	out.Backoff = Backoff{
		Base:   seconds(bo.BaseDelay),
		Max:    seconds(bo.MaxDelay),
		Factor: bo.Factor,
		Jitter: bo.Jitter,
	}.orDefault()
	return out, nil
}

// seconds converts a hint in seconds to a duration, 0 for a negative or
// absurd one (over a day).
func seconds(s float64) time.Duration {
	if !(s >= 0 && s <= 86400) { // NaN too
		return 0
	}
	return time.Duration(s * float64(time.Second))
}
