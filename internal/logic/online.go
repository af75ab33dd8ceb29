package logic

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	logicpb "github.com/goim/goim/api/logic"
	"github.com/goim/goim/internal/logic/dao"
	"github.com/goim/goim/internal/logic/httpapi"
)

// online holds the comets' latest reports and the cluster totals computed
// from them.
//
// Staleness: a comet reports every comet logic.report_interval (5 s); every
// logic re-reads all reports from Redis every online.refresh (5 s) and
// recomputes the room totals then. So /goim/online/* lags the comets by at
// most report_interval + refresh (10 s by default, plus a Redis round
// trip). A report this logic receives itself replaces that comet's load and
// draining state at once (nodes and /online/total see it immediately);
// other logic instances see it at their next refresh. A comet that stops
// reporting drops out after redis.online_ttl (30 s).
type online struct {
	ttl time.Duration

	mu      sync.RWMutex
	servers map[string]dao.OnlineReport // live reports by server; guarded by mu
	rooms   map[string]int32            // room totals at the last refresh; guarded by mu
	byType  map[string][]httpapi.RoomCount
	// byType holds each room type's rooms sorted for /online/top, built at
	// refresh; guarded by mu.
}

func newOnline(ttl time.Duration) *online {
	return &online{
		ttl:     ttl,
		servers: map[string]dao.OnlineReport{},
		rooms:   map[string]int32{},
		byType:  map[string][]httpapi.RoomCount{},
	}
}

// splitRoom splits "type://id"; ok is false for a room without "://".
func splitRoom(room string) (typ, id string, ok bool) {
	return strings.Cut(room, "://")
}

// replace installs a fresh set of reports (from Redis) and recomputes the
// totals.
func (o *online) replace(reports map[string]dao.OnlineReport) {
	rooms := make(map[string]int32)
	for _, r := range reports {
		for room, n := range r.Rooms {
			rooms[room] += n
		}
	}
	byType := make(map[string][]httpapi.RoomCount)
	for room, n := range rooms {
		if typ, id, ok := splitRoom(room); ok {
			byType[typ] = append(byType[typ], httpapi.RoomCount{RoomID: id, Count: n})
		}
	}
	for _, list := range byType {
		slices.SortFunc(list, func(a, b httpapi.RoomCount) int {
			if c := cmp.Compare(b.Count, a.Count); c != 0 {
				return c
			}
			return strings.Compare(a.RoomID, b.RoomID)
		})
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	// A report received directly after the refresh read Redis is newer.
	for server, r := range o.servers {
		if fresh, ok := reports[server]; ok && r.Updated.After(fresh.Updated) {
			reports[server] = r
		}
	}
	o.servers, o.rooms, o.byType = reports, rooms, byType
}

// expire drops reports older than the TTL (used when a refresh fails, so a
// dead comet does not stay counted while Redis is unreachable).
func (o *online) expire(now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for server, r := range o.servers {
		if now.Sub(r.Updated) > o.ttl {
			delete(o.servers, server)
		}
	}
}

// report records a comet's report received by this logic and returns the
// cluster counts of the rooms in it: the last totals with this comet's
// share replaced by the count it just reported.
func (o *online) report(req *logicpb.OnlineReq) map[string]int32 {
	rooms := make(map[string]int32, len(req.GetRoomCount()))
	for room, n := range req.GetRoomCount() {
		if n > 0 {
			rooms[room] = n
		}
	}
	r := dao.OnlineReport{
		Server:    req.GetServer(),
		Rooms:     rooms,
		ConnCount: req.GetConnCount(),
		IPCount:   req.GetIpCount(),
		Draining:  req.GetDraining(),
		Updated:   time.Now(),
	}
	all := make(map[string]int32, len(rooms))
	o.mu.Lock()
	defer o.mu.Unlock()
	old := o.servers[r.Server].Rooms
	for room, n := range rooms {
		all[room] = max(o.rooms[room]-old[room], 0) + n
	}
	o.servers[r.Server] = r
	return all
}

// get returns server's latest report.
func (o *online) get(server string) (dao.OnlineReport, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	r, ok := o.servers[server]
	return r, ok
}

// reports returns the live reports, sorted by server.
func (o *online) reports() []dao.OnlineReport {
	o.mu.RLock()
	out := slices.Collect(maps.Values(o.servers))
	o.mu.RUnlock()
	slices.SortFunc(out, func(a, b dao.OnlineReport) int { return strings.Compare(a.Server, b.Server) })
	return out
}

// count is the number of comets with a live report.
func (o *online) count() int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return len(o.servers)
}

// top returns at most limit rooms of typ, highest count first (ties by id).
func (o *online) top(typ string, limit int) []httpapi.RoomCount {
	o.mu.RLock()
	defer o.mu.RUnlock()
	list := o.byType[typ]
	return slices.Clone(list[:min(limit, len(list))])
}

// room returns the count of each of rooms (ids of type typ); unknown rooms
// count 0.
func (o *online) room(typ string, rooms []string) map[string]int32 {
	out := make(map[string]int32, len(rooms))
	o.mu.RLock()
	defer o.mu.RUnlock()
	for _, id := range rooms {
		out[id] = o.rooms[typ+"://"+id]
	}
	return out
}

// total sums the connections and distinct IPs of the live comets,
// draining ones included (their clients are still connected). ip_count is
// a sum of per-comet distinct IPs, as in goim v2.
func (o *online) total() (conns, ips int64) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	for _, r := range o.servers {
		conns += r.ConnCount
		ips += r.IPCount
	}
	return conns, ips
}

// OnlineTop answers /goim/online/top.
func (s *Service) OnlineTop(typ string, limit int) []httpapi.RoomCount {
	return s.online.top(typ, limit)
}

// OnlineRoom answers /goim/online/room.
func (s *Service) OnlineRoom(typ string, rooms []string) map[string]int32 {
	return s.online.room(typ, rooms)
}

// OnlineTotal answers /goim/online/total.
func (s *Service) OnlineTotal() (connCount, ipCount int64) {
	return s.online.total()
}

// refreshFailed is the warning of a failed refresh of the online totals.
const refreshFailed = "logic: refreshing online counts failed; keeping the last ones"

// refreshOnline re-reads every comet's report from Redis. On failure the
// previous totals stay, less the reports that have outlived their TTL.
func (s *Service) refreshOnline(ctx context.Context) {
	reports, err := s.redis.LoadAllOnline(ctx)
	if err != nil {
		s.metrics.refreshErrors.Inc()
		s.metrics.redisErrors.WithLabelValues("load_online").Inc()
		s.warns.Fail(s.log, refreshFailed, "err", err)
		s.online.expire(time.Now())
		return
	}
	s.warns.Recover(s.log, refreshFailed, "logic: refreshing online counts works again")
	s.online.replace(reports)
	s.nodes.reset()
}

// onlineLoop refreshes the online totals every online.refresh until ctx
// ends.
func (s *Service) onlineLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Online.Refresh.D())
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.Online.Refresh.D())
		s.refreshOnline(rctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
