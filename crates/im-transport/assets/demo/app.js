// The demo chat: register/login and lists over the HTTP API (same origin),
// messages, sync, typing, presence, recall and read receipts over WebSocket
// v2 (the port comes from /demo/config.json). No framework: the state lives
// in `state`, and render*() rebuild the DOM from it with textContent only.

import { Cmd, decode, frame } from './proto.js';

const $ = (id) => document.getElementById(id);
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

const PLATFORM = 'web';
const REQUEST_TIMEOUT_MS = 10000;
// Resends of a send left without a response before it is shown as failed.
const MAX_SEND_RESENDS = 3;
const HEARTBEAT_MS = 25000;
const TYPING_SEND_EVERY_MS = 1500;
const TYPING_SHOWN_MS = 4000;
const OK = 0;

const state = {
  me: '',
  token: '',
  cfg: null,
  ws: null,
  authed: false,
  wsSeq: 0,
  reconnectDelay: 1000,
  reconnectTimer: 0,
  heartbeat: 0,
  stopped: true, // logged out or kicked: no reconnect
  /** sequence -> {resolve, reject, timer} of requests awaiting their response */
  waiting: new Map(),
  /** conversation id -> conversation (see conversation()) */
  convs: new Map(),
  /** user id -> {online, lastSeen} */
  presence: new Map(),
  /** users whose presence this session watches (asked with 400) */
  watched: new Set(),
  active: '',
  lastTypingSent: 0,
};

// ------------------------------------------------------------------ helpers

function uuid() {
  // crypto.randomUUID needs a secure context; this page may be plain http.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function showError(text) {
  $('error').textContent = text || '';
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A JSON API call; resolves to `data`, rejects with the server's message. */
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let j = null;
  try { j = await r.json(); } catch { /* not JSON */ }
  if (!r.ok || !j || j.code !== OK) {
    throw new Error((j && j.message) || `HTTP ${r.status}`);
  }
  return j.data;
}

function singleId(a, b) {
  // User ids are ASCII ([A-Za-z0-9_-]): code-unit order is byte order.
  return a < b ? `single_${a}_${b}` : `single_${b}_${a}`;
}

/** The 1:1 peer named by a `single_<a>_<b>` id, seen from `me`. */
function peerOf(convId, me) {
  const rest = convId.slice('single_'.length);
  if (rest.startsWith(`${me}_`)) return rest.slice(me.length + 1);
  if (rest.endsWith(`_${me}`)) return rest.slice(0, rest.length - me.length - 1);
  return '';
}

/** The conversation `id`, created on first sight. */
function conversation(id) {
  let c = state.convs.get(id);
  if (!c) {
    const group = id.startsWith('group_');
    c = {
      id,
      group,
      groupId: group ? id.slice('group_'.length) : '',
      peer: group ? '' : peerOf(id, state.me),
      title: '',
      /** `${sender}/${client_msg_id}` -> message */
      messages: new Map(),
      unread: 0,
      /** highest seq already reflected in `unread` */
      counted: 0,
      historyLoaded: false,
      typing: null, // {user, timer}
      updated: 0,
    };
    c.title = group ? `group ${c.groupId}` : c.peer;
    state.convs.set(id, c);
    if (group) loadGroupName(c);
    else watchPresence([c.peer]);
  }
  return c;
}

async function loadGroupName(c) {
  try {
    const g = await api('GET', `/api/group/${encodeURIComponent(c.groupId)}`);
    if (g && g.groupName) { c.title = g.groupName; renderAll(); }
  } catch { /* keep the id as the title */ }
}

/** The highest seq held without a hole below it (from the first one held). */
function cursor(c) {
  const seqs = [...c.messages.values()].map((m) => m.seq).filter((s) => s > 0).sort((a, b) => a - b);
  if (!seqs.length) return 0;
  let l = seqs[0];
  for (const s of seqs) { if (s === l + 1) l = s; else if (s > l) break; }
  return l;
}

// ---------------------------------------------------------------- messages

/** A MessageInfo (socket) as the page's message. */
function fromInfo(m) {
  return {
    serverMsgId: m.server_msg_id,
    clientMsgId: m.client_msg_id,
    sender: m.sender_id,
    seq: Number(m.seq),
    text: fromUtf8.decode(m.content),
    time: Number(m.server_time),
    isRead: m.is_read,
    revoked: m.is_revoked,
  };
}

/** A MessageDto (HTTP history) as the page's message. */
function fromDto(m) {
  return {
    serverMsgId: m.serverMsgID,
    clientMsgId: m.clientMsgID,
    sender: m.senderID,
    seq: m.seq,
    text: m.content,
    time: m.serverTime,
    isRead: m.isRead,
    revoked: m.isRevoked,
  };
}

/** Adds or merges a committed message; `live` for pushes. */
function addMessage(convId, msg, live) {
  const c = conversation(convId);
  const key = `${msg.sender}/${msg.clientMsgId}`;
  const old = c.messages.get(key);
  const own = msg.sender === state.me;
  if (old) {
    // Known (a duplicate push, sync overlap, or our own send confirmed).
    old.serverMsgId = msg.serverMsgId || old.serverMsgId;
    old.seq = msg.seq || old.seq;
    old.time = msg.time || old.time;
    old.revoked = old.revoked || msg.revoked;
    if (old.state === 'sending' || old.state === 'failed') old.state = 'sent';
  } else {
    c.messages.set(key, { ...msg, own, state: own ? 'sent' : '', readBy: new Set() });
  }
  c.updated = Math.max(c.updated, msg.time || 0);
  if (!own && msg.seq > c.counted) {
    c.counted = msg.seq;
    if (!msg.isRead) {
      if (c.id === state.active && document.visibilityState === 'visible') markRead(c);
      else c.unread += 1;
    }
  }
  if (!own && live && c.typing && c.typing.user === msg.sender) clearTyping(c);
}

function sortedMessages(c) {
  return [...c.messages.values()].sort((a, b) => {
    if (a.seq && b.seq) return a.seq - b.seq;
    if (a.seq) return -1; // unconfirmed sends last, in send order
    if (b.seq) return 1;
    return a.localOrder - b.localOrder;
  });
}

let localOrder = 0;

function sendText(c, text) {
  const clientMsgId = uuid();
  const now = Date.now();
  const info = {
    client_msg_id: clientMsgId,
    conversation_id: c.id,
    sender_id: state.me,
    receiver_id: c.group ? '' : c.peer,
    group_id: c.groupId,
    message_type: 1,
    content: utf8.encode(text),
    send_time: now,
    conversation_type: c.group ? 2 : 1,
  };
  const msg = {
    serverMsgId: '', clientMsgId, sender: state.me, seq: 0, text, time: now, isRead: true,
    revoked: false, own: true, state: 'sending', readBy: new Set(), localOrder: localOrder++, info,
  };
  c.messages.set(`${state.me}/${clientMsgId}`, msg);
  c.updated = now;
  sendTyping(c, 0);
  renderAll();
  if (state.authed) submit(c, msg);
}

/** Sends (or resends: idempotent on client_msg_id) one of our messages. */
async function submit(c, msg) {
  try {
    const r = await request(Cmd.SEND_MSG_REQ, 'SendMessageRequest', { message: msg.info }, 'SendMessageResponse');
    if (r.error_code !== OK) {
      msg.state = 'failed';
      showError(`send failed: ${r.error_msg || r.error_code}`);
    } else {
      msg.serverMsgId = r.server_msg_id;
      msg.seq = Number(r.seq);
      msg.time = Number(r.server_time);
      if (msg.state === 'sending') msg.state = 'sent';
    }
  } catch (e) {
    // No response: the server leaves a send unanswered when a retry would
    // fix it (busy, rate limit, storage briefly away), so resend it with the
    // same client_msg_id, a few times like the SDK, then give up. Not
    // connected: resent after the next AUTH.
    if (msg.state !== 'sending') return;
    if (e.message === 'no response') {
      msg.tries = (msg.tries || 0) + 1;
      if (msg.tries <= MAX_SEND_RESENDS && state.authed) {
        submit(c, msg);
        return;
      }
      if (msg.tries > MAX_SEND_RESENDS) msg.state = 'failed';
    }
    showError(`send ${msg.state === 'failed' ? 'failed' : 'pending'}: ${e.message}`);
  }
  renderAll();
}

function markRead(c) {
  c.unread = 0;
  for (const m of c.messages.values()) if (!m.own) m.isRead = true;
  if (!state.authed) return;
  // An empty id list marks the whole conversation read.
  request(Cmd.READ_RECEIPT_REQ, 'ReadReceiptRequest', { server_msg_ids: [], conversation_id: c.id },
    'ReadReceiptResponse')
    .then((r) => { if (r.error_code !== OK) showError(`read receipt: ${r.error_msg}`); })
    .catch(() => {});
}

async function recall(c, msg) {
  try {
    const r = await request(Cmd.REVOKE_MSG_REQ, 'RevokeMessageRequest',
      { server_msg_id: msg.serverMsgId, conversation_id: c.id }, 'RevokeMessageResponse');
    if (r.error_code !== OK) showError(`recall refused: ${r.error_msg || r.error_code}`);
  } catch (e) {
    showError(`recall failed: ${e.message}`);
  }
}

function sendTyping(c, status) {
  if (!state.authed || !c) return;
  const now = Date.now();
  if (status === 1 && now - state.lastTypingSent < TYPING_SEND_EVERY_MS) return;
  if (status === 0 && state.lastTypingSent === 0) return;
  state.lastTypingSent = status === 1 ? now : 0;
  send(Cmd.TYPING_STATUS_REQ, 'TypingStatusRequest', { conversation_id: c.id, status });
}

function clearTyping(c) {
  if (c.typing) clearTimeout(c.typing.timer);
  c.typing = null;
}

// ---------------------------------------------------------------- presence

function watchPresence(users) {
  const fresh = users.filter((u) => u && u !== state.me && !state.watched.has(u));
  if (!fresh.length || !state.authed) return;
  for (const u of fresh) state.watched.add(u);
  queryPresence(fresh);
}

async function queryPresence(users) {
  try {
    const r = await request(Cmd.ONLINE_STATUS_REQ, 'OnlineStatusRequest', { user_ids: users }, 'OnlineStatusResponse');
    for (const s of r.statuses) setPresence(s);
    renderAll();
  } catch { /* asked again after the next AUTH */ }
}

function setPresence(s) {
  state.presence.set(s.user_id, { online: s.online, lastSeen: Number(s.last_seen) });
}

// ------------------------------------------------------------------ socket

function wsUrl() {
  // The server says whether its WS listener speaks TLS (tls.ws); a page
  // served over https cannot open a plain ws: socket (mixed content).
  const scheme = state.cfg.wsTls ? 'wss:' : 'ws:';
  return `${scheme}//${location.hostname}:${state.cfg.wsPort}${state.cfg.wsPath}`;
}

function setConn(s) {
  const c = $('conn');
  c.dataset.state = s;
  c.textContent = s;
}

function send(cmd, bodyName, body) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return 0;
  state.wsSeq = (state.wsSeq + 1) >>> 0 || 1;
  ws.send(frame(cmd, state.wsSeq, bodyName, body));
  return state.wsSeq;
}

/** Sends a request and resolves with its decoded response (same sequence). */
function request(cmd, bodyName, body, replyName) {
  return new Promise((resolve, reject) => {
    const seq = send(cmd, bodyName, body);
    if (!seq) { reject(new Error('not connected')); return; }
    const timer = setTimeout(() => {
      state.waiting.delete(seq);
      reject(new Error('no response'));
    }, REQUEST_TIMEOUT_MS);
    state.waiting.set(seq, { resolve, reject, timer, replyName });
  });
}

function connect() {
  clearTimeout(state.reconnectTimer);
  if (state.stopped) return;
  setConn('connecting');
  const ws = new WebSocket(wsUrl());
  ws.binaryType = 'arraybuffer';
  state.ws = ws;
  ws.onopen = () => {
    send(Cmd.AUTH_REQ, 'AuthRequest', { user_id: state.me, token: state.token, platform: PLATFORM });
  };
  ws.onmessage = (ev) => {
    if (!(ev.data instanceof ArrayBuffer)) return;
    try { onFrame(ev.data); } catch (e) { showError(`bad frame: ${e.message}`); }
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.authed = false;
    clearInterval(state.heartbeat);
    for (const [, w] of state.waiting) { clearTimeout(w.timer); w.reject(new Error('connection closed')); }
    state.waiting.clear();
    state.watched.clear();
    setConn('offline');
    if (!state.stopped) {
      state.reconnectTimer = setTimeout(connect, state.reconnectDelay);
      state.reconnectDelay = Math.min(state.reconnectDelay * 2, 15000);
    }
  };
}

function onFrame(buf) {
  const env = decode('WebSocketMessage', buf);
  const w = env.sequence ? state.waiting.get(env.sequence) : undefined;
  if (env.command === Cmd.AUTH_RSP) { onAuth(decode('AuthResponse', env.body)); return; }
  if (w && env.command !== Cmd.UNKNOWN) {
    state.waiting.delete(env.sequence);
    clearTimeout(w.timer);
    w.resolve(decode(w.replyName, env.body));
    return;
  }
  switch (env.command) {
    case Cmd.PUSH_MSG: {
      const m = decode('PushMessage', env.body).message;
      if (!m) return;
      addMessage(m.conversation_id, fromInfo(m), true);
      send(Cmd.MSG_ACK, 'MessageAck', { server_msg_id: m.server_msg_id, seq: m.seq });
      break;
    }
    case Cmd.REVOKE_MSG_PUSH: {
      const p = decode('RevokeMessagePush', env.body);
      const c = state.convs.get(p.conversation_id);
      for (const m of c ? c.messages.values() : []) if (m.serverMsgId === p.server_msg_id) m.revoked = true;
      break;
    }
    case Cmd.READ_RECEIPT_PUSH: {
      const p = decode('ReadReceiptPush', env.body);
      const c = conversation(p.conversation_id);
      if (p.user_id === state.me) {
        c.unread = 0; // read in another session of ours
      } else {
        const ids = new Set(p.server_msg_ids);
        for (const m of c.messages.values()) {
          if (m.own && ids.has(m.serverMsgId)) { m.readBy.add(p.user_id); m.state = 'read'; }
        }
      }
      break;
    }
    case Cmd.TYPING_STATUS_PUSH: {
      const p = decode('TypingStatusPush', env.body);
      const c = conversation(p.conversation_id);
      clearTyping(c);
      if (p.status === 1) {
        c.typing = { user: p.user_id, timer: setTimeout(() => { c.typing = null; renderAll(); }, TYPING_SHOWN_MS) };
      }
      break;
    }
    case Cmd.STATUS_CHANGE_PUSH: {
      const p = decode('StatusChangePush', env.body);
      if (p.status) setPresence(p.status);
      break;
    }
    case Cmd.KICK_OUT: {
      const k = decode('KickOutNotification', env.body);
      state.stopped = true;
      showError(`disconnected by the server: ${k.message || k.reason}`);
      break;
    }
    case Cmd.UNKNOWN: {
      const e = decode('ErrorResponse', env.body);
      showError(`server error ${e.error_code}: ${e.error_msg}`);
      if (w) { state.waiting.delete(env.sequence); clearTimeout(w.timer); w.reject(new Error(e.error_msg)); }
      break;
    }
    default:
      return; // HEARTBEAT_RSP and anything this page does not use
  }
  renderAll();
}

function onAuth(r) {
  if (r.error_code !== OK) {
    state.stopped = true;
    state.ws?.close();
    signOut(`the server refused the session: ${r.error_msg || r.error_code}`);
    return;
  }
  state.authed = true;
  state.reconnectDelay = 1000;
  setConn('online');
  clearInterval(state.heartbeat);
  state.heartbeat = setInterval(() => send(Cmd.HEARTBEAT_REQ, 'HeartbeatRequest', { client_time: Date.now() }),
    HEARTBEAT_MS);
  // Resend what was never confirmed (idempotent), then catch up, then watch peers.
  for (const c of state.convs.values()) {
    for (const m of c.messages.values()) if (m.own && m.state === 'sending') submit(c, m);
  }
  sync();
  watchPresence([...state.convs.values()].map((c) => c.peer));
  const active = state.convs.get(state.active);
  if (active && active.unread > 0) markRead(active);
}

/** BATCH_SYNC from our cursors, repeated until a reply brings nothing. */
async function sync() {
  for (let round = 0; round < 50 && state.authed; round++) {
    const states = [...state.convs.values()].map((c) => ({ conversation_id: c.id, last_seq: cursor(c) }));
    let r;
    try {
      r = await request(Cmd.BATCH_SYNC_REQ, 'BatchSyncRequest', { conversation_states: states }, 'BatchSyncResponse');
    } catch { return; }
    if (r.error_code !== OK) { showError(`sync failed: ${r.error_msg}`); return; }
    for (const cm of r.conversation_messages) {
      for (const m of cm.messages) addMessage(cm.conversation_id, fromInfo(m), false);
    }
    renderAll();
    if (!r.total_message_count) return;
  }
}

// ------------------------------------------------------------------ render

function renderAll() {
  renderConversations();
  renderChat();
}

function presenceDot(user) {
  const p = state.presence.get(user);
  const online = Boolean(p && p.online);
  const dot = el('span', `presence ${online ? 'online' : 'offline'}`, online ? 'online' : 'offline');
  dot.dataset.presence = online ? 'online' : 'offline';
  dot.title = online ? `${user} is online` : `${user} is offline`;
  return dot;
}

function lastText(c) {
  const ms = sortedMessages(c);
  const m = ms[ms.length - 1];
  if (!m) return '';
  return m.revoked ? 'message recalled' : `${m.own ? 'me' : m.sender}: ${m.text}`;
}

function renderConversations() {
  const ul = $('conversations');
  const convs = [...state.convs.values()].sort((a, b) => b.updated - a.updated || a.id.localeCompare(b.id));
  ul.replaceChildren(...convs.map((c) => {
    const li = el('li', `conv${c.id === state.active ? ' active' : ''}`);
    li.dataset.conv = c.id;
    li.append(c.group ? el('span', 'group-mark', '#') : presenceDot(c.peer));
    li.append(el('span', 'title', c.title));
    li.append(el('span', 'badge', c.unread > 0 ? String(c.unread) : ''));
    li.append(el('span', 'last', lastText(c)));
    li.addEventListener('click', () => openConversation(c.id));
    return li;
  }));
}

function renderChat() {
  const c = state.convs.get(state.active);
  $('composer').hidden = !c;
  $('invite').hidden = !c || !c.group;
  const dot = $('chat-presence');
  if (!c) {
    $('chat-title').textContent = 'Pick a conversation';
    dot.hidden = true;
    $('messages').replaceChildren();
    $('typing').textContent = '';
    return;
  }
  $('chat-title').textContent = c.title;
  dot.hidden = c.group;
  if (!c.group) dot.replaceWith(Object.assign(presenceDot(c.peer), { id: 'chat-presence' }));
  $('messages').replaceChildren(...sortedMessages(c).map((m) => renderMessage(c, m)));
  $('typing').textContent = c.typing ? `${c.typing.user} is typing…` : '';
}

function renderMessage(c, m) {
  const li = el('li', `msg ${m.own ? 'own' : 'other'}${m.revoked ? ' recalled' : ''}`);
  li.dataset.seq = String(m.seq || '');
  li.dataset.clientMsgId = m.clientMsgId;
  if (c.group && !m.own) li.append(el('span', 'from', m.sender));
  li.append(el('span', 'text', m.revoked ? 'message recalled' : m.text));
  const meta = el('span', 'meta');
  if (m.own && !m.revoked) {
    const label = m.state === 'read' && c.group ? `read by ${[...m.readBy].join(', ')}` : m.state;
    const st = el('span', 'state', label);
    st.dataset.state = m.state;
    meta.append(st);
    if (m.serverMsgId) {
      const b = el('button', 'recall', 'recall');
      b.type = 'button';
      b.addEventListener('click', () => recall(c, m));
      meta.append(b);
    }
  }
  if (meta.childElementCount) li.append(meta);
  return li;
}

// ------------------------------------------------------------------ flows

async function openConversation(id) {
  const c = conversation(id);
  state.active = id;
  showError('');
  renderAll();
  if (!c.historyLoaded) {
    try {
      const page = await api('GET', `/api/messages/history?conversationID=${encodeURIComponent(id)}&limit=50`);
      c.historyLoaded = true;
      for (const m of page) addMessage(id, fromDto(m), false);
    } catch (e) {
      // A conversation without messages yet has no history to show.
      if (c.messages.size) showError(`history: ${e.message}`);
    }
  }
  if (c.unread > 0 || [...c.messages.values()].some((m) => !m.own && !m.isRead)) markRead(c);
  renderAll();
  $('text').focus();
}

async function loadConversations() {
  const [rows, groups] = await Promise.all([
    api('GET', '/api/conversations?limit=200'),
    api('GET', '/api/group/my/list').catch(() => []),
  ]);
  for (const g of groups || []) {
    const c = conversation(`group_${g.groupID}`);
    if (g.groupName) c.title = g.groupName;
    c.updated = Math.max(c.updated, g.updateTime || 0);
  }
  for (const row of rows || []) {
    const c = conversation(row.conversationID);
    c.unread = row.unreadCount;
    c.counted = Math.max(c.counted, row.maxSeq);
    c.updated = Math.max(c.updated, row.updateTime || 0);
    if (!c.group && !c.peer && row.lastMessage) {
      const m = row.lastMessage;
      c.peer = m.senderID === state.me ? m.receiverID : m.senderID;
      c.title = c.peer;
    }
    if (row.lastMessage) addMessage(row.conversationID, fromDto(row.lastMessage), false);
  }
  renderAll();
}

async function startSession(me, token) {
  state.me = me;
  state.token = token;
  state.stopped = false;
  sessionStorage.setItem('im-demo', JSON.stringify({ me, token }));
  $('me').textContent = me;
  $('login-view').hidden = true;
  $('chat-view').hidden = false;
  $('logout').hidden = false;
  try {
    state.cfg = await (await fetch('config.json', { cache: 'no-store' })).json();
    await loadConversations();
  } catch (e) {
    if (/unauthorized|token|401/i.test(e.message)) { signOut(`please sign in again (${e.message})`); return; }
    showError(`loading: ${e.message}`);
    if (!state.cfg) return;
  }
  connect();
}

function signOut(message) {
  state.stopped = true;
  state.authed = false;
  clearInterval(state.heartbeat);
  clearTimeout(state.reconnectTimer);
  const ws = state.ws;
  state.ws = null;
  ws?.close();
  sessionStorage.removeItem('im-demo');
  Object.assign(state, { me: '', token: '', active: '' });
  state.convs.clear();
  state.presence.clear();
  state.watched.clear();
  $('me').textContent = '';
  setConn('offline');
  $('chat-view').hidden = true;
  $('logout').hidden = true;
  $('login-view').hidden = false;
  $('auth-error').textContent = message || '';
}

// ------------------------------------------------------------------ wiring

$('auth-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const action = ev.submitter?.value || 'login';
  const username = $('username').value.trim();
  const password = $('password').value;
  $('auth-error').textContent = '';
  try {
    if (action === 'register') {
      await api('POST', '/api/auth/register', { username, password, nickname: $('nickname').value.trim() });
    }
    const s = await api('POST', '/api/auth/login', { username, password, platform: PLATFORM });
    await startSession(s.userID, s.token);
  } catch (e) {
    $('auth-error').textContent = e.message;
  }
});

$('logout').addEventListener('click', async () => {
  try { await api('POST', '/api/auth/logout'); } catch { /* signed out here anyway */ }
  signOut('');
});

$('new-chat').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const peer = $('peer-id').value.trim();
  if (!peer || peer === state.me) { showError('enter the id of another user'); return; }
  try {
    const u = await api('GET', `/api/user/info/${encodeURIComponent(peer)}`);
    const c = conversation(singleId(state.me, u.userID));
    c.peer = u.userID;
    c.title = u.nickname && u.nickname !== u.userID ? `${u.nickname} (${u.userID})` : u.userID;
    $('peer-id').value = '';
    watchPresence([c.peer]);
    await openConversation(c.id);
  } catch (e) {
    showError(`cannot chat with ${peer}: ${e.message}`);
  }
});

// Suggestions for the user id field: /api/user/search (id or nickname).
let searchTimer = 0;
$('peer-id').addEventListener('input', () => {
  clearTimeout(searchTimer);
  const keyword = $('peer-id').value.trim();
  if (!keyword) { $('peer-suggestions').replaceChildren(); return; }
  searchTimer = setTimeout(async () => {
    try {
      const users = await api('GET', `/api/user/search?keyword=${encodeURIComponent(keyword)}&limit=10`);
      $('peer-suggestions').replaceChildren(...users.filter((u) => u.userID !== state.me).map((u) => {
        const o = document.createElement('option');
        o.value = u.userID;
        o.label = u.nickname || u.userID;
        return o;
      }));
    } catch { /* no suggestions */ }
  }, 250);
});

$('new-group').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = $('group-name').value.trim() || 'group';
  const members = $('group-members').value.split(',').map((s) => s.trim()).filter(Boolean);
  try {
    const g = await api('POST', '/api/group/create', { groupName: name, memberUserIDs: members });
    const c = conversation(`group_${g.groupID}`);
    c.title = g.groupName || c.title;
    c.updated = Date.now();
    $('group-name').value = '';
    $('group-members').value = '';
    await openConversation(c.id);
  } catch (e) {
    showError(`cannot create the group: ${e.message}`);
  }
});

$('invite').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const c = state.convs.get(state.active);
  const id = $('invite-id').value.trim();
  if (!c || !c.group || !id) return;
  try {
    await api('POST', `/api/group/${encodeURIComponent(c.groupId)}/invite`, { userIDs: [id] });
    $('invite-id').value = '';
    showError('');
  } catch (e) {
    showError(`cannot invite ${id}: ${e.message}`);
  }
});

$('composer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const c = state.convs.get(state.active);
  const text = $('text').value;
  if (!c || !text.trim()) return;
  $('text').value = '';
  sendText(c, text);
});

$('text').addEventListener('input', () => {
  const c = state.convs.get(state.active);
  if ($('text').value) sendTyping(c, 1);
  else sendTyping(c, 0);
});

document.addEventListener('visibilitychange', () => {
  const c = state.convs.get(state.active);
  if (document.visibilityState === 'visible' && c && c.unread > 0) { markRead(c); renderAll(); }
});

// A reload keeps the session of this tab.
try {
  const saved = JSON.parse(sessionStorage.getItem('im-demo') || 'null');
  if (saved && saved.me && saved.token) startSession(saved.me, saved.token);
} catch {
  sessionStorage.removeItem('im-demo');
}
