package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
)

// The push endpoints: parameters from the query, the message from the body,
// then one service call. Code 0 means Kafka acknowledged the push (or,
// for keys and mids, that none of the targets is online); its data is the
// push's id, {"msg_id":"<32 hex digits>"}.

func (s *Server) pushKeys(c *gin.Context) int {
	q, err := parseQuery(c.Request.URL.RawQuery)
	if err != nil {
		return s.badRequest(c, err)
	}
	op, keys, err := parsePushKeys(q, s.cfg.MaxKeys)
	if err != nil {
		return s.badRequest(c, err)
	}
	msg, err := s.readBody(c)
	if err != nil {
		return s.badRequest(c, err)
	}
	id, err := s.svc.PushKeys(c.Request.Context(), op, keys, msg)
	return s.pushed(c, "keys", id, err)
}

func (s *Server) pushMids(c *gin.Context) int {
	q, err := parseQuery(c.Request.URL.RawQuery)
	if err != nil {
		return s.badRequest(c, err)
	}
	op, mids, err := parsePushMids(q, s.cfg.MaxMids)
	if err != nil {
		return s.badRequest(c, err)
	}
	msg, err := s.readBody(c)
	if err != nil {
		return s.badRequest(c, err)
	}
	id, err := s.svc.PushMids(c.Request.Context(), op, mids, msg)
	return s.pushed(c, "mids", id, err)
}

func (s *Server) pushRoom(c *gin.Context) int {
	q, err := parseQuery(c.Request.URL.RawQuery)
	if err != nil {
		return s.badRequest(c, err)
	}
	op, room, err := parsePushRoom(q)
	if err != nil {
		return s.badRequest(c, err)
	}
	msg, err := s.readBody(c)
	if err != nil {
		return s.badRequest(c, err)
	}
	id, err := s.svc.PushRoom(c.Request.Context(), op, room, msg)
	return s.pushed(c, "room", id, err)
}

func (s *Server) pushAll(c *gin.Context) int {
	q, err := parseQuery(c.Request.URL.RawQuery)
	if err != nil {
		return s.badRequest(c, err)
	}
	op, speed, err := parsePushAll(q)
	if err != nil {
		return s.badRequest(c, err)
	}
	msg, err := s.readBody(c)
	if err != nil {
		return s.badRequest(c, err)
	}
	id, err := s.svc.PushAll(c.Request.Context(), op, speed, msg)
	return s.pushed(c, "all", id, err)
}

// readBody returns the request body, the message to push, byte for byte.
// A body over Config.MaxBody is rejected without reading it all: at once
// when its Content-Length says so, else after MaxBody+1 bytes; the
// connection is then closed rather than drained. An empty body is
// rejected. The returned slice is the service's to keep.
func (s *Server) readBody(c *gin.Context) ([]byte, error) {
	r := c.Request
	limit := int64(s.cfg.MaxBody)
	if r.ContentLength > limit {
		closeAfter(c.Writer)
		return nil, &paramError{param: "body", why: strconv.FormatInt(r.ContentLength, 10) +
			" bytes exceeds the limit of " + strconv.FormatInt(limit, 10)}
	}
	if r.Body == nil || r.ContentLength == 0 {
		return nil, &paramError{param: "body", why: "empty message"}
	}
	var (
		msg []byte
		err error
	)
	if r.ContentLength > 0 {
		// net/http stops the body at Content-Length, so this reads it all.
		msg = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, msg)
	} else { // length unknown (chunked)
		msg, err = io.ReadAll(io.LimitReader(r.Body, limit+1))
	}
	if err != nil {
		closeAfter(c.Writer)
		return nil, &paramError{param: "body", why: "read: " + err.Error()}
	}
	switch {
	case int64(len(msg)) > limit:
		closeAfter(c.Writer)
		return nil, &paramError{param: "body", why: "exceeds the limit of " + strconv.FormatInt(limit, 10) + " bytes"}
	case len(msg) == 0:
		return nil, &paramError{param: "body", why: "empty message"}
	}
	s.metrics.bodyBytes.Observe(float64(len(msg)))
	return msg, nil
}

// pushFailed is the warning of a push the service failed.
const pushFailed = "httpapi: push failed"

// pushed answers a push with the service's result: code 0 with data
// {"msg_id":id}, or HTTP 500 -500 with the error's text (which names the
// cause: Redis, Kafka, a timeout) and no data. A push whose caller went
// away is logged at debug level only.
func (s *Server) pushed(c *gin.Context, kind, id string, err error) int {
	if err == nil {
		if b, ok := pushedBody(id); ok {
			writeBody(c.Writer, http.StatusOK, b)
			return CodeOK
		}
		return s.ok(c, pushData{MsgID: id})
	}
	ctx := c.Request.Context()
	if ctx.Err() != nil { // the caller hung up, or Shutdown ran out of time
		s.log.LogAttrs(ctx, slog.LevelDebug, "httpapi: push abandoned by the caller",
			slog.String("kind", kind), slog.Any("err", err))
	} else if ok, suppressed := s.warns.Allow(pushFailed); ok {
		s.log.LogAttrs(ctx, slog.LevelWarn, pushFailed,
			slog.String("kind", kind), slog.Any("err", err), slog.Int64("suppressed", int64(suppressed)))
	}
	return s.fail(c, http.StatusInternalServerError, CodeServerError, err.Error())
}
