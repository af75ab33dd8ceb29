// console.js: the goim console's script (package console). It holds no
// data of its own: every figure and action is a request to logic's HTTP
// API, same origin, with the operator's push-API token as
// "Authorization: Bearer". The token is asked for only when the API
// answers 401 (an anonymous API, as in the all-in-one, never asks) and is
// kept in this tab's sessionStorage. The live pane joins a room with the
// client module logic serves at /goim.js.
//
// Everything the API or a comet sends is shown as text (textContent),
// never parsed as HTML.

const TOKEN_KEY = 'goim.console.token';
const MAX_MESSAGES = 200; // the live pane keeps the newest ones
const STALE_REPORT_MS = 15000; // a report older than this is flagged

// The API's base URL: the console's parent (/console -> /), so a console
// behind a proxy prefix calls the API under that prefix too.
const API = new URL('.', location.href);

const $ = (id) => document.getElementById(id);
const numberFormat = new Intl.NumberFormat('en-US');
const utf8 = new TextDecoder('utf-8', { fatal: true });

let token = sessionStorage.getItem(TOKEN_KEY) || '';
let timer = null; // the auto-refresh interval
let timerEvery = 0; // its period, ms
let refreshing = null; // the refresh in flight
let live = null; // the live pane's goim.js Client

// ApiError is an answer that is not {"code":0}: HTTP status, envelope code
// and message (status 0: the request did not complete).
class ApiError extends Error {
  constructor(status, code, message) {
    super(message || ('HTTP ' + status));
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

// call sends one API request and returns {status, text, answer}, the
// answer being the parsed envelope (null when the body is not JSON). It
// throws an ApiError only when the request fails on the network.
async function call(method, path, params, body) {
  const url = new URL(path, API);
  for (const [k, v] of Object.entries(params || {})) url.searchParams.set(k, String(v));
  const headers = {};
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'text/plain; charset=utf-8';
  let resp;
  try {
    resp = await fetch(url, { method, headers, body, cache: 'no-store', credentials: 'omit', redirect: 'error' });
  } catch (e) {
    throw new ApiError(0, 0, method + ' ' + url.pathname + ': ' + e.message);
  }
  const text = await resp.text();
  let answer = null;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = null;
  }
  return { status: resp.status, text, answer };
}

// get returns the data of a GET, or throws an ApiError.
async function get(path, params) {
  const r = await call('GET', path, params);
  if (r.status !== 200 || !r.answer || r.answer.code !== 0) {
    const a = r.answer || {};
    throw new ApiError(r.status, typeof a.code === 'number' ? a.code : 0,
      typeof a.message === 'string' ? a.message : r.text.slice(0, 200));
  }
  return r.answer.data;
}

function show(el, on) {
  el.hidden = !on;
}

function setText(id, text) {
  $(id).textContent = text;
}

function fmt(n) {
  return typeof n === 'number' ? numberFormat.format(n) : '–';
}

function cell(tr, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function badge(text, cls) {
  const b = document.createElement('span');
  b.className = 'badge ' + cls;
  b.textContent = text;
  return b;
}

function setApiState(text, cls) {
  const el = $('api-state');
  el.textContent = text;
  el.className = 'badge ' + cls;
}

function apiError(message) {
  const el = $('api-error');
  el.textContent = message || '';
  show(el, Boolean(message));
}

// needCredential shows the token form: the API answered 401.
function needCredential(refused) {
  stopTimer();
  show($('dashboard'), false);
  show($('login'), true);
  show($('sign-out'), false);
  setApiState('credential needed', 'warn');
  const err = $('login-error');
  err.textContent = refused ? 'The API refused this token (' + refused + ').' : '';
  show(err, Boolean(refused));
  $('login-token').focus();
}

function signedIn() {
  show($('login'), false);
  show($('dashboard'), true);
  show($('sign-out'), Boolean(token));
  setApiState(token ? 'signed in' : 'open API (no credential)', token ? 'ok' : 'warn');
}

// refresh reloads every figure; concurrent calls share one run.
function refresh() {
  if (!refreshing) {
    refreshing = load().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

async function load() {
  const [total, comets, top] = await Promise.allSettled([
    get('goim/online/total'),
    get('goim/online/comets'),
    get('goim/online/top', { type: $('top-type').value.trim() || 'live', limit: $('top-limit').value }),
  ]);
  const failures = [total, comets, top].filter((r) => r.status === 'rejected').map((r) => r.reason);
  const denied = failures.find((e) => e.status === 401);
  if (denied) {
    if (token) {
      const msg = denied.message;
      forgetToken();
      needCredential(msg);
    } else {
      needCredential('');
    }
    return;
  }
  signedIn();
  armTimer();
  if (total.status === 'fulfilled') renderTotals(total.value);
  if (comets.status === 'fulfilled') renderComets(comets.value);
  if (top.status === 'fulfilled') {
    renderTop(top.value);
    show($('top-error'), false);
  } else if (top.reason.status === 400) {
    $('top-error').textContent = top.reason.message;
    show($('top-error'), true);
  }
  const other = failures.filter((e) => !(e === top.reason && e.status === 400));
  if (other.length > 0) {
    const e = other[0];
    apiError((e.status ? 'HTTP ' + e.status + ': ' : '') + e.message);
    setApiState('error', 'bad');
  } else {
    apiError('');
    setText('updated', 'updated ' + new Date().toLocaleTimeString('en-GB'));
  }
}

function renderTotals(t) {
  setText('total-conns', fmt(t.conn_count));
  setText('total-ips', fmt(t.ip_count));
}

function renderComets(d) {
  const list = Array.isArray(d.comets) ? d.comets : [];
  setText('total-comets', fmt(list.length));
  setText('total-draining', fmt(list.filter((c) => c.draining).length));
  setText('comets-source', d.discovery ? 'from discovery and online reports'
    : 'from online reports (no discovery: addresses unknown)');
  const body = $('comets');
  body.replaceChildren();
  if (list.length === 0) {
    const tr = document.createElement('tr');
    cell(tr, 'no comet reports to this logic', 'muted').colSpan = 8;
    body.appendChild(tr);
    return;
  }
  for (const c of list) {
    const tr = document.createElement('tr');
    tr.dataset.hostname = c.hostname;
    cell(tr, c.hostname, 'mono');
    cell(tr, (c.addrs || []).join(', ') || '–', 'mono');
    cell(tr, (c.rpc_addrs || []).join(', ') || '–', 'mono small');
    cell(tr, fmt(c.weight), 'num');
    cell(tr, fmt(c.conn_count), 'num');
    cell(tr, fmt(c.ip_count), 'num');
    const state = cell(tr, '');
    state.appendChild(c.draining ? badge('draining', 'warn') : badge('serving', 'ok'));
    if (d.discovery && !c.registered) state.appendChild(badge('not registered', 'bad'));
    const age = c.report_age_ms;
    const ageCell = cell(tr, typeof age === 'number' ? (age / 1000).toFixed(1) + ' s ago' : 'no report', 'num');
    if (typeof age !== 'number' || age > STALE_REPORT_MS) ageCell.classList.add('stale');
    body.appendChild(tr);
  }
}

function renderTop(list) {
  const body = $('top-rooms');
  body.replaceChildren();
  const type = $('top-type').value.trim() || 'live';
  if (!Array.isArray(list) || list.length === 0) {
    const tr = document.createElement('tr');
    cell(tr, 'no room of type ' + type, 'muted').colSpan = 3;
    body.appendChild(tr);
    return;
  }
  for (const r of list) {
    const tr = document.createElement('tr');
    cell(tr, type + '://' + r.room_id, 'mono');
    cell(tr, fmt(r.count), 'num');
    const use = document.createElement('button');
    use.type = 'button';
    use.className = 'small';
    use.textContent = 'use';
    use.title = 'push to this room; change the live client to it';
    use.addEventListener('click', () => {
      $('push-target').value = 'room';
      pushTargetChanged();
      $('push-type').value = type;
      $('push-room').value = r.room_id;
      $('live-change-room').value = type + '://' + r.room_id;
    });
    cell(tr, '').appendChild(use);
    body.appendChild(tr);
  }
}

function stopTimer() {
  if (timer !== null) clearInterval(timer);
  timer = null;
  timerEvery = 0;
}

// armTimer starts the auto-refresh at the chosen period, unless it runs
// at that period already.
function armTimer() {
  const every = Number($('refresh-every').value) * 1000;
  if (timer !== null && timerEvery === every) return;
  stopTimer();
  if (every > 0) {
    timer = setInterval(() => {
      if (!document.hidden) refresh();
    }, every);
    timerEvery = every;
  }
}

function forgetToken() {
  token = '';
  sessionStorage.removeItem(TOKEN_KEY);
}

// --- push form ---

function pushTargetChanged() {
  const target = $('push-target').value;
  for (const row of document.querySelectorAll('#push-form [data-target]')) {
    show(row, row.dataset.target === target);
  }
}

async function push(ev) {
  ev.preventDefault();
  const target = $('push-target').value;
  const params = { operation: $('push-op').value.trim() };
  switch (target) {
    case 'room':
      params.type = $('push-type').value.trim();
      params.room = $('push-room').value.trim();
      break;
    case 'keys':
      params.keys = $('push-keys').value.trim();
      break;
    case 'mids':
      params.mids = $('push-mids').value.trim();
      break;
    case 'all':
      params.speed = $('push-speed').value.trim() || '0';
      if (!$('push-all-confirm').checked) {
        setText('push-status', 'tick the box to broadcast to everyone');
        return;
      }
      break;
    default:
      return;
  }
  const button = $('push-send');
  button.disabled = true;
  setText('push-status', 'pushing…');
  setText('push-result', '');
  try {
    const r = await call('POST', 'goim/push/' + target, params, $('push-body').value);
    setText('push-result', r.text);
    const ok = r.status === 200 && r.answer && r.answer.code === 0;
    setText('push-status', (ok ? 'accepted' : 'refused') + ' · HTTP ' + r.status);
    $('push-status').className = ok ? 'ok-text' : 'error-text';
    if (r.status === 401) {
      forgetToken();
      needCredential(r.answer && r.answer.message ? r.answer.message : 'HTTP 401');
    }
  } catch (e) {
    setText('push-status', e.message);
    $('push-status').className = 'error-text';
  } finally {
    button.disabled = false;
  }
}

// --- live pane ---

function liveModeChanged() {
  const mode = $('live-mode').value;
  for (const el of document.querySelectorAll('#live-form [data-mode]')) {
    show(el, el.dataset.mode === mode);
  }
}

function liveError(message) {
  const el = $('live-error');
  el.textContent = message || '';
  show(el, Boolean(message));
}

function liveState(state, err) {
  const el = $('live-status');
  el.textContent = state;
  el.className = 'badge ' + ({ connected: 'ok', connecting: 'warn', disconnected: 'bad' }[state] || '');
  if (err) liveError(state + ': ' + (err.message || String(err)));
  else if (state === 'connected') liveError('');
  liveWhere();
}

function liveWhere() {
  setText('live-where', live && live.url ? live.url + ' · room ' + (live.room || '(none)') +
    ' · accepts ' + (live.accepts.join(',') || '(none)') : '');
}

function liveButtons(joined) {
  $('live-join').disabled = joined;
  $('live-leave').disabled = !joined;
  $('live-change').disabled = !joined;
}

// authBody returns the op-7 body the pane's fields describe, or throws.
function authBody() {
  if ($('live-mode').value === 'token') {
    const t = $('live-token').value.trim();
    if (!t) throw new Error('paste a client token');
    const accepts = $('live-accepts').value.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
    if (accepts.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error('accepts: comma-separated positive operations');
    return { token: t, room_id: $('live-room').value.trim(), platform: 'web', accepts };
  }
  let body;
  try {
    body = JSON.parse($('live-auth').value);
  } catch (e) {
    throw new Error('auth JSON: ' + e.message);
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new Error('auth JSON: want an object');
  return body;
}

function addMessage(m) {
  const li = document.createElement('li');
  li.dataset.op = String(m.op);
  const time = document.createElement('time');
  time.textContent = new Date().toLocaleTimeString('en-GB');
  const op = document.createElement('span');
  op.className = 'op';
  op.textContent = 'op ' + m.op;
  const text = document.createElement('span');
  text.className = 'body';
  try {
    text.textContent = utf8.decode(m.body);
  } catch {
    const hex = Array.from(m.body.subarray(0, 256), (b) => b.toString(16).padStart(2, '0')).join(' ');
    text.textContent = '(' + m.body.length + ' bytes, not UTF-8) ' + hex + (m.body.length > 256 ? ' …' : '');
    text.classList.add('binary');
  }
  li.append(time, op, text);
  const list = $('live-messages');
  list.prepend(li);
  while (list.children.length > MAX_MESSAGES) list.lastElementChild.remove();
}

async function join(ev) {
  ev.preventDefault();
  if (live) return;
  let auth;
  try {
    auth = authBody();
  } catch (e) {
    liveError(e.message);
    return;
  }
  liveError('');
  liveButtons(true);
  let mod;
  try {
    mod = await import(new URL('goim.js', API).href);
  } catch (e) {
    liveError('cannot load the client module /goim.js: ' + e.message);
    liveButtons(false);
    return;
  }
  const url = $('live-url').value.trim();
  const opts = {
    auth,
    onMessage: addMessage,
    onState: liveState,
    onHeartbeat: () => liveWhere(),
  };
  if (url) opts.url = url;
  else opts.api = API.href;
  try {
    live = new mod.Client(opts);
  } catch (e) {
    liveError(e.message);
    liveButtons(false);
    return;
  }
  const c = live;
  c.connect().then(liveWhere, (e) => {
    if (c === live) liveError(e.message);
  });
}

function leave() {
  if (live) live.close();
  live = null;
  liveButtons(false);
  liveWhere();
}

async function changeRoom(ev) {
  ev.preventDefault();
  if (!live) return;
  const room = $('live-change-room').value.trim();
  try {
    await live.changeRoom(room);
    liveError('');
  } catch (e) {
    liveError('change room: ' + e.message);
  }
  liveWhere();
}

// --- start ---

function start() {
  const mid = 100000 + Math.floor(Math.random() * 900000);
  $('live-auth').value = JSON.stringify({ mid, room_id: 'live://1000', platform: 'web', accepts: [1000] });

  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('login-token').value.trim();
    if (!t) return;
    token = t;
    sessionStorage.setItem(TOKEN_KEY, t);
    $('login-token').value = '';
    refresh();
  });
  $('sign-out').addEventListener('click', () => {
    forgetToken();
    refresh();
  });
  $('refresh-now').addEventListener('click', () => refresh());
  $('refresh-every').addEventListener('change', () => {
    stopTimer();
    armTimer();
  });
  $('top-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    refresh();
  });
  $('top-type').addEventListener('change', () => refresh());
  $('top-limit').addEventListener('change', () => refresh());
  $('push-target').addEventListener('change', pushTargetChanged);
  $('push-form').addEventListener('submit', push);
  $('live-mode').addEventListener('change', liveModeChanged);
  $('live-form').addEventListener('submit', join);
  $('live-leave').addEventListener('click', leave);
  $('live-clear').addEventListener('click', () => $('live-messages').replaceChildren());
  $('live-room-form').addEventListener('submit', changeRoom);
  pushTargetChanged();
  liveModeChanged();
  refresh();
}

start();
