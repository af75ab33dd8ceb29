package client

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

// Nodes is what logic's /goim/nodes/weighted tells a client: the comets to
// connect to, best first, per transport, and how to heartbeat and back
// off.
type Nodes struct {
	// Domain is the answer's domain (informational).
	Domain string
	// TCP, WS and WSS are the comet addresses ("host:port") of each
	// transport: every node listed with the answer's tcp_port, ws_port or
	// wss_port; nil when the answer has no such port. Logic advertises no
	// port for TCP over TLS.
	TCP, WS, WSS []string
	// Heartbeat is the period the comet expects heartbeats at (the
	// answer's "heartbeat" in seconds; 0 when absent or absurd).
	Heartbeat time.Duration
	// HeartbeatMax is how many periods the comet waits without a
	// heartbeat before it closes the connection ("heartbeat_max").
	HeartbeatMax int
	// Backoff is the answer's backoff hint, normalized (see
	// Backoff.Normalize): DefaultBackoff when the answer has none, and
	// DefaultBackoff's delay in place of a negative or absurd one.
	Backoff Backoff
}

// Addrs returns the addresses of transport tr (nil for TLS, which logic
// does not advertise, or an unknown transport).
func (n Nodes) Addrs(tr Transport) []string {
	switch tr {
	case TCP, "":
		return n.TCP
	case WS:
		return n.WS
	case WSS:
		return n.WSS
	}
	return nil
}

// maxNodesAnswer bounds the nodes answer read.
const maxNodesAnswer = 1 << 20

// FetchNodes asks logic at api (its HTTP base URL, "http://host:port")
// for the comets of platform (GET /goim/nodes/weighted?platform=), within
// 10 s or ctx's deadline if sooner. hc nil is http.DefaultClient. An
// error answer, or one listing no node, is a *NodesError; a failed request
// is wrapped with context.
func FetchNodes(ctx context.Context, hc *http.Client, api, platform string) (Nodes, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	u := strings.TrimSuffix(api, "/") + "/goim/nodes/weighted?" + url.Values{"platform": {platform}}.Encode()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Nodes{}, fmt.Errorf("client: nodes: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Nodes{}, fmt.Errorf("client: nodes: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxNodesAnswer))
	if err != nil {
		return Nodes{}, fmt.Errorf("client: nodes: %d: %w", resp.StatusCode, err)
	}
	var env struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    struct {
			Domain       string   `json:"domain"`
			TCPPort      int      `json:"tcp_port"`
			WSPort       int      `json:"ws_port"`
			WSSPort      int      `json:"wss_port"`
			Heartbeat    float64  `json:"heartbeat"`
			HeartbeatMax int      `json:"heartbeat_max"`
			Nodes        []string `json:"nodes"`
			Backoff      *struct {
				MaxDelay  float64 `json:"max_delay"`
				BaseDelay float64 `json:"base_delay"`
				Factor    float64 `json:"factor"`
				Jitter    float64 `json:"jitter"`
			} `json:"backoff"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return Nodes{}, &NodesError{Status: resp.StatusCode, Message: fmt.Sprintf("answer is not JSON (%v): %.200q", err, b)}
	}
	if resp.StatusCode != http.StatusOK || env.Code != 0 {
		return Nodes{}, &NodesError{Status: resp.StatusCode, Code: env.Code, Message: env.Message}
	}
	d := env.Data
	if len(d.Nodes) == 0 {
		return Nodes{}, &NodesError{Status: resp.StatusCode, Message: "no node in the answer"}
	}
	out := Nodes{
		Domain:       d.Domain,
		TCP:          addrs(d.Nodes, d.TCPPort),
		WS:           addrs(d.Nodes, d.WSPort),
		WSS:          addrs(d.Nodes, d.WSSPort),
		Heartbeat:    max(seconds(d.Heartbeat), 0),
		HeartbeatMax: max(d.HeartbeatMax, 0),
		Backoff:      DefaultBackoff,
	}
	if bo := d.Backoff; bo != nil {
		b := Backoff{Base: seconds(bo.BaseDelay), Max: seconds(bo.MaxDelay), Factor: bo.Factor, Jitter: bo.Jitter}
		if b.Base < 0 {
			b.Base = DefaultBackoff.Base
		}
		if b.Max < 0 {
			b.Max = DefaultBackoff.Max
		}
		out.Backoff = b.Normalize()
	}
	return out, nil
}

// addrs joins each host with port; nil for a port outside 1..65535.
func addrs(hosts []string, port int) []string {
	if port <= 0 || port > 65535 {
		return nil
	}
	out := make([]string, 0, len(hosts))
	p := strconv.Itoa(port)
	for _, h := range hosts {
		out = append(out, net.JoinHostPort(h, p))
	}
	return out
}

// seconds converts a hint in seconds to a duration, -1 for a negative or
// absurd one (NaN, over a day).
func seconds(s float64) time.Duration {
	if !(s >= 0 && s <= maxDelay.Seconds()) {
		return -1
	}
	return time.Duration(s * float64(time.Second))
}
