// A small hand-rolled protobuf (proto3) codec for exactly the im.protocol v2
// messages the demo uses. Field numbers as in proto/v2/im_protocol.proto.
//
// encode(name, object) -> Uint8Array, decode(name, bytes) -> object.
// Scalars at their default (0, "", false, empty) are not written; decoding
// fills every field of the schema with its default and skips unknown fields.
// 64-bit integers decode to Numbers when they are safe integers, else to
// BigInts; either may be given to the encoder.

/** Command numbers (CommandType). */
export const Cmd = Object.freeze({
  UNKNOWN: 0,
  HEARTBEAT_REQ: 5,
  HEARTBEAT_RSP: 6,
  AUTH_REQ: 100,
  AUTH_RSP: 101,
  KICK_OUT: 104,
  SEND_MSG_REQ: 200,
  SEND_MSG_RSP: 201,
  PUSH_MSG: 202,
  MSG_ACK: 203,
  REVOKE_MSG_REQ: 205,
  REVOKE_MSG_RSP: 206,
  REVOKE_MSG_PUSH: 207,
  BATCH_SYNC_REQ: 300,
  BATCH_SYNC_RSP: 301,
  ONLINE_STATUS_REQ: 400,
  ONLINE_STATUS_RSP: 401,
  STATUS_CHANGE_PUSH: 402,
  READ_RECEIPT_REQ: 500,
  READ_RECEIPT_RSP: 501,
  READ_RECEIPT_PUSH: 502,
  TYPING_STATUS_REQ: 600,
  TYPING_STATUS_PUSH: 601,
});

// A field: [number, name, type, repeated?]. A type is a scalar name or the
// name of another message of this table.
const S = 'string', B = 'bytes', I32 = 'int32', I64 = 'int64', U32 = 'uint32', BOOL = 'bool';
const status = [[1, 'error_code', I32], [2, 'error_msg', S]];

export const schemas = {
  WebSocketMessage: [[1, 'command', I32], [2, 'sequence', U32], [3, 'body', B], [4, 'timestamp', I64]],
  HeartbeatRequest: [[1, 'client_time', I64]],
  HeartbeatResponse: [[1, 'server_time', I64]],
  AuthRequest: [[1, 'user_id', S], [2, 'token', S], [3, 'platform', S]],
  AuthResponse: [...status, [3, 'max_seq', I64]],
  KickOutNotification: [[1, 'reason', I32], [2, 'message', S]],
  ErrorResponse: status,
  MessageInfo: [
    [1, 'server_msg_id', S], [2, 'client_msg_id', S], [3, 'conversation_id', S],
    [4, 'sender_id', S], [5, 'receiver_id', S], [6, 'group_id', S], [7, 'message_type', I32],
    [8, 'content', B], [9, 'send_time', I64], [10, 'server_time', I64], [11, 'seq', I64],
    [12, 'status', I32], [13, 'is_read', BOOL], [14, 'create_time', I64], [15, 'extra', S],
    [16, 'read_by', S, true], [17, 'read_time', I64], [18, 'is_deleted', BOOL],
    [19, 'is_revoked', BOOL], [20, 'revoked_by', S], [21, 'revoked_time', I64],
    [22, 'attached_info', S], [23, 'conversation_type', I32],
  ],
  SendMessageRequest: [[1, 'message', 'MessageInfo']],
  SendMessageResponse: [...status, [3, 'server_msg_id', S], [4, 'client_msg_id', S],
    [5, 'seq', I64], [6, 'server_time', I64]],
  PushMessage: [[1, 'message', 'MessageInfo']],
  MessageAck: [[1, 'server_msg_id', S], [2, 'seq', I64]],
  RevokeMessageRequest: [[1, 'server_msg_id', S], [2, 'conversation_id', S]],
  RevokeMessageResponse: status,
  RevokeMessagePush: [[1, 'server_msg_id', S], [2, 'conversation_id', S], [3, 'revoked_by', S],
    [4, 'revoked_time', I64]],
  ConversationSyncState: [[1, 'conversation_id', S], [2, 'last_seq', I64]],
  BatchSyncRequest: [[1, 'conversation_states', 'ConversationSyncState', true],
    [2, 'max_count_per_conversation', I32]],
  ConversationMessages: [[1, 'conversation_id', S], [2, 'messages', 'MessageInfo', true],
    [3, 'max_seq', I64], [4, 'synced_seq', I64], [5, 'has_more', BOOL]],
  BatchSyncResponse: [...status, [3, 'conversation_messages', 'ConversationMessages', true],
    [4, 'server_time', I64], [5, 'total_message_count', I32]],
  ReadReceiptRequest: [[1, 'server_msg_ids', S, true], [2, 'conversation_id', S]],
  ReadReceiptResponse: status,
  ReadReceiptPush: [[1, 'server_msg_ids', S, true], [2, 'conversation_id', S], [3, 'user_id', S],
    [4, 'read_time', I64]],
  TypingStatusRequest: [[1, 'conversation_id', S], [2, 'status', I32]],
  TypingStatusPush: [[1, 'conversation_id', S], [2, 'user_id', S], [3, 'status', I32]],
  OnlineStatusRequest: [[1, 'user_ids', S, true]],
  UserStatus: [[1, 'user_id', S], [2, 'online', BOOL], [3, 'platforms', S, true], [4, 'last_seen', I64]],
  OnlineStatusResponse: [...status, [3, 'statuses', 'UserStatus', true]],
  StatusChangePush: [[1, 'status', 'UserStatus']],
};

const VARINT = 0, I64WIRE = 1, LEN = 2, I32WIRE = 5;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });
const MASK64 = (1n << 64n) - 1n;

/** A protobuf decoding failure (truncated, malformed or mistyped input). */
export class DecodeError extends Error {}

function schemaOf(name) {
  const s = schemas[name];
  if (!s) throw new TypeError(`no schema for ${name}`);
  return s;
}

function isScalar(type) {
  return type === S || type === B || type === I32 || type === I64 || type === U32 || type === BOOL;
}

// ---------------------------------------------------------------- encoding

class Writer {
  constructor() { this.parts = []; this.len = 0; }
  byte(b) { this.parts.push(Uint8Array.of(b)); this.len += 1; }
  raw(u8) { this.parts.push(u8); this.len += u8.length; }
  /** An unsigned varint of a BigInt in [0, 2^64). */
  varint(v) {
    const out = [];
    while (v > 0x7fn) { out.push(Number(v & 0x7fn) | 0x80); v >>= 7n; }
    out.push(Number(v));
    this.raw(Uint8Array.from(out));
  }
  tag(field, wire) { this.varint(BigInt(field) << 3n | BigInt(wire)); }
  finish() {
    const out = new Uint8Array(this.len);
    let at = 0;
    for (const p of this.parts) { out.set(p, at); at += p.length; }
    return out;
  }
}

function toBigInt(v, type, name) {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  if (typeof v === 'boolean' && type === BOOL) return v ? 1n : 0n;
  throw new TypeError(`${name}: ${type} wants an integer, got ${typeof v}`);
}

function isDefault(v, type) {
  if (v === undefined || v === null) return true;
  if (type === S) return v === '';
  if (type === B) return v.length === 0;
  if (type === BOOL) return v === false;
  if (isScalar(type)) return v === 0 || v === 0n;
  return false; // a present sub-message is written even when empty
}

function writeValue(w, field, type, v, name) {
  switch (type) {
    case S: case B: {
      const bytes = type === S ? utf8.encode(String(v)) : v;
      if (!(bytes instanceof Uint8Array)) throw new TypeError(`${name}: bytes wants a Uint8Array`);
      w.tag(field, LEN); w.varint(BigInt(bytes.length)); w.raw(bytes);
      return;
    }
    case U32: {
      const n = toBigInt(v, type, name);
      if (n < 0n || n > 0xffffffffn) throw new RangeError(`${name}: ${n} is not a uint32`);
      w.tag(field, VARINT); w.varint(n);
      return;
    }
    case I32: case I64: {
      const n = toBigInt(v, type, name);
      const bits = type === I32 ? 32 : 64;
      if (n !== BigInt.asIntN(bits, n)) throw new RangeError(`${name}: ${n} is not an ${type}`);
      // Negative values are sign-extended to 64 bits (ten bytes), as protobuf does.
      w.tag(field, VARINT); w.varint(n & MASK64);
      return;
    }
    case BOOL:
      w.tag(field, VARINT); w.varint(v ? 1n : 0n);
      return;
    default: {
      const inner = encode(type, v);
      w.tag(field, LEN); w.varint(BigInt(inner.length)); w.raw(inner);
    }
  }
}

/** Serializes `obj` as the message `name`. Unknown keys are ignored. */
export function encode(name, obj = {}) {
  const w = new Writer();
  for (const [field, key, type, repeated] of schemaOf(name)) {
    const v = obj[key];
    if (repeated) {
      for (const item of v ?? []) writeValue(w, field, type, item, `${name}.${key}`);
    } else if (!isDefault(v, type)) {
      writeValue(w, field, type, v, `${name}.${key}`);
    }
  }
  return w.finish();
}

// ---------------------------------------------------------------- decoding

class Reader {
  constructor(u8) { this.buf = u8; this.pos = 0; }
  done() { return this.pos >= this.buf.length; }
  /** An unsigned varint as a BigInt (at most ten bytes). */
  varint() {
    let v = 0n, shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new DecodeError('truncated varint');
      const b = this.buf[this.pos++];
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v & MASK64;
      shift += 7n;
    }
    throw new DecodeError('varint longer than ten bytes');
  }
  take(n) {
    if (n > this.buf.length - this.pos) throw new DecodeError('truncated field');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  skip(wire) {
    switch (wire) {
      case VARINT: this.varint(); return;
      case I64WIRE: this.take(8); return;
      case LEN: this.take(this.length()); return;
      case I32WIRE: this.take(4); return;
      default: throw new DecodeError(`unsupported wire type ${wire}`);
    }
  }
  length() {
    const n = this.varint();
    if (n > BigInt(this.buf.length - this.pos)) throw new DecodeError('truncated field');
    return Number(n);
  }
}

function toNumber(n) {
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

function defaultOf(type, repeated) {
  if (repeated) return [];
  switch (type) {
    case S: return '';
    case B: return new Uint8Array(0);
    case BOOL: return false;
    case I32: case I64: case U32: return 0;
    default: return null;
  }
}

function readValue(r, wire, type, where) {
  const want = type === I32 || type === I64 || type === U32 || type === BOOL ? VARINT : LEN;
  if (wire !== want) throw new DecodeError(`${where}: wire type ${wire}, expected ${want}`);
  switch (type) {
    case S:
      try { return fromUtf8.decode(r.take(r.length())); }
      catch (e) { if (e instanceof DecodeError) throw e; throw new DecodeError(`${where}: invalid UTF-8`); }
    case B: return r.take(r.length()).slice();
    case BOOL: return r.varint() !== 0n;
    case U32: return Number(BigInt.asUintN(32, r.varint()));
    case I32: return Number(BigInt.asIntN(32, r.varint()));
    case I64: return toNumber(BigInt.asIntN(64, r.varint()));
    default: return decode(type, r.take(r.length()));
  }
}

/** Parses `bytes` (Uint8Array or ArrayBuffer) as the message `name`. */
export function decode(name, bytes) {
  const schema = schemaOf(name);
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const out = {};
  const byNumber = new Map();
  for (const f of schema) {
    out[f[1]] = defaultOf(f[2], f[3]);
    byNumber.set(f[0], f);
  }
  const r = new Reader(u8);
  while (!r.done()) {
    const key = r.varint();
    const field = Number(key >> 3n), wire = Number(key & 7n);
    if (field === 0) throw new DecodeError(`${name}: field number 0`);
    const f = byNumber.get(field);
    if (!f) { r.skip(wire); continue; }
    const [, k, type, repeated] = f;
    const where = `${name}.${k}`;
    if (repeated && wire === LEN && (type === I32 || type === I64 || type === U32 || type === BOOL)) {
      // A packed repeated scalar (none of our schemas has one, but be lenient).
      const inner = new Reader(r.take(r.length()));
      while (!inner.done()) out[k].push(readValue(inner, VARINT, type, where));
    } else if (repeated) {
      out[k].push(readValue(r, wire, type, where));
    } else {
      out[k] = readValue(r, wire, type, where);
    }
  }
  return out;
}

/** A `WebSocketMessage` frame carrying `body` (a message of `bodyName`). */
export function frame(command, sequence, bodyName, body) {
  return encode('WebSocketMessage', {
    command,
    sequence,
    body: bodyName ? encode(bodyName, body) : new Uint8Array(0),
  });
}

/** Bytes as the spaced upper-case hex of docs/protocol.md. */
export function hex(u8) {
  return Array.from(u8, (b) => b.toString(16).toUpperCase().padStart(2, '0')).join(' ');
}

/** The inverse of `hex` (whitespace ignored). */
export function unhex(s) {
  const clean = s.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) throw new TypeError('not hex');
  return Uint8Array.from(clean.match(/../g) ?? [], (h) => parseInt(h, 16));
}
