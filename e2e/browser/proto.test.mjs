// The demo's JS protobuf codec against the byte dumps of docs/protocol.md §10
// (which crates/im-protocol/tests/it/doc_bytes.rs checks against the Rust
// encoders). Run: node --test e2e/browser/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import {
  Cmd, DecodeError, decode, encode, frame, hex, unhex,
} from '../../crates/im-transport/assets/demo/proto.js';

const doc = readFileSync(fileURLToPath(new URL('../../docs/protocol.md', import.meta.url)), 'utf8');

/** The bytes of the hex dump after `<!-- wire:NAME -->`. */
function dump(name) {
  const at = doc.indexOf(`<!-- wire:${name} -->`);
  assert.notEqual(at, -1, `docs/protocol.md has no wire:${name}`);
  const block = doc.slice(at).split('```')[1];
  const lines = block.split('\n').filter((l) => /^[0-9A-F]{4}  /.test(l));
  return unhex(lines.map((l) => l.slice(6)).join(' '));
}

/** A TCP packet's body (after the 16-byte header). */
const body = (name) => dump(name).subarray(16);

test('the WS AUTH_REQ frame matches the contract bytes', () => {
  const bytes = frame(Cmd.AUTH_REQ, 1, 'AuthRequest',
    { user_id: 'alice', token: 'demo_token_alice', platform: 'iOS' });
  assert.equal(hex(bytes), hex(dump('ws-auth-req')));
  const env = decode('WebSocketMessage', bytes);
  assert.equal(env.command, 100);
  assert.equal(env.sequence, 1);
  assert.equal(env.timestamp, 0);
  assert.deepEqual(decode('AuthRequest', env.body),
    { user_id: 'alice', token: 'demo_token_alice', platform: 'iOS' });
});

test('AUTH_RSP decodes max_seq and defaults the omitted fields', () => {
  assert.deepEqual(decode('AuthResponse', body('tcp-auth-rsp')),
    { error_code: 0, error_msg: '', max_seq: 7 });
  assert.deepEqual(decode('AuthResponse', new Uint8Array(0)),
    { error_code: 0, error_msg: '', max_seq: 0 });
});

test('SEND_MSG_REQ with a nested MessageInfo and an int64 send_time', () => {
  const bytes = encode('SendMessageRequest', {
    message: {
      client_msg_id: '3f2b8c1e-5d4a-4e6f-9a7b-0c1d2e3f4a5b',
      conversation_id: 'single_alice_bob',
      receiver_id: 'bob',
      message_type: 1,
      content: new TextEncoder().encode('hi bob'),
      send_time: 1764500000000,
    },
  });
  assert.equal(hex(bytes), hex(body('tcp-send-req')));
  const m = decode('SendMessageRequest', bytes).message;
  assert.equal(m.send_time, 1764500000000);
  assert.equal(new TextDecoder().decode(m.content), 'hi bob');
  assert.equal(m.is_revoked, false);
  assert.deepEqual(m.read_by, []);
});

test('SEND_MSG_RSP decodes ids, seq and server_time', () => {
  const r = decode('SendMessageResponse', body('tcp-send-rsp'));
  assert.deepEqual(r, {
    error_code: 0,
    error_msg: '',
    server_msg_id: '019ad4654d2a7c3e9b10f4a6d2e85b17',
    client_msg_id: '3f2b8c1e-5d4a-4e6f-9a7b-0c1d2e3f4a5b',
    seq: 3,
    server_time: 1764500000042,
  });
  assert.equal(hex(encode('SendMessageResponse', r)), hex(body('tcp-send-rsp')));
});

test('64-bit and negative integers round-trip', () => {
  for (const v of [0, 1, 127, 128, 2 ** 53 - 1, -1, -(2 ** 53 - 1)]) {
    assert.equal(decode('MessageAck', encode('MessageAck', { seq: v })).seq, v, `${v}`);
  }
  const big = 2n ** 62n + 5n;
  assert.equal(decode('MessageAck', encode('MessageAck', { seq: big })).seq, big);
  assert.equal(decode('MessageAck', encode('MessageAck', { seq: -(2n ** 63n) })).seq, -(2n ** 63n));
  // A negative int32 is ten bytes on the wire.
  assert.equal(encode('TypingStatusRequest', { status: -1 }).length, 11);
  assert.equal(decode('TypingStatusRequest', encode('TypingStatusRequest', { status: -1 })).status, -1);
  assert.throws(() => encode('MessageAck', { seq: 2n ** 63n }), RangeError);
  assert.throws(() => encode('TypingStatusRequest', { status: 2 ** 31 }), RangeError);
  assert.throws(() => encode('WebSocketMessage', { sequence: -1 }), RangeError);
  assert.throws(() => encode('MessageAck', { seq: 1.5 }), TypeError);
});

test('repeated strings and repeated messages', () => {
  const req = { user_ids: ['alice', 'bob', ''] };
  assert.deepEqual(decode('OnlineStatusRequest', encode('OnlineStatusRequest', req)), req);
  const rsp = {
    error_code: 0,
    error_msg: '',
    statuses: [
      { user_id: 'bob', online: true, platforms: ['web', 'iOS'], last_seen: 1764500000000 },
      { user_id: 'carol', online: false, platforms: [], last_seen: 0 },
    ],
  };
  assert.deepEqual(decode('OnlineStatusResponse', encode('OnlineStatusResponse', rsp)), rsp);
  const sync = decode('BatchSyncResponse', encode('BatchSyncResponse', {
    conversation_messages: [{ conversation_id: 'c', messages: [{ seq: 1 }, { seq: 2 }], max_seq: 2 }],
    total_message_count: 2,
  }));
  assert.deepEqual(sync.conversation_messages[0].messages.map((m) => m.seq), [1, 2]);
  assert.equal(sync.conversation_messages[0].max_seq, 2);
});

test('unknown fields are skipped, whatever their wire type', () => {
  // field 9 varint, field 10 fixed64, field 11 bytes, field 12 fixed32, then user_id.
  const bytes = unhex('48 96 01 51 01 02 03 04 05 06 07 08 5A 02 68 69 65 01 02 03 04 0A 01 61');
  assert.equal(decode('AuthRequest', bytes).user_id, 'a');
});

test('malformed input is a DecodeError, never a wrong value', () => {
  const bad = [
    '0A 05 61 6C',            // truncated string
    '08',                     // truncated varint
    '08 FF FF FF FF FF FF FF FF FF FF 01', // varint over ten bytes
    '0A FF FF FF FF 0F',      // length beyond the buffer
    '08 01',                  // user_id (string) with a varint wire type
    '00 01',                  // field number 0
    '0B',                     // group wire type
    '0A 02 C3 28',            // invalid UTF-8
  ];
  for (const h of bad) {
    assert.throws(() => decode('AuthRequest', unhex(h)), DecodeError, h);
  }
  assert.throws(() => decode('NoSuchMessage', new Uint8Array(0)), TypeError);
});
