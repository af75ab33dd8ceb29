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
	u := strings.TrimSuffix(api, "/") + "/goim/nodes/weighted?" + url.Values{"platform": {platform}}.Encode()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("nodes: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("nodes: %w", err)
	}
	var env struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    struct {
			TCPPort int      `json:"tcp_port"`
			WSPort  int      `json:"ws_port"`
			Nodes   []string `json:"nodes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("nodes: %d %q: %w", resp.StatusCode, b, err)
	}
	if resp.StatusCode != http.StatusOK || env.Code != 0 {
		return nil, fmt.Errorf("nodes: %d code %d: %s", resp.StatusCode, env.Code, env.Message)
	}
	port := env.Data.TCPPort
	if transport == TransportWS {
		port = env.Data.WSPort
	}
	if port <= 0 || len(env.Data.Nodes) == 0 {
		return nil, fmt.Errorf("nodes: no %s port or no node in %s", transport, b)
	}
	out := make([]string, 0, len(env.Data.Nodes))
	for _, n := range env.Data.Nodes {
		out = append(out, net.JoinHostPort(n, strconv.Itoa(port)))
	}
	return out, nil
}
