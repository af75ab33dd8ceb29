package logic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/api/protocol"
	"github.com/goim/goim/internal/logic/dao"
)

// Connect authenticates a connection's auth body for the comet req.Server
// and stores its session routing, with the comet's connection id
// (req.ConnId) when it sent one. The key is generated here unless the
// token names one (auth.token_keys) or the insecure mode's client did
// (goim v2 compatibility). A key in use is taken over: pushes by key go
// to the newer connection, and a comet closes an older connection with
// the same key (ReasonReplaced); one on another comet stays connected
// without the key's routing, as in goim v2. A refused body
// wraps ErrAuth; a Redis failure fails the connect (the client retries)
// rather than leave a connection no push can find.
//
// A body with "reliable": true gets a reply with reliable set, since (the
// positions the body named) and, with [stream] enabled, streams: after
// the session is written, its user stream (mid > 0), its key stream and,
// when its room is recoverable, the room's stream are opened (created
// when absent, TTL refreshed) and their states answered, in that order.
// Opening after the session write is what lets a comet that reads the
// streams after registering the connection miss no push. A failed open
// fails the connect. Other connections cost no more than before.
func (s *Service) Connect(ctx context.Context, req *logicpb.ConnectReq) (*logicpb.ConnectReply, error) {
	reply, err := s.admit(ctx, req)
	if err != nil {
		return nil, err
	}
	err = s.redis.AddSession(ctx, dao.Session{Mid: reply.Mid, Key: reply.Key, Server: req.GetServer(), ConnID: req.GetConnId()})
	if err == nil && reply.Reliable {
		if err := s.openStreams(ctx, []*logicpb.ConnectReply{reply}); err != nil {
			s.metrics.authError.Inc()
			return nil, fmt.Errorf("logic: connect: %w", err)
		}
	}
	return s.registered(reply, err)
}

// openStreams opens the streams of the reliable connections replies (see
// Connect), in one Redis round trip, and fills each reply's streams.
// With [stream] disabled it does nothing.
func (s *Service) openStreams(ctx context.Context, replies []*logicpb.ConnectReply) error {
	if !s.cfg.Stream.Enabled {
		return nil
	}
	refs := make([]dao.StreamRef, 0, 2*len(replies))
	owner := make([]int, 0, 2*len(replies)) // owner[j]: the reply of refs[j]
	for i, r := range replies {
		if r.Mid > 0 {
			refs = append(refs, dao.StreamRef{Stream: protocol.StreamUser, Mid: r.Mid})
			owner = append(owner, i)
		}
		refs = append(refs, dao.StreamRef{Stream: protocol.StreamKey, Key: r.Key})
		owner = append(owner, i)
		if r.RoomID != "" && s.cfg.Stream.recoverable(r.RoomID) {
			refs = append(refs, dao.StreamRef{Stream: protocol.StreamRoom, Room: r.RoomID})
			owner = append(owner, i)
		}
	}
	states, err := s.redis.OpenStreams(ctx, refs, s.cfg.Stream.userRetention(), s.cfg.Stream.roomRetention())
	if err != nil {
		s.metrics.redisErrors.WithLabelValues("open_streams").Inc()
		return err
	}
	for j, st := range states {
		r := replies[owner[j]]
		r.Streams = append(r.Streams, &protocol.Position{Stream: refs[j].Stream, Epoch: st.Epoch, Offset: st.Offset})
		s.metrics.streamOpenBy[refs[j].Stream].Inc()
	}
	return nil
}

// MaxConnectBatch is the most connections one ConnectBatch may carry.
const MaxConnectBatch = 1024

// ConnectBatch is Connect for each of reqs (a comet's gathered
// handshakes): errs[i] is what Connect would have returned for reqs[i],
// replies[i] its reply otherwise. The accepted connections' sessions are
// written together, in one Redis pipeline (dao.AddSessions): the comet
// batched them, logic does not gather them again; so are the streams of
// the reliable ones, after the sessions (a failure fails those
// connections).
func (s *Service) ConnectBatch(ctx context.Context, reqs []*logicpb.ConnectReq) (replies []*logicpb.ConnectReply, errs []error, err error) {
	if len(reqs) > MaxConnectBatch {
		return nil, nil, fmt.Errorf("%w: connect batch: %d connections, at most %d", ErrInvalidArgument, len(reqs), MaxConnectBatch)
	}
	replies = make([]*logicpb.ConnectReply, len(reqs))
	errs = make([]error, len(reqs))
	sessions := make([]dao.Session, 0, len(reqs))
	admitted := make([]int, 0, len(reqs))
	for i, req := range reqs {
		if replies[i], errs[i] = s.admit(ctx, req); errs[i] == nil {
			sessions = append(sessions, dao.Session{Mid: replies[i].Mid, Key: replies[i].Key, Server: req.GetServer(), ConnID: req.GetConnId()})
			admitted = append(admitted, i)
		}
	}
	stored := s.redis.AddSessions(ctx, sessions)
	var reliable []*logicpb.ConnectReply
	for j, e := range stored {
		if r := replies[admitted[j]]; e == nil && r.Reliable {
			reliable = append(reliable, r)
		}
	}
	var openErr error
	if len(reliable) > 0 {
		openErr = s.openStreams(ctx, reliable)
	}
	for j, e := range stored {
		i := admitted[j]
		if e == nil && openErr != nil && replies[i].Reliable {
			s.metrics.authError.Inc()
			replies[i], errs[i] = nil, fmt.Errorf("logic: connect: %w", openErr)
			continue
		}
		replies[i], errs[i] = s.registered(replies[i], e)
	}
	return replies, errs, nil
}

// admit checks a connection's request and auth body and returns its
// reply, key assigned; the session is not written yet.
func (s *Service) admit(ctx context.Context, req *logicpb.ConnectReq) (*logicpb.ConnectReply, error) {
	if req.GetServer() == "" {
		return nil, fmt.Errorf("%w: connect: empty server", ErrInvalidArgument)
	}
	id, err := s.auth.Authenticate(req.GetToken())
	if err != nil {
		s.metrics.authRejected.Inc()
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.Debug("logic: connect refused", "server", req.GetServer(), "err", err)
		}
		return nil, err
	}
	key := id.Key
	if key == "" {
		key = NewKey()
	}
	reply := &logicpb.ConnectReply{
		Mid:          id.Mid,
		Key:          key,
		RoomID:       id.RoomID,
		Accepts:      id.Accepts,
		Heartbeat:    s.session,
		Rooms:        id.Rooms,
		RoomsLimited: id.RoomsLimited,
		Reliable:     id.Reliable,
		Since:        id.Since,
	}
	if s.auth.ReplyKey() {
		reply.AuthReply = authReplyBody(key)
	}
	return reply, nil
}

// authReplyBody is the auth reply's body with auth.reply_key:
// {"key":"<key>"}. Clients must ignore fields they do not know (more may
// come).
func authReplyBody(key string) []byte {
	b, _ := json.Marshal(struct {
		Key string `json:"key"`
	}{key}) // a string always marshals
	return b
}

// registered finishes a connect once its session write returned err.
func (s *Service) registered(reply *logicpb.ConnectReply, err error) (*logicpb.ConnectReply, error) {
	if err != nil {
		s.metrics.authError.Inc()
		s.metrics.redisErrors.WithLabelValues("add_session").Inc()
		return nil, fmt.Errorf("logic: connect: %w", err)
	}
	s.metrics.authOK.Inc()
	return reply, nil
}

// Disconnect removes a connection's routing if it still belongs to it: it
// points at the calling comet and, when the comet sent the connection's
// id (req.ConnId), no newer connection took the key over. Has reports
// whether it did.
func (s *Service) Disconnect(ctx context.Context, req *logicpb.DisconnectReq) (*logicpb.DisconnectReply, error) {
	has, err := s.redis.DelSession(ctx, sessionOf(req))
	if err != nil {
		if !errors.Is(err, dao.ErrInvalidArgument) {
			s.metrics.redisErrors.WithLabelValues("del_session").Inc()
		}
		return nil, fmt.Errorf("logic: disconnect: %w", err)
	}
	return &logicpb.DisconnectReply{Has: has}, nil
}

// MaxDisconnectBatch is the most connections one DisconnectBatch may carry.
const MaxDisconnectBatch = 1024

// DisconnectBatch is Disconnect for each of reqs (a comet's gathered
// disconnects), in one Redis pipeline: has[i] answers reqs[i], errs[i] is
// set for a malformed request. err fails the whole batch (Redis down).
func (s *Service) DisconnectBatch(ctx context.Context, reqs []*logicpb.DisconnectReq) (has []bool, errs []error, err error) {
	if len(reqs) > MaxDisconnectBatch {
		return nil, nil, fmt.Errorf("%w: disconnect batch: %d connections, at most %d", ErrInvalidArgument, len(reqs), MaxDisconnectBatch)
	}
	sessions := make([]dao.Session, len(reqs))
	for i, req := range reqs {
		sessions[i] = sessionOf(req)
	}
	has, errs, err = s.redis.DelSessions(ctx, sessions)
	if err != nil {
		s.metrics.redisErrors.WithLabelValues("del_session").Inc()
		return nil, nil, fmt.Errorf("logic: disconnect batch: %w", err)
	}
	return has, errs, nil
}

// sessionOf is the session a DisconnectReq names.
func sessionOf(req *logicpb.DisconnectReq) dao.Session {
	return dao.Session{Mid: req.GetMid(), Key: req.GetKey(), Server: req.GetServer(), ConnID: req.GetConnId()}
}

// Heartbeat renews a connection's routing TTLs, re-adding the routing if
// it was lost (expired, or deleted by Redis restarting empty). The
// heartbeat of a connection whose key a newer connection took over
// (another req.ConnId in Redis) changes nothing.
func (s *Service) Heartbeat(ctx context.Context, req *logicpb.HeartbeatReq) (*logicpb.HeartbeatReply, error) {
	res, err := s.redis.RenewSession(ctx, dao.Session{Mid: req.GetMid(), Key: req.GetKey(), Server: req.GetServer(), ConnID: req.GetConnId()})
	if err != nil {
		s.metrics.redisErrors.WithLabelValues("renew_session").Inc()
		return nil, fmt.Errorf("logic: heartbeat: %w", err)
	}
	if res != dao.Renewed && s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug("logic: heartbeat", "result", res.String(), "server", req.GetServer(), "mid", req.GetMid(), "conn_id", req.GetConnId())
	}
	return &logicpb.HeartbeatReply{}, nil
}

// Receive takes an upstream frame a client sent (an op other than auth,
// heartbeat and room changes). It is counted, by op name for the protocol
// ops and as "other" for every other op (so clients cannot create
// series), and, at debug level, logged without its body; nothing else
// happens to it yet.
func (s *Service) Receive(ctx context.Context, req *logicpb.ReceiveReq) (*logicpb.ReceiveReply, error) {
	op := req.GetProto().GetOp()
	s.metrics.receivedOp(op).Inc()
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug("logic: upstream frame", "mid", req.GetMid(), "op", op, "bytes", len(req.GetProto().GetBody()))
	}
	return &logicpb.ReceiveReply{}, nil
}

// RenewOnline stores a comet's report (its room counts, load and draining
// state) and answers the cluster-wide counts of the rooms it reported.
func (s *Service) RenewOnline(ctx context.Context, req *logicpb.OnlineReq) (*logicpb.OnlineReply, error) {
	server := req.GetServer()
	if server == "" {
		return nil, fmt.Errorf("%w: renew online: empty server", ErrInvalidArgument)
	}
	if dropped := boundReport(req.GetRoomCount()); dropped > 0 {
		s.metrics.roomsDropped.Add(float64(dropped))
		s.warns.Fail(s.log, "logic: a comet reported invalid or too many rooms; dropped them",
			"err", fmt.Errorf("comet %q: %d of %d rooms dropped", server, dropped, dropped+len(req.GetRoomCount())))
	}
	epoch, err := s.redis.StoreOnline(ctx, server, req.GetRoomCount(), req.GetConnCount(), req.GetIpCount(), req.GetDraining())
	if err != nil {
		s.metrics.redisErrors.WithLabelValues("store_online").Inc()
		return nil, fmt.Errorf("logic: renew online: %w", err)
	}
	all := s.online.report(req)
	s.nodes.reported(server)
	return &logicpb.OnlineReply{AllRoomCount: all, Epoch: epoch}, nil
}

// maxReportRooms is the most rooms kept from one comet's online report: a
// comet's own bound on its rooms (comet limits.max_rooms, 100000 by
// default). It bounds what one report costs logic and Redis.
const maxReportRooms = 100000

// boundReport removes from rooms, in place, the entries RenewOnline does
// not keep: a room id protocol.CheckRoomID refuses, a count <= 0, and
// every room beyond maxReportRooms (which ones is unspecified: only a
// faulty or hostile comet reports that many). It returns how many it
// removed.
func boundReport(rooms map[string]int32) (dropped int) {
	kept := 0
	for id, n := range rooms {
		if n <= 0 || kept >= maxReportRooms || protocol.CheckRoomID(id) != nil {
			delete(rooms, id)
			dropped++
			continue
		}
		kept++
	}
	return dropped
}
