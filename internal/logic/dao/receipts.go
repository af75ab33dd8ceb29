package dao

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Delivery receipts (package receipts). Keys, after [redis] prefix:
//
//	rcpt_<msg_id>  hash  field = target ("user:<mid>", "key:<key>"),
//	                     value = "p <at> <deadline>" (pending since at,
//	                     until deadline), "f <at> <deadline>" (deferred:
//	                     as pending, the target had no connection when the
//	                     push was recorded, or, since at, job could not
//	                     reach its comet), "d <at>" (delivered at) or
//	                     "e <at>" (expired at its deadline); times in Unix
//	                     ms. TTL: the receipts' keep time, from the push
//	rcpt_due       zset  member = msg id, score = the earliest deadline
//	                     (Unix ms) of its pending targets: what the sweep
//	                     reads. TTL: the keep time, renewed by each push
//
// A msg id is 32 hex digits, so no record collides with rcpt_due. In
// cluster mode the record is rcpt_{<msg_id>} (its own slot) and the index
// {rcpt}rcpt_due; no script touches both, each operation is one round trip
// (one pipeline per master).
const (
	receiptPrefix  = "rcpt_"
	receiptDueName = "rcpt_due"
	receiptDueTag  = "{rcpt}"
)

// Receipt statuses as stored and answered.
const (
	ReceiptPending   = "pending"
	ReceiptDeferred  = "deferred"
	ReceiptDelivered = "delivered"
	ReceiptExpired   = "expired"
)

// Receipt is one target's status of one push. At is when it became so
// (for pending: when the push was recorded); Deadline is when a pending
// target expires (zero otherwise).
type Receipt struct {
	Target   string
	Status   string
	At       time.Time
	Deadline time.Time
}

// ReceiptAck is one ack to record: the connection's user target
// ("user:<mid>", "" when anonymous) and key target ("key:<key>").
type ReceiptAck struct {
	MsgID      string
	UserTarget string
	KeyTarget  string
}

// AckResult is what an ack did.
type AckResult int

// Ack results.
const (
	AckUnknown   AckResult = iota // no record of the msg id
	AckNotTarget                  // neither target is one of the push's
	AckDelivered                  // the target turned delivered
	AckDuplicate                  // the target was delivered already
	AckLate                       // the target was expired (or past its deadline)
)

// AckOutcome is the result of one ack and the target it applied to.
type AckOutcome struct {
	Result AckResult
	Target string
}

// DeferResult is what a deferral did.
type DeferResult int

// Deferral results.
const (
	DeferUnknown   DeferResult = iota // no record of the msg id
	DeferNotTarget                    // neither target is one of the push's
	DeferDeferred                     // the target turned deferred
	DeferUnchanged                    // the target was deferred, delivered or expired already, or past its deadline
)

// DeferOutcome is the result of one deferral and the target it applied to.
type DeferOutcome struct {
	Result DeferResult
	Target string
}

// ExpiredReceipt is one target a sweep turned expired.
type ExpiredReceipt struct {
	MsgID, Target string
	At            time.Time // its deadline
}

// receiptPickLua begins the scripts that act on one target of a record
// (KEYS[1] rcpt_<msg_id>; ARGV[1] user target, "" for none; ARGV[2] key
// target): it returns code 0 when there is no record and 1 when the
// record has neither target (with an empty target), else leaves the user
// target in t when the record has it, else the key target, and t's value
// in v.
const receiptPickLua = `
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local t, v = ARGV[2], false
if ARGV[1] ~= '' then
  v = redis.call('HGET', KEYS[1], ARGV[1])
  if v then t = ARGV[1] end
end
if not v then
  v = redis.call('HGET', KEYS[1], ARGV[2])
  if not v then return {1, ''} end
end
`

// receiptAckLua records an ack.
//
//	KEYS[1] rcpt_<msg_id>
//	ARGV[1] user target ("" for none), ARGV[2] key target, ARGV[3] now (ms)
//
// The user target is used when the record has it, else the key target.
// Returns {result, target} with the AckResult codes.
const receiptAckLua = receiptPickLua + `
local s = string.sub(v, 1, 1)
if s == 'd' then return {3, t} end
if s == 'p' or s == 'f' then
  local dl = tonumber(string.match(v, '^[pf] %d+ (%d+)$'))
  if dl and dl > tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[1], t, 'd ' .. ARGV[3])
    return {2, t}
  end
end
return {4, t}
`

// receiptDeferLua marks a pending target deferred: job could not reach
// its comet and the push waits in its stream.
//
//	KEYS[1] rcpt_<msg_id>
//	ARGV[1] user target ("" for none), ARGV[2] key target, ARGV[3] now (ms)
//
// The target is chosen as receiptAckLua chooses it. Only a pending target
// not past its deadline changes, to "f <now> <deadline>": its deadline,
// and so the sweep's index, stay as they are. Returns {result, target}
// with the DeferResult codes.
const receiptDeferLua = receiptPickLua + `
local dl = string.match(v, '^p %d+ (%d+)$')
if dl and tonumber(dl) > tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], t, 'f ' .. ARGV[3] .. ' ' .. dl)
  return {2, t}
end
return {3, t}
`

// receiptExpireLua turns a record's pending targets whose deadline has
// passed into expired.
//
//	KEYS[1] rcpt_<msg_id>
//	ARGV[1] now (ms)
//
// Returns {next, t1, dl1, t2, dl2, ...}: the earliest deadline of the
// targets still pending (0: none), then each target expired now with its
// deadline.
const receiptExpireLua = `
local all = redis.call('HGETALL', KEYS[1])
local now = tonumber(ARGV[1])
local out = {0}
local next = 0
for i = 1, #all, 2 do
  local dl = string.match(all[i+1], '^[pf] %d+ (%d+)$')
  if dl then
    local d = tonumber(dl)
    if d <= now then
      redis.call('HSET', KEYS[1], all[i], 'e ' .. dl)
      out[#out+1] = all[i]
      out[#out+1] = dl
    elseif next == 0 or d < next then
      next = d
    end
  end
end
out[1] = next
return out
`

// The receipts' scripts: immutable values (source and hash), shared by
// every client.
var (
	receiptAckScript    = newLuaScript(receiptAckLua)
	receiptDeferScript  = newLuaScript(receiptDeferLua)
	receiptExpireScript = newLuaScript(receiptExpireLua)
)

func (r *Redis) receiptKey(msgID string) string {
	if r.cluster != nil {
		return r.prefix + receiptPrefix + "{" + msgID + "}"
	}
	return r.prefix + receiptPrefix + msgID
}

func (r *Redis) receiptDueKey() string {
	if r.cluster != nil {
		return r.prefix + receiptDueTag + receiptDueName
	}
	return r.prefix + receiptDueName
}

// AddReceipts records targets of push msgID as pending, and deferred as
// deferred (pending whose target had no connection), since at, until
// deadline, and indexes the push for the sweep; the record and the index
// live keep (from now). A target already recorded is set again: call it
// once per push. One round trip.
func (r *Redis) AddReceipts(ctx context.Context, msgID string, targets, deferred []string, at, deadline time.Time, keep time.Duration) error {
	if msgID == "" || len(targets)+len(deferred) == 0 {
		return fmt.Errorf("dao: redis: add receipts: %w: empty msg id or no target", ErrInvalidArgument)
	}
	rk, due := r.receiptKey(msgID), r.receiptDueKey()
	times := strconv.FormatInt(at.UnixMilli(), 10) + " " + strconv.FormatInt(deadline.UnixMilli(), 10)
	args := make([]any, 0, 1+2*(len(targets)+len(deferred)))
	args = append(args, rk)
	for _, t := range targets {
		args = append(args, t, "p "+times)
	}
	for _, t := range deferred {
		args = append(args, t, "f "+times)
	}
	ms := max(keep.Milliseconds(), 1)
	cmds := []command{
		{key: rk, name: "HSET", args: args},
		{key: rk, name: "PEXPIRE", args: []any{rk, ms}},
		{key: due, name: "ZADD", args: []any{due, "NX", deadline.UnixMilli(), msgID}},
		{key: due, name: "PEXPIRE", args: []any{due, ms}},
	}
	err := r.exec(ctx, cmds)
	if err == nil {
		err = firstError(cmds)
	}
	if err != nil {
		return &opError{kind: ErrRedis, op: "add receipts (" + strconv.Itoa(len(targets)+len(deferred)) + " targets)", err: err}
	}
	return nil
}

// AckReceipts records acks at now: for each, its user target turns
// delivered when the push's record has it, else its key target, if that
// target is pending (or deferred) and not past its deadline. out[i] is acks[i]'s
// outcome. One round trip.
func (r *Redis) AckReceipts(ctx context.Context, acks []ReceiptAck, now time.Time) ([]AckOutcome, error) {
	codes, targets, err := r.receiptTargets(ctx, &receiptAckScript, "ack receipts", acks, now)
	if err != nil {
		return nil, err
	}
	out := make([]AckOutcome, len(acks))
	for i := range out {
		out[i] = AckOutcome{Result: AckResult(codes[i]), Target: targets[i]}
	}
	return out, nil
}

// DeferReceipts marks targets deferred at now: for each of defers (an
// ReceiptAck naming the push and the target as an ack does), its user
// target when the push's record has it, else its key target, turns
// deferred if it is pending and not past its deadline; its deadline stays.
// out[i] is defers[i]'s outcome. One round trip.
func (r *Redis) DeferReceipts(ctx context.Context, defers []ReceiptAck, now time.Time) ([]DeferOutcome, error) {
	codes, targets, err := r.receiptTargets(ctx, &receiptDeferScript, "defer receipts", defers, now)
	if err != nil {
		return nil, err
	}
	out := make([]DeferOutcome, len(defers))
	for i := range out {
		out[i] = DeferOutcome{Result: DeferResult(codes[i]), Target: targets[i]}
	}
	return out, nil
}

// receiptTargets runs script (receiptAckLua or receiptDeferLua: KEYS the
// record, ARGV the user target, the key target and now in ms) for each of
// items at now, in one round trip, and returns each one's result code and
// the target it applied to. op names the operation in errors.
func (r *Redis) receiptTargets(ctx context.Context, script *luaScript, op string, items []ReceiptAck, now time.Time) ([]int, []string, error) {
	codes, targets := make([]int, len(items)), make([]string, len(items))
	if len(items) == 0 {
		return codes, targets, nil
	}
	ms := strconv.FormatInt(now.UnixMilli(), 10)
	cmds := make([]command, len(items))
	for i, it := range items {
		rk := r.receiptKey(it.MsgID)
		cmds[i] = script.command(rk, []string{rk}, it.UserTarget, it.KeyTarget, ms)
	}
	err := r.exec(ctx, cmds)
	if err == nil {
		err = firstError(cmds)
	}
	if err != nil {
		return nil, nil, &opError{kind: ErrRedis, op: op + " (" + strconv.Itoa(len(items)) + ")", err: err}
	}
	for i := range cmds {
		if codes[i], targets[i], err = codeTarget(cmds[i].reply); err != nil {
			return nil, nil, &opError{kind: ErrRedis, op: op + ": reply", err: err}
		}
	}
	return codes, targets, nil
}

// codeTarget decodes a {code, target} script reply.
func codeTarget(reply any) (int, string, error) {
	vs, err := redis.Values(reply, nil)
	if err == nil && len(vs) != 2 {
		err = fmt.Errorf("%d values, want 2", len(vs))
	}
	var code int
	var target string
	if err == nil {
		code, err = redis.Int(vs[0], nil)
	}
	if err == nil {
		target, err = redis.String(vs[1], nil)
	}
	return code, target, err
}

// DueReceipts returns at most limit pushes with a pending target whose
// deadline is at or before now, earliest first.
func (r *Redis) DueReceipts(ctx context.Context, now time.Time, limit int) ([]string, error) {
	due := r.receiptDueKey()
	cmds := []command{{key: due, name: "ZRANGEBYSCORE", args: []any{due, "-inf", now.UnixMilli(), "LIMIT", 0, limit}}}
	err := r.exec(ctx, cmds)
	if err == nil {
		err = firstError(cmds)
	}
	var ids []string
	if err == nil {
		ids, err = redis.Strings(cmds[0].reply, nil)
	}
	if err != nil {
		return nil, &opError{kind: ErrRedis, op: "due receipts", err: err}
	}
	return ids, nil
}

// ExpireReceipts turns the pending targets of pushes msgIDs whose deadline
// is at or before now into expired, and returns them. Each push leaves the
// sweep's index, or stays in it with its next deadline when targets are
// still pending. Two round trips; each target expires once, whatever
// other logics sweep at the same time.
func (r *Redis) ExpireReceipts(ctx context.Context, msgIDs []string, now time.Time) ([]ExpiredReceipt, error) {
	if len(msgIDs) == 0 {
		return nil, nil
	}
	ms := strconv.FormatInt(now.UnixMilli(), 10)
	cmds := make([]command, len(msgIDs))
	for i, id := range msgIDs {
		rk := r.receiptKey(id)
		cmds[i] = receiptExpireScript.command(rk, []string{rk}, ms)
	}
	err := r.exec(ctx, cmds)
	if err == nil {
		err = firstError(cmds)
	}
	if err != nil {
		return nil, &opError{kind: ErrRedis, op: "expire receipts (" + strconv.Itoa(len(msgIDs)) + ")", err: err}
	}
	var out []ExpiredReceipt
	due := r.receiptDueKey()
	index := make([]command, 0, len(msgIDs))
	for i, id := range msgIDs {
		vs, err := redis.Values(cmds[i].reply, nil)
		if err != nil || len(vs) == 0 || len(vs)%2 != 1 {
			return out, &opError{kind: ErrRedis, op: "expire receipts: reply", err: fmt.Errorf("%v, %d values", err, len(vs))}
		}
		next, _ := redis.Int64(vs[0], nil)
		for j := 1; j+1 < len(vs); j += 2 {
			t, _ := redis.String(vs[j], nil)
			dl, _ := redis.Int64(vs[j+1], nil)
			out = append(out, ExpiredReceipt{MsgID: id, Target: t, At: time.UnixMilli(dl)})
		}
		if next > 0 {
			index = append(index, command{key: due, name: "ZADD", args: []any{due, "XX", next, id}})
		} else {
			index = append(index, command{key: due, name: "ZREM", args: []any{due, id}})
		}
	}
	err = r.exec(ctx, index)
	if err == nil {
		err = firstError(index)
	}
	if err != nil {
		return out, &opError{kind: ErrRedis, op: "expire receipts: index", err: err}
	}
	return out, nil
}

// Receipts returns the record of push msgID, in no particular order; none
// when there is no record (unknown, or past its keep time).
func (r *Redis) Receipts(ctx context.Context, msgID string) ([]Receipt, error) {
	rk := r.receiptKey(msgID)
	cmds := []command{{key: rk, name: "HGETALL", args: []any{rk}}}
	err := r.exec(ctx, cmds)
	if err == nil {
		err = firstError(cmds)
	}
	var m map[string]string
	if err == nil {
		m, err = redis.StringMap(cmds[0].reply, nil)
	}
	if err != nil {
		return nil, &opError{kind: ErrRedis, op: "receipts", err: err}
	}
	out := make([]Receipt, 0, len(m))
	for t, v := range m {
		if rc, ok := parseReceipt(t, v); ok {
			out = append(out, rc)
		}
	}
	return out, nil
}

// parseReceipt decodes a record's field; ok is false for a value this
// version does not know.
func parseReceipt(target, v string) (Receipt, bool) {
	f := strings.Fields(v)
	if len(f) < 2 {
		return Receipt{}, false
	}
	at, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return Receipt{}, false
	}
	rc := Receipt{Target: target, At: time.UnixMilli(at)}
	switch {
	case (f[0] == "p" || f[0] == "f") && len(f) == 3:
		dl, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return Receipt{}, false
		}
		rc.Status, rc.Deadline = ReceiptPending, time.UnixMilli(dl)
		if f[0] == "f" {
			rc.Status = ReceiptDeferred
		}
	case f[0] == "d" && len(f) == 2:
		rc.Status = ReceiptDelivered
	case f[0] == "e" && len(f) == 2:
		rc.Status = ReceiptExpired
	default:
		return Receipt{}, false
	}
	return rc, true
}
