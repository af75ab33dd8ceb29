// goim.js: a browser client of goim (the client protocol of
// docs/protocol.md over WebSocket). One dependency-free ES module, no build
// step; logic's HTTP listener serves it at /goim.js.
//
//   import { Client } from '/goim.js';
//   const c = new Client({
//     api: '',                          // logic's base URL ('' = this page's origin)
//     auth: { mid: 1, room_id: 'live://1000', accepts: [1000] },
//     onMessage: (m) => console.log(m.op, m.text()),
//   });
//   await c.connect();                  // the first auth reply
//   await c.changeRoom('live://1001');  // op 12, resolved by op 13
//   c.close();
//
// The client asks logic's GET /goim/nodes/weighted for comets (or dials
// fixed URLs), authenticates with op 7, heartbeats with op 2 and drops a
// connection whose heartbeat is not answered within a period, unpacks op-9
// batches, and after any drop reconnects with the backoff hints of the
// nodes answer, keeping the room and the accepted ops it has now.
//
// Reliable delivery (opt in with reliable: true): pushes arrive as op-18
// envelopes that the client unwraps (the message gains msgId, stream,
// epoch, offset), op 20 reports the streams (onStreams; recovered false:
// resync that stream's state), the client keeps its position in each
// stream and sends it as "since" with every connect so the comet replays
// what was missed, drops a message at or below its position, and acks
// (op 19) what it handed to onMessage, batched (up to 64 ids or 100 ms).
//
//   const c = new Client({
//     api: '', reliable: true,
//     since: JSON.parse(localStorage.getItem('goim.since') || 'null'),
//     auth: { mid: 1, accepts: [1000] },
//     onStreams: (streams) => { if (streams.some((s) => !s.recovered)) resync(); },
//     onMessage: (m) => { show(m); localStorage.setItem('goim.since', JSON.stringify(c.positions())); },
//   });

/** The size of a frame header: packLen, headerLen, ver, op, seq. */
export const HEADER_LEN = 16;

/** The protocol's operations (docs/protocol.md, section 2). */
export const Op = Object.freeze({
  HANDSHAKE: 0,
  HANDSHAKE_REPLY: 1,
  HEARTBEAT: 2,
  HEARTBEAT_REPLY: 3,
  SEND_MSG: 4,
  SEND_MSG_REPLY: 5,
  DISCONNECT_REPLY: 6,
  AUTH: 7,
  AUTH_REPLY: 8,
  RAW: 9,
  PROTO_READY: 10,
  PROTO_FINISH: 11,
  CHANGE_ROOM: 12,
  CHANGE_ROOM_REPLY: 13,
  SUB: 14,
  SUB_REPLY: 15,
  UNSUB: 16,
  UNSUB_REPLY: 17,
  MESSAGE: 18,
  ACK: 19,
  STREAMS: 20,
});

/** The size of an op-18 envelope's fixed part, before the push's frame. */
export const ENVELOPE_HEADER_LEN = 34;

/** The most push ids one op-19 frame carries. */
export const MAX_ACK_IDS = 64;

// The streams of reliable delivery by their envelope byte (0: none).
const STREAM_NAMES = ['', 'user', 'key', 'room'];
// ACK_DELAY is the longest an ack waits before it is sent, ms.
const ACK_DELAY = 100;
// MAX_PENDING_ACKS is how many ids wait for a connection at most; past it
// the oldest are dropped.
const MAX_PENDING_ACKS = 4096;

/**
 * The reconnect backoff used when neither the options nor a nodes answer
 * give one, in milliseconds: logic's defaults.
 */
export const DEFAULT_BACKOFF = Object.freeze({ base: 3000, max: 300000, factor: 1.8, jitter: 0.3 });

/** The heartbeat period used when neither the options nor a nodes answer give one, ms. */
export const DEFAULT_HEARTBEAT = 30000;

/** The time a connection may take from dialing to the auth reply, ms. */
export const DEFAULT_HANDSHAKE_TIMEOUT = 10000;

const MAX_SEQ = 0x7fffffff;
// MAX_TIMER is the longest setTimeout/setInterval delay, ms: a longer one
// would fire at once.
const MAX_TIMER = 0x7fffffff;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The base class of the errors of this module. */
export class GoimError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'GoimError';
  }
}

/** A frame from the comet that does not parse. */
export class ProtocolError extends GoimError {
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** The comet (or the network) closed the WebSocket: code and reason of the close event. */
export class CloseError extends GoimError {
  constructor(code, reason) {
    super('websocket closed: code ' + code + (reason ? ', reason ' + reason : ''));
    this.name = 'CloseError';
    this.code = code;
    this.reason = reason;
  }
}

/** A connection to url that failed or closed before the auth reply (op 8). */
export class AuthError extends GoimError {
  constructor(url, cause) {
    super('auth at ' + url + ': ' + (cause && cause.message ? cause.message : String(cause)), { cause });
    this.name = 'AuthError';
    this.url = url;
  }
}

/** logic's nodes endpoint failed: HTTP status, envelope code and message (0 and '' when absent). */
export class NodesError extends GoimError {
  constructor(status, code, message, cause) {
    super('nodes: HTTP ' + status + ', code ' + code + (message ? ': ' + message : ''), { cause });
    this.name = 'NodesError';
    this.status = status;
    this.code = code;
  }
}

/** A connection dropped because a heartbeat was not answered within a period. */
export class HeartbeatTimeoutError extends GoimError {
  constructor(period) {
    super('no heartbeat reply within ' + period + ' ms');
    this.name = 'HeartbeatTimeoutError';
  }
}

/** The client is closed, or (for a request) not connected. */
export class ClosedError extends GoimError {
  constructor(message) {
    super(message || 'client closed');
    this.name = 'ClosedError';
  }
}

function toBytes(body) {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (typeof body === 'string') return encoder.encode(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  throw new TypeError('frame body: want a string, Uint8Array or ArrayBuffer');
}

/**
 * encodeFrame returns one frame: the 16-byte header (packLen, headerLen 16,
 * ver 1, op, seq; big-endian) followed by body (a string, encoded as UTF-8,
 * or bytes).
 */
export function encodeFrame(op, seq, body) {
  const b = toBytes(body);
  const out = new Uint8Array(HEADER_LEN + b.length);
  const v = new DataView(out.buffer);
  v.setInt32(0, HEADER_LEN + b.length);
  v.setInt16(4, HEADER_LEN);
  v.setInt16(6, 1);
  v.setInt32(8, op | 0);
  v.setInt32(12, seq | 0);
  out.set(b, HEADER_LEN);
  return out;
}

// frameAt reads the frame at off of view; it throws a ProtocolError when
// the header is bad or the frame does not fit.
function frameAt(view, off) {
  if (view.byteLength - off < HEADER_LEN) {
    throw new ProtocolError('short frame at byte ' + off + ': ' + (view.byteLength - off) + ' bytes');
  }
  const packLen = view.getInt32(off);
  const headerLen = view.getInt16(off + 4);
  if (headerLen !== HEADER_LEN) throw new ProtocolError('bad headerLen ' + headerLen + ' at byte ' + off);
  if (packLen < HEADER_LEN || packLen > view.byteLength - off) {
    throw new ProtocolError('bad packLen ' + packLen + ' at byte ' + off + ' of ' + view.byteLength);
  }
  return {
    ver: view.getInt16(off + 6),
    op: view.getInt32(off + 8),
    seq: view.getInt32(off + 12),
    body: new Uint8Array(view.buffer, view.byteOffset + off + HEADER_LEN, packLen - HEADER_LEN),
    len: packLen,
  };
}

/**
 * decodeFrames parses one WebSocket message (an ArrayBuffer or Uint8Array)
 * holding exactly one frame and returns its frames, {ver, op, seq, body}:
 * the frame itself, or the inner frames of an op-9 batch, in order. The
 * bodies are views of data, not copies. It throws a ProtocolError when the
 * message is not one well-formed frame.
 */
export function decodeFrames(data) {
  const bytes = toBytes(data);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const f = frameAt(view, 0);
  if (f.len !== view.byteLength) throw new ProtocolError(view.byteLength - f.len + ' bytes after the frame');
  if (f.op !== Op.RAW) return [strip(f)];
  const inner = new DataView(bytes.buffer, bytes.byteOffset + HEADER_LEN, f.len - HEADER_LEN);
  const out = [];
  for (let off = 0; off < inner.byteLength;) {
    const g = frameAt(inner, off);
    out.push(strip(g));
    off += g.len;
  }
  return out;
}

function strip(f) {
  return { ver: f.ver, op: f.op, seq: f.seq, body: f.body };
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/**
 * decodeEnvelope parses an op-18 body (bytes): stream byte, flags byte,
 * 16-byte push id, 8-byte epoch, 8-byte offset (big-endian), then the
 * push's frame, which must fill the rest. It returns {msgId (32 hex
 * digits, '' when all zero), stream ('user', 'key', 'room', or '' for
 * none), epoch (16 hex digits), offset (a number), op, seq, body (a view
 * of data)} and throws a ProtocolError when the body is malformed.
 */
export function decodeEnvelope(data) {
  const b = toBytes(data);
  if (b.byteLength < ENVELOPE_HEADER_LEN + HEADER_LEN) {
    throw new ProtocolError('envelope of ' + b.byteLength + ' bytes, at least ' + (ENVELOPE_HEADER_LEN + HEADER_LEN));
  }
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const stream = view.getUint8(0);
  if (stream >= STREAM_NAMES.length) throw new ProtocolError('envelope stream ' + stream);
  const id = b.subarray(2, 18);
  const inner = new DataView(b.buffer, b.byteOffset + ENVELOPE_HEADER_LEN, b.byteLength - ENVELOPE_HEADER_LEN);
  const f = frameAt(inner, 0);
  if (f.len !== inner.byteLength) throw new ProtocolError(inner.byteLength - f.len + ' bytes after the envelope\'s frame');
  return {
    msgId: id.some((x) => x !== 0) ? hex(id) : '',
    stream: STREAM_NAMES[stream],
    epoch: hex(b.subarray(18, 26)),
    offset: Number(view.getBigUint64(26)),
    op: f.op,
    seq: f.seq,
    body: f.body,
  };
}

/**
 * encodeAck returns an op-19 body acknowledging ids (32 hex digits each; at
 * most MAX_ACK_IDS). It throws a TypeError for anything else.
 */
export function encodeAck(ids) {
  if (ids.length === 0 || ids.length > MAX_ACK_IDS) throw new TypeError('goim: ack of ' + ids.length + ' ids, want 1 to ' + MAX_ACK_IDS);
  const out = new Uint8Array(16 * ids.length);
  ids.forEach((id, i) => {
    if (!isMsgId(id)) throw new TypeError('goim: ' + JSON.stringify(id) + ' is not a push id (32 hex digits)');
    for (let j = 0; j < 16; j++) out[16 * i + j] = parseInt(id.substr(2 * j, 2), 16);
  });
  return out;
}

function isMsgId(id) {
  return typeof id === 'string' && /^[0-9a-fA-F]{32}$/.test(id);
}

// isEpoch reports whether e is an epoch as held by a client: 1 to 16 hex digits.
function isEpoch(e) {
  return typeof e === 'string' && /^[0-9a-fA-F]{1,16}$/.test(e);
}

// normSince checks a since ({user, key, room: {epoch, offset}}) and returns
// its positions by stream name.
function normSince(since) {
  const out = {};
  if (since === undefined || since === null) return out;
  if (typeof since !== 'object') throw new TypeError('goim: since must be an object');
  for (const name of STREAM_NAMES.slice(1)) {
    const p = since[name];
    if (p === undefined || p === null) continue;
    if (!p || !isEpoch(p.epoch) || !Number.isSafeInteger(p.offset) || p.offset < 0) {
      throw new TypeError('goim: since.' + name + ': want {epoch: 1 to 16 hex digits, offset: a non-negative integer}');
    }
    out[name] = { epoch: p.epoch.toLowerCase().padStart(16, '0'), last: p.offset, floor: 0 };
  }
  return out;
}

/**
 * backoffDelay returns the wait before reconnect attempt n (0 for the first
 * after a drop), in ms: d = min(max, base × factor^n), multiplied by
 * 1 + jitter × (2r − 1), so it lies in [d × (1 − jitter), d × (1 + jitter)].
 * r is a uniform random number in [0, 1) (Math.random() by default); b is a
 * backoff {base, max, factor, jitter} (ms), DEFAULT_BACKOFF by default.
 */
export function backoffDelay(n, b = DEFAULT_BACKOFF, r = Math.random()) {
  const base = finite(b.base, DEFAULT_BACKOFF.base, 0);
  const max = finite(b.max, DEFAULT_BACKOFF.max, 0);
  const factor = finite(b.factor, DEFAULT_BACKOFF.factor, 1);
  const jitter = Math.min(1, finite(b.jitter, DEFAULT_BACKOFF.jitter, 0));
  const attempt = Math.max(0, Math.floor(finite(n, 0, 0)));
  const d = Math.min(max, base * Math.pow(factor, attempt));
  const u = Math.min(1, Math.max(0, finite(r, 0.5, 0)));
  return Math.max(0, d * (1 + jitter * (2 * u - 1)));
}

// finite returns x when it is a finite number at least min, else def.
function finite(x, def, min) {
  return typeof x === 'number' && Number.isFinite(x) && x >= min ? x : def;
}

/**
 * fetchNodes asks logic's GET /goim/nodes/weighted?platform= at api (a base
 * URL such as 'http://logic:3111'; '' for this page's origin) and returns
 * the answer with times in ms:
 *   { domain, tcpPort, wsPort, wssPort, heartbeat, heartbeatMax, nodes,
 *     backoff: {base, max, factor, jitter} }.
 * It throws a NodesError when logic answers an error or a malformed answer.
 * options: platform (default 'web'), signal (an AbortSignal), fetch.
 */
export async function fetchNodes(api, options = {}) {
  const platform = options.platform || 'web';
  const url = String(api || '').replace(/\/+$/, '') + '/goim/nodes/weighted?platform=' + encodeURIComponent(platform);
  const get = options.fetch || fetch;
  let resp;
  try {
    resp = await get(url, { cache: 'no-store', signal: options.signal });
  } catch (e) {
    throw new NodesError(0, 0, 'GET ' + url + ': ' + e.message, e);
  }
  let ans;
  try {
    ans = await resp.json();
  } catch (e) {
    throw new NodesError(resp.status, 0, 'answer is not JSON', e);
  }
  const d = ans && ans.data;
  if (!resp.ok || !ans || ans.code !== 0 || !d || typeof d !== 'object') {
    throw new NodesError(resp.status, ans && typeof ans.code === 'number' ? ans.code : 0,
      ans && typeof ans.message === 'string' ? ans.message : 'no data');
  }
  const nodes = Array.isArray(d.nodes) ? d.nodes.filter((n) => typeof n === 'string' && n !== '') : [];
  if (nodes.length === 0 && typeof d.domain === 'string' && d.domain !== '') nodes.push(d.domain);
  if (nodes.length === 0) throw new NodesError(resp.status, 0, 'no node');
  const b = d.backoff || {};
  const seconds = (x, def) => (typeof x === 'number' && Number.isFinite(x) && x > 0 ? x * 1000 : def);
  return {
    domain: String(d.domain || ''),
    tcpPort: d.tcp_port | 0,
    wsPort: d.ws_port | 0,
    wssPort: d.wss_port | 0,
    heartbeat: seconds(d.heartbeat, DEFAULT_HEARTBEAT),
    heartbeatMax: d.heartbeat_max | 0,
    nodes,
    backoff: {
      base: seconds(b.base_delay, DEFAULT_BACKOFF.base),
      max: seconds(b.max_delay, DEFAULT_BACKOFF.max),
      factor: typeof b.factor === 'number' && b.factor >= 1 ? b.factor : DEFAULT_BACKOFF.factor,
      jitter: typeof b.jitter === 'number' && b.jitter >= 0 && b.jitter <= 1 ? b.jitter : DEFAULT_BACKOFF.jitter,
    },
  };
}

/**
 * nodeURLs returns the WebSocket URLs of a fetchNodes answer, in its order:
 * transport 'ws' or 'wss', path such as '/sub'. A node that carries its own
 * port ("host:port", "[v6]:port") keeps it.
 */
export function nodeURLs(answer, transport, path) {
  const port = transport === 'wss' ? answer.wssPort : answer.wsPort;
  return answer.nodes.map((n) => {
    let host = n;
    const colons = (n.match(/:/g) || []).length;
    const hasPort = n.startsWith('[') ? /\]:\d+$/.test(n) : colons === 1;
    if (!hasPort) {
      if (colons > 1 && !n.startsWith('[')) host = '[' + n + ']';
      host += ':' + port;
    }
    return transport + '://' + host + path;
  });
}

function defaultTransport() {
  return typeof location !== 'undefined' && location.protocol === 'https:' ? 'wss' : 'ws';
}

// A message received: op, seq, body (bytes) and text() (the body as UTF-8);
// on a reliable client also msgId, stream, epoch and offset ('' and 0 for
// a plain frame; stream '' for a push in no stream).
class Message {
  constructor(op, seq, body, env) {
    this.op = op;
    this.seq = seq;
    this.body = body;
    this.msgId = env ? env.msgId : '';
    this.stream = env ? env.stream : '';
    this.epoch = env ? env.epoch : '';
    this.offset = env ? env.offset : 0;
  }

  text() {
    return decoder.decode(this.body);
  }

  json() {
    return JSON.parse(this.text());
  }
}

/**
 * Client is a reconnecting goim client. Options:
 *   api        logic's base URL: the comets come from GET
 *              /goim/nodes/weighted ('' is this page's origin); or
 *   url        a comet WebSocket URL, or an array of them tried in order
 *              ('ws://host:3102/sub'), used when api is not given.
 *   transport  'ws' or 'wss' for nodes from api; default 'wss' when the
 *              page is https, else 'ws'.
 *   path       the comet's WebSocket path, default '/sub'.
 *   auth       the op-7 body {mid, key, room_id, platform, accepts, token};
 *              room_id and accepts are replaced by the client's current
 *              room and accepts at each connect.
 *   token      optional async () => string: a fresh token for each connect.
 *   heartbeat  period in ms; default the nodes answer's, else 30 s.
 *   backoff    {base, max, factor, jitter} (ms); default the nodes
 *              answer's hint, else DEFAULT_BACKOFF.
 *   handshakeTimeout  dial to auth reply, and the nodes request, ms;
 *              default 10 s.
 *   onMessage  (m) => {}: every frame that is not a reply, op-9 batches
 *              unpacked, in order; m = {op, seq, body: Uint8Array, text(), json()}.
 *   onState    (state, err) => {}: 'connecting', 'connected',
 *              'disconnected' (err: why), 'closed'.
 *   onHeartbeat (online) => {}: each heartbeat reply, with the room's
 *              online count.
 *   reliable   true opts in to reliable delivery: pushes are op-18
 *              envelopes (unwrapped: m.msgId, m.stream, m.epoch,
 *              m.offset), positions per stream are kept and sent as
 *              "since" at each connect, duplicates are dropped, and
 *              messages are acked (op 19).
 *   since      where a reliable client starts: positions() of an earlier
 *              run, {user, key, room: {epoch, offset}}.
 *   manualAck  true: no automatic acks; call ack(ids) (default false: a
 *              push by user or key is acked once onMessage returned,
 *              batched up to 64 ids or 100 ms; room and broadcast pushes
 *              have no receipts and are not acked).
 *   onStreams  (streams) => {}: each op-20 report, in order with the
 *              messages: [{stream: 'user'|'key'|'room', epoch, offset,
 *              recovered}]; recovered false means messages were lost
 *              (or the client named no position): resync that stream.
 */
export class Client {
  #opts;
  #state = 'idle';
  #room;
  #accepts;
  #conn = null;      // the current connection, null between connections
  #attempt = 0;      // failed attempts since the last auth reply
  #closed = false;
  #connectPromise = null;
  #connected = null; // {resolve, reject} of connect()'s promise
  #sleep = null;     // {timer, resolve} of the backoff wait
  #abort = null;     // the AbortController of the nodes request under way
  #online = 0;
  #pos = {};         // stream name -> {epoch, last, floor} (reliable)
  #acks = [];        // ids waiting to be sent (reliable)
  #ackTimer = 0;
  #dups = 0;

  constructor(options = {}) {
    if (options.api === undefined && !options.url) {
      throw new TypeError('goim: Client needs api (logic\'s base URL) or url (comet WebSocket URLs)');
    }
    const auth = Object.assign({ mid: 0, key: '', room_id: '', platform: 'web', accepts: [] }, options.auth);
    this.#opts = Object.assign({ path: '/sub', handshakeTimeout: DEFAULT_HANDSHAKE_TIMEOUT }, options, { auth });
    this.#room = String(auth.room_id || '');
    this.#accepts = normOps(auth.accepts || []);
    if (this.#opts.reliable || auth.reliable) {
      this.#opts.reliable = true;
      this.#pos = normSince(options.since !== undefined ? options.since : auth.since);
    }
  }

  /**
   * positions returns the last position received in each stream of a
   * reliable client, {user, key, room: {epoch, offset}} (streams not seen
   * are absent): persist it (JSON) and pass it as the since option to
   * resume after a reload.
   */
  positions() {
    const out = {};
    for (const [name, p] of Object.entries(this.#pos)) out[name] = { epoch: p.epoch, offset: Math.max(p.last, p.floor) };
    return out;
  }

  /** The number of messages dropped as duplicates (at or below the position). */
  get duplicates() { return this.#dups; }

  /**
   * ack acknowledges pushes by id (m.msgId) on a reliable client: sent as
   * op-19 frames within 100 ms (at once when 64 wait), on the next
   * connection while disconnected (at most 4096 ids wait; past that the
   * oldest are dropped). Only needed with manualAck. Throws a TypeError for
   * an id that is not 32 hex digits (then none is queued) or on a client
   * without reliable, a ClosedError after close().
   */
  ack(...ids) {
    ids = ids.flat();
    if (!this.#opts.reliable) throw new TypeError('goim: ack on a client without reliable');
    for (const id of ids) {
      if (!isMsgId(id)) throw new TypeError('goim: ' + JSON.stringify(id) + ' is not a push id (32 hex digits)');
    }
    if (this.#closed) throw new ClosedError();
    this.#queueAcks(ids.map((id) => id.toLowerCase()));
  }

  /** The state: 'idle', 'connecting', 'connected', 'disconnected' or 'closed'. */
  get state() { return this.#state; }

  /** The room the client is in, and rejoins on reconnect. */
  get room() { return this.#room; }

  /** The ops the client accepts (auth accepts plus sub, minus unsub). */
  get accepts() { return this.#accepts.slice(); }

  /** The URL of the comet connected to, '' when not connected. */
  get url() { return this.#conn && this.#conn.authed ? this.#conn.url : ''; }

  /** The online count of the last heartbeat reply. */
  get online() { return this.#online; }

  /**
   * connect starts the client and resolves on the first auth reply; until
   * close() the client keeps reconnecting after drops. It rejects with a
   * ClosedError when close() comes first. Calling it again returns the
   * same promise.
   */
  connect() {
    if (this.#connectPromise) return this.#connectPromise;
    this.#connectPromise = new Promise((resolve, reject) => {
      this.#connected = { resolve, reject };
    });
    if (this.#closed) {
      this.#connected.reject(new ClosedError());
    } else {
      this.#run();
    }
    return this.#connectPromise;
  }

  /**
   * changeRoom moves the connection to room ('type://id'; '' leaves every
   * room) with op 12 and resolves on op 13; the client then rejoins that
   * room on reconnect. It rejects when the connection ends first (a
   * refused room closes it: a CloseError with code 1008) or when not
   * connected (ClosedError).
   */
  async changeRoom(room) {
    room = String(room);
    await this.#request(Op.CHANGE_ROOM, room);
    this.#room = room;
    delete this.#pos.room; // the new room's stream is another one
  }

  /** sub adds ops to the accepted ones (op 14), resolved on op 15. */
  async sub(ops) {
    const list = normOps(ops);
    await this.#request(Op.SUB, list.join(','));
    this.#accepts = normOps(this.#accepts.concat(list));
  }

  /** unsub removes ops from the accepted ones (op 16), resolved on op 17. */
  async unsub(ops) {
    const list = normOps(ops);
    await this.#request(Op.UNSUB, list.join(','));
    this.#accepts = this.#accepts.filter((op) => !list.includes(op));
  }

  /**
   * close ends the client: the connection is closed (code 1000), pending
   * requests and a pending connect() reject with a ClosedError, and no
   * reconnect follows. Idempotent.
   */
  close() {
    if (this.#closed) return;
    this.#flushAcks(); // what is waiting goes out before the close
    clearTimeout(this.#ackTimer);
    this.#closed = true;
    const err = new ClosedError();
    if (this.#conn) this.#conn.end(err, 1000, 'client closed');
    if (this.#sleep) {
      clearTimeout(this.#sleep.timer);
      this.#sleep.resolve();
    }
    if (this.#abort) this.#abort.abort(err);
    if (this.#connected) this.#connected.reject(err);
    this.#connected = null;
    this.#setState('closed');
  }

  #setState(state, err) {
    if (this.#state === 'closed') return;
    this.#state = state;
    if (this.#opts.onState) callback(this.#opts.onState, state, err);
  }

  async #request(op, body) {
    const conn = this.#conn;
    if (this.#closed) throw new ClosedError();
    if (!conn || !conn.authed) throw new ClosedError('not connected');
    return conn.request(op, body);
  }

  // #envelope takes an op-18 envelope: a message at or below the position
  // in its stream (same epoch) is a duplicate and dropped; else the
  // position moves to it, onMessage gets it, and it is acked.
  #envelope(e) {
    if (e.stream !== '') {
      const p = this.#pos[e.stream];
      if (p && p.epoch === e.epoch) {
        if (e.offset <= p.last) {
          this.#dups++;
          return;
        }
        p.last = e.offset;
      } else {
        this.#pos[e.stream] = { epoch: e.epoch, last: e.offset, floor: 0 }; // a new epoch starts here
      }
    }
    const m = new Message(e.op, e.seq, e.body.slice(), e);
    if (this.#opts.onMessage) callback(this.#opts.onMessage, m);
    // Only pushes by user or key are acked: receipts exist for them alone.
    if (!this.#opts.manualAck && m.msgId !== '' && (m.stream === 'user' || m.stream === 'key')) this.#queueAcks([m.msgId]);
  }

  // #report applies an op-20 report: a stream in a new epoch starts over;
  // one that could not recover resumes at least at the reported offset.
  #report(streams) {
    for (const s of streams) {
      let p = this.#pos[s.stream];
      if (!p || p.epoch !== s.epoch) p = this.#pos[s.stream] = { epoch: s.epoch, last: 0, floor: 0 };
      if (!s.recovered) p.floor = Math.max(p.floor, s.offset);
    }
  }

  #queueAcks(ids) {
    this.#acks.push(...ids);
    if (this.#acks.length > MAX_PENDING_ACKS) this.#acks.splice(0, this.#acks.length - MAX_PENDING_ACKS);
    if (this.#acks.length >= MAX_ACK_IDS) {
      this.#flushAcks();
    } else {
      this.#armAcks();
    }
  }

  #armAcks() {
    if (this.#ackTimer || this.#closed) return;
    this.#ackTimer = setTimeout(() => {
      this.#ackTimer = 0;
      this.#flushAcks();
    }, ACK_DELAY);
  }

  // #flushAcks sends the waiting acks on the connection, 64 ids a frame;
  // without one they wait for the next auth reply.
  #flushAcks() {
    const conn = this.#conn;
    if (!conn || !conn.authed || conn.done) return;
    while (this.#acks.length > 0) {
      const ids = this.#acks.slice(0, MAX_ACK_IDS);
      if (conn.send(Op.ACK, encodeAck(ids)) === 0) return;
      this.#acks.splice(0, ids.length);
    }
  }

  // #run is the connect loop: resolve the comets, try each in order until
  // one authenticates, stay on it until it drops, wait the backoff, again.
  async #run() {
    while (!this.#closed) {
      this.#setState('connecting');
      let err = null;
      let backoff = this.#opts.backoff;
      let heartbeat = this.#opts.heartbeat;
      let urls = [];
      try {
        if (this.#opts.api !== undefined) {
          const ans = await this.#nodes();
          urls = nodeURLs(ans, this.#opts.transport || defaultTransport(), this.#opts.path);
          backoff = Object.assign({}, ans.backoff, backoff);
          heartbeat = heartbeat || ans.heartbeat;
        } else {
          urls = [].concat(this.#opts.url);
        }
      } catch (e) {
        err = e;
      }
      backoff = Object.assign({}, DEFAULT_BACKOFF, backoff);
      heartbeat = clampTimer(heartbeat > 0 ? heartbeat : DEFAULT_HEARTBEAT);
      for (const url of urls) {
        if (this.#closed) return;
        const res = await this.#session(url, heartbeat);
        err = res.err;
        if (res.authed) {
          this.#attempt = 0;
          break;
        }
      }
      if (this.#closed) return;
      this.#setState('disconnected', err);
      const delay = clampTimer(backoffDelay(this.#attempt++, backoff));
      await new Promise((resolve) => {
        this.#sleep = { timer: setTimeout(resolve, delay), resolve };
      });
      this.#sleep = null;
    }
  }

  // #nodes asks logic for the comets, for at most the handshake timeout;
  // close() aborts it.
  async #nodes() {
    const ac = new AbortController();
    this.#abort = ac;
    const ms = this.#handshakeTimeout();
    const timer = setTimeout(() => ac.abort(new GoimError('no answer within ' + ms + ' ms')), ms);
    try {
      return await fetchNodes(this.#opts.api, { platform: this.#opts.auth.platform || 'web', signal: ac.signal });
    } finally {
      clearTimeout(timer);
      this.#abort = null;
    }
  }

  #handshakeTimeout() {
    const t = this.#opts.handshakeTimeout;
    return clampTimer(t > 0 ? t : DEFAULT_HANDSHAKE_TIMEOUT);
  }

  // #session dials url, authenticates, and serves the connection; it
  // resolves with {authed, err} when the connection ends.
  async #session(url, period) {
    const auth = Object.assign({}, this.#opts.auth, { room_id: this.#room, accepts: this.#accepts });
    delete auth.since;
    if (this.#opts.reliable) {
      auth.reliable = true;
      const since = this.positions();
      if (Object.keys(since).length > 0) auth.since = since;
    }
    if (this.#opts.token) {
      try {
        auth.token = String(await this.#opts.token());
      } catch (e) {
        return { authed: false, err: new AuthError(url, e) };
      }
      if (this.#closed) return { authed: false, err: new ClosedError() };
    }
    return new Promise((resolve) => {
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (e) {
        resolve({ authed: false, err: new AuthError(url, e) });
        return;
      }
      ws.binaryType = 'arraybuffer';
      const conn = new Connection(ws, url, period, !!this.#opts.reliable);
      this.#conn = conn;
      const handshake = setTimeout(() => conn.end(new AuthError(url, new GoimError('handshake timeout')), 4000, 'handshake timeout'),
        this.#handshakeTimeout());
      conn.onEnd = (err) => {
        clearTimeout(handshake);
        if (this.#conn === conn) this.#conn = null;
        resolve({ authed: conn.authed, err: conn.authed || err instanceof AuthError || err instanceof ClosedError ? err : new AuthError(url, err) });
      };
      conn.onAuth = () => {
        clearTimeout(handshake);
        this.#setState('connected');
        if (this.#acks.length > 0) this.#armAcks();
        if (this.#connected) {
          this.#connected.resolve();
          this.#connected = null;
        }
      };
      conn.onHeartbeat = (online) => {
        this.#online = online;
        if (this.#opts.onHeartbeat) callback(this.#opts.onHeartbeat, online);
      };
      conn.onMessage = (m) => {
        if (this.#opts.onMessage) callback(this.#opts.onMessage, m);
      };
      conn.onEnvelope = (f) => this.#envelope(f);
      conn.onStreams = (streams) => {
        this.#report(streams);
        if (this.#opts.onStreams) callback(this.#opts.onStreams, streams);
      };
      ws.onopen = () => conn.send(Op.AUTH, JSON.stringify(auth));
    });
  }
}

// Connection is one WebSocket of a Client: frames, seqs, requests waiting
// for their reply, and the heartbeat.
class Connection {
  constructor(ws, url, period, reliable) {
    this.ws = ws;
    this.url = url;
    this.period = period;
    this.reliable = reliable; // ops 18 and 20 are reliable delivery's
    this.authed = false;
    this.done = false;
    this.seq = 0;
    this.pending = new Map(); // seq -> {op, resolve, reject}
    this.waiting = false;     // a heartbeat is unanswered
    this.timer = 0;
    this.onEnd = () => {};
    this.onAuth = () => {};
    this.onHeartbeat = () => {};
    this.onMessage = () => {};
    this.onEnvelope = () => {};
    this.onStreams = () => {};
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = (ev) => this.end(new CloseError(ev.code, ev.reason));
  }

  send(op, body) {
    if (this.done || this.ws.readyState !== WebSocket.OPEN) return 0;
    this.seq = this.seq >= MAX_SEQ ? 1 : this.seq + 1;
    this.ws.send(encodeFrame(op, this.seq, body));
    return this.seq;
  }

  // request sends op and resolves with the reply's body.
  request(op, body) {
    return new Promise((resolve, reject) => {
      const seq = this.send(op, body);
      if (seq === 0) {
        reject(new ClosedError('not connected'));
        return;
      }
      this.pending.set(seq, { op: op + 1, resolve, reject });
    });
  }

  heartbeat() {
    if (this.waiting) {
      this.end(new HeartbeatTimeoutError(this.period), 4000, 'heartbeat timeout');
      return;
    }
    this.waiting = true;
    this.send(Op.HEARTBEAT);
  }

  receive(data) {
    if (this.done) return;
    if (!(data instanceof ArrayBuffer)) {
      this.end(new ProtocolError('text message from the comet'), 4000, 'protocol error');
      return;
    }
    let frames;
    try {
      frames = decodeFrames(data);
    } catch (e) {
      this.end(e, 4000, 'protocol error');
      return;
    }
    for (const f of frames) {
      if (this.done) return;
      this.frame(f);
    }
  }

  frame(f) {
    switch (f.op) {
      case Op.AUTH_REPLY:
        if (this.authed) return;
        this.authed = true;
        this.onAuth();
        this.heartbeat();
        this.timer = setInterval(() => this.heartbeat(), this.period);
        return;
      case Op.HEARTBEAT_REPLY:
        this.waiting = false;
        if (f.body.byteLength >= 4) {
          this.onHeartbeat(new DataView(f.body.buffer, f.body.byteOffset, 4).getInt32(0));
        }
        return;
      case Op.CHANGE_ROOM_REPLY:
      case Op.SUB_REPLY:
      case Op.UNSUB_REPLY: {
        const p = this.pending.get(f.seq);
        if (p && p.op === f.op) {
          this.pending.delete(f.seq);
          p.resolve(f.body.slice());
        }
        return;
      }
    }
    if (!this.authed) return;
    if (this.reliable && (f.op === Op.MESSAGE || f.op === Op.STREAMS)) {
      let v;
      try {
        v = f.op === Op.MESSAGE ? decodeEnvelope(f.body) : parseStreams(f.body);
      } catch (e) {
        this.end(e instanceof ProtocolError ? e : new ProtocolError('op ' + f.op + ': ' + e.message), 4000, 'protocol error');
        return;
      }
      if (f.op === Op.MESSAGE) {
        this.onEnvelope(v);
      } else {
        this.onStreams(v);
      }
      return;
    }
    this.onMessage(new Message(f.op, f.seq, f.body.slice()));
  }

  // end closes the connection (with code and reason when given) and
  // rejects the pending requests with err; only its first call counts.
  end(err, code, reason) {
    if (this.done) return;
    this.done = true;
    clearInterval(this.timer);
    this.ws.onmessage = null;
    this.ws.onclose = null;
    if (code !== undefined) {
      try {
        this.ws.close(code, reason);
      } catch {
        // already closing
      }
    }
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.onEnd(err);
  }
}

// parseStreams decodes an op-20 body: [{stream, epoch, offset, recovered}],
// streams of unknown names left out.
function parseStreams(body) {
  let v;
  try {
    v = JSON.parse(decoder.decode(body));
  } catch (e) {
    throw new ProtocolError('op-20 body is not JSON: ' + e.message);
  }
  if (!v || !Array.isArray(v.streams)) throw new ProtocolError('op-20 body without streams');
  const out = [];
  for (const s of v.streams) {
    if (!s || !STREAM_NAMES.includes(s.stream) || s.stream === '') continue;
    if (!isEpoch(s.epoch) || !Number.isSafeInteger(s.offset) || s.offset < 0) {
      throw new ProtocolError('op-20 body: bad stream ' + JSON.stringify(s));
    }
    out.push({ stream: s.stream, epoch: s.epoch.toLowerCase().padStart(16, '0'), offset: s.offset, recovered: s.recovered === true });
  }
  return out;
}

// clampTimer bounds a timer delay to 1 ms..MAX_TIMER.
function clampTimer(ms) {
  return Math.min(MAX_TIMER, Math.max(1, Number(ms) || 1));
}

// normOps returns ops as distinct int32s, in order.
function normOps(ops) {
  const out = [];
  for (const x of [].concat(ops)) {
    const n = Number(x);
    if (!Number.isInteger(n) || n < -0x80000000 || n > MAX_SEQ) throw new TypeError('goim: op ' + x + ' is not an int32');
    if (!out.includes(n)) out.push(n);
  }
  return out;
}

// callback calls fn; an exception it throws is rethrown outside the
// client's code (reported as uncaught), so it cannot break the client.
function callback(fn, ...args) {
  try {
    fn(...args);
  } catch (e) {
    setTimeout(() => {
      throw e;
    });
  }
}
