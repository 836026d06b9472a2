#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/
(from the contract's worked examples; cargo fuzz grows them from there)."""
import os, struct, sys

def crc16(data):  # CRC-16/CCITT-FALSE
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc

def packet(cmd, seq, body, flags=0):
    head = struct.pack(">HBBHII", 0xEF89, 1, flags, cmd, seq, len(body))
    return head + struct.pack(">H", crc16(head)) + body

AUTH = bytes.fromhex("0A05616C6963651210646 56D6F5F746F6B656E5F616C6963651A03694F53".replace(" ", ""))
SEND_V2 = bytes.fromhex("0A1B120263311A0A73696E676C655F615F622A01623801420268694 87B".replace(" ", ""))
SEND_V1 = bytes.fromhex("0A11313733323030303030303030303132333412 0A73696E676C655F615F62".replace(" ", ""))
SYNC_V2 = bytes.fromhex("0A0C0A0873696E676C655F611001" "1064")
ENVELOPE = bytes.fromhex("0864100 11A1E".replace(" ", "")) + AUTH
assert crc16(b"123456789") == 0x29B1

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")
def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

put("ws_envelope", "auth", ENVELOPE)
put("ws_envelope", "send_v2", bytes([0x08, 0xC8, 0x01, 0x10, 0x02, 0x1A, len(SEND_V2)]) + SEND_V2)
put("ws_envelope", "empty", b"")
put("proto_bodies", "auth_v1", bytes([4]) + AUTH)
put("proto_bodies", "send_v1", bytes([7]) + SEND_V1)
put("proto_bodies", "send_v2", bytes([0x80 | 7]) + SEND_V2)
put("proto_bodies", "sync_v2", bytes([0x80 | 15]) + SYNC_V2)
stream = packet(100, 1, AUTH) + packet(5, 2, b"") + packet(200, 3, SEND_V2) + packet(101, 1, bytes.fromhex("08641 20D496E76616C696420746F6B656E".replace(" ", "")))
put("tcp_stream", "coalesced", b"\x04\x00\x12\x34" + stream)
put("tcp_stream", "byte_split", b"\x00\x40\x00\x01" + stream)
put("tcp_stream", "oversized", b"\x00\x10\x00\x02" + struct.pack(">HBBHII", 0xEF89, 1, 0, 200, 1, 1 << 31)
    + struct.pack(">H", crc16(struct.pack(">HBBHII", 0xEF89, 1, 0, 200, 1, 1 << 31))))
put("tcp_stream", "server_limit", b"\xff\xff\x00\x03" + packet(200, 9, SEND_V2))
bodies = [
    b'{"username":"alice","password":"correct horse","nickname":"A"}',
    b'{"username":"alice","password":"pw","platform":"iOS"}',
    b'{"refreshToken":"x.y.z"}',
    b'{"refreshToken":null}',
    b'{"userID":"bob","message":"hi"}',
    b'{"userID":"bob"}',
    b'{"userID":"bob","remark":"B"}',
    b'{"groupName":"g","faceURL":"u","memberUserIDs":["a","b"]}',
    b'{"groupID":"g1","groupName":"n","extra":null}',
    b'{"userIDs":["a","b"]}',
    b'{"userID":"a","role":2}',
    b'{"userID":"a","durationSeconds":60}',
    b'{"mute":true}',
    b'{"lastSeq":0,"count":500,"timestamp":1732000000000}',
    b'{"conversation_id":"single_a_b","start_seq":1,"end_seq":9,"count":100}',
    b'{"userIDs":["a"]}',
    b'{"nickname":"n","gender":1,"birth":0}',
]
for i, b in enumerate(bodies):
    put("http_json", "body%02d" % i, bytes([i, 0]) + b)
for i, q in enumerate([b"limit=10", b"conversationID=single_a_b&beforeSeq=5&limit=3",
                       b"direction=outgoing", b"\x00" + bodies[5], b"keyword=al&limit=5"]):
    put("http_json", "query%d" % i, bytes([i, 3]) + q)
print("seeds written under", os.path.normpath(root))
