//! A lean client side of three wire formats, over one `TcpStream` per
//! connection: im-server TCP v2 packets, im-server WebSocket envelopes
//! (`/ws/v2`), and the NATS text protocol over nats-server's WebSocket
//! listener. Reads are cancel-safe (`read_buf` into a buffer, decoding from
//! the buffer), so a read may sit in a `select!` beside a timer.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use im_protocol::tcp::{decode_packet, encode_packet};
use im_protocol::ws::{decode_envelope_shared, encode_envelope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Largest frame accepted from a server.
const MAX_FRAME: usize = 4 << 20;
/// Bound of one write of queued bytes.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BIN: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// im-server TCP v2 (16-byte header packets).
    ImTcp,
    /// im-server WebSocket `/ws/v2` (one `WebSocketMessage` per binary frame).
    ImWs,
    /// NATS text protocol inside WebSocket binary frames.
    NatsWs,
}

/// One im-server frame: command, sequence, protobuf body.
#[derive(Debug)]
pub struct ImFrame {
    pub command: i32,
    pub sequence: u32,
    pub body: Bytes,
}

/// One NATS protocol operation from the server.
#[derive(Debug)]
pub enum NatsOp {
    Msg { payload: Bytes },
    Ping,
    Pong,
    Info,
    Ok,
    Err(String),
}

/// What a read yields.
#[derive(Debug)]
pub enum In {
    Im(ImFrame),
    Nats(NatsOp),
    /// A WebSocket ping (answered by queueing a pong).
    WsPing(Bytes),
    Closed,
}

/// One client connection.
pub struct Conn {
    stream: TcpStream,
    pub kind: Kind,
    /// Raw bytes from the socket.
    rbuf: BytesMut,
    /// WebSocket: data of a fragmented message (im) or the NATS byte stream.
    data: BytesMut,
    /// Bytes queued for the next [`Conn::flush`].
    wbuf: BytesMut,
    scratch: BytesMut,
}

impl Conn {
    /// TCP connect (and the WebSocket upgrade for WS kinds), bounded by `within`.
    pub async fn connect(kind: Kind, addr: SocketAddr, within: Duration) -> io::Result<Self> {
        timeout(within, Self::connect_inner(kind, addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    }

    async fn connect_inner(kind: Kind, addr: SocketAddr) -> io::Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut rbuf = BytesMut::with_capacity(1024);
        match kind {
            Kind::ImTcp => {}
            Kind::ImWs => ws_handshake(&mut stream, addr, "/ws/v2", &mut rbuf).await?,
            Kind::NatsWs => ws_handshake(&mut stream, addr, "/", &mut rbuf).await?,
        }
        Ok(Self {
            stream,
            kind,
            rbuf,
            data: BytesMut::new(),
            wbuf: BytesMut::new(),
            scratch: BytesMut::new(),
        })
    }

    /// Queues one im frame (TCP packet or WS envelope).
    pub fn queue_im(&mut self, command: u16, sequence: u32, body: &[u8]) {
        match self.kind {
            Kind::ImTcp => encode_packet(command, sequence, body, &mut self.wbuf),
            Kind::ImWs | Kind::NatsWs => {
                self.scratch.clear();
                encode_envelope(i32::from(command), sequence, body, 0, &mut self.scratch);
                ws_frame(OP_BIN, &self.scratch, &mut self.wbuf);
            }
        }
    }

    /// Queues NATS protocol text (one WS binary frame).
    pub fn queue_nats(&mut self, text: &[u8]) {
        ws_frame(OP_BIN, text, &mut self.wbuf);
    }

    /// Queues a WS pong.
    pub fn queue_pong(&mut self, payload: &[u8]) {
        ws_frame(OP_PONG, payload, &mut self.wbuf);
    }

    pub fn has_queued(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Writes everything queued (bounded by a timeout).
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let r = timeout(WRITE_TIMEOUT, self.stream.write_all(&self.wbuf)).await;
        self.wbuf.clear();
        match r {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
    }

    /// The next item. Cancel-safe.
    pub async fn read(&mut self) -> io::Result<In> {
        loop {
            if let Some(item) = self.decode()? {
                return Ok(item);
            }
            if self.rbuf.capacity() - self.rbuf.len() < 512 {
                self.rbuf.reserve(4096);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Ok(In::Closed);
            }
        }
    }

    /// The next item already buffered, without reading the socket.
    pub fn try_next(&mut self) -> io::Result<Option<In>> {
        self.decode()
    }

    fn decode(&mut self) -> io::Result<Option<In>> {
        match self.kind {
            Kind::ImTcp => Ok(decode_packet(&mut self.rbuf, MAX_FRAME)
                .map_err(|e| bad(format!("bad TCP packet: {e}")))?
                .map(|p| {
                    In::Im(ImFrame {
                        command: i32::from(p.command),
                        sequence: p.sequence,
                        body: p.body,
                    })
                })),
            Kind::ImWs => loop {
                let Some(f) = ws_decode(&mut self.rbuf)? else {
                    return Ok(None);
                };
                match f.opcode {
                    OP_PING => return Ok(Some(In::WsPing(f.payload))),
                    OP_PONG => {}
                    OP_CLOSE => return Ok(Some(In::Closed)),
                    OP_BIN | OP_TEXT | OP_CONT => {
                        let whole = if f.fin && self.data.is_empty() {
                            f.payload
                        } else {
                            self.data.extend_from_slice(&f.payload);
                            if !f.fin {
                                continue;
                            }
                            self.data.split().freeze()
                        };
                        let env = decode_envelope_shared(whole)
                            .map_err(|e| bad(format!("bad envelope: {e}")))?;
                        return Ok(Some(In::Im(ImFrame {
                            command: env.command,
                            sequence: env.sequence,
                            body: env.body,
                        })));
                    }
                    other => return Err(bad(format!("WebSocket opcode {other}"))),
                }
            },
            Kind::NatsWs => loop {
                if let Some(op) = nats_decode(&mut self.data)? {
                    return Ok(Some(In::Nats(op)));
                }
                let Some(f) = ws_decode(&mut self.rbuf)? else {
                    return Ok(None);
                };
                match f.opcode {
                    OP_PING => return Ok(Some(In::WsPing(f.payload))),
                    OP_PONG => {}
                    OP_CLOSE => return Ok(Some(In::Closed)),
                    OP_BIN | OP_TEXT | OP_CONT => self.data.extend_from_slice(&f.payload),
                    other => return Err(bad(format!("WebSocket opcode {other}"))),
                }
            },
        }
    }
}

pub fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// HTTP/1.1 upgrade; bytes after the response head stay in `rbuf`.
async fn ws_handshake(
    stream: &mut TcpStream,
    addr: SocketAddr,
    path: &str,
    rbuf: &mut BytesMut,
) -> io::Result<()> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    loop {
        if let Some(end) = find(rbuf, b"\r\n\r\n") {
            let head = rbuf.split_to(end + 4);
            let status = head
                .as_ref()
                .split(|b: &u8| *b == b'\n')
                .next()
                .unwrap_or_default();
            if !status.windows(5).any(|w| w == b" 101 ") {
                return Err(bad(format!(
                    "WebSocket upgrade refused: {}",
                    String::from_utf8_lossy(status).trim()
                )));
            }
            return Ok(());
        }
        if rbuf.len() > 16 * 1024 {
            return Err(bad("oversized upgrade response".to_owned()));
        }
        rbuf.reserve(1024);
        if stream.read_buf(rbuf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed during the WebSocket upgrade",
            ));
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Appends one client frame (FIN, masked with the all-zero key: the XOR
/// the server performs costs the same whatever the key).
fn ws_frame(opcode: u8, payload: &[u8], dst: &mut BytesMut) {
    dst.reserve(payload.len() + 14);
    dst.put_u8(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        dst.put_u8(0x80 | n as u8);
    } else if let Ok(n16) = u16::try_from(n) {
        dst.put_u8(0x80 | 126);
        dst.put_u16(n16);
    } else {
        dst.put_u8(0x80 | 127);
        dst.put_u64(n as u64);
    }
    dst.put_slice(&[0, 0, 0, 0]);
    dst.put_slice(payload);
}

struct WsFrame {
    fin: bool,
    opcode: u8,
    payload: Bytes,
}

/// Takes one frame off `src` (server frames are unmasked; a mask is
/// applied if present).
fn ws_decode(src: &mut BytesMut) -> io::Result<Option<WsFrame>> {
    let (Some(&b0), Some(&b1)) = (src.first(), src.get(1)) else {
        return Ok(None);
    };
    let masked = b1 & 0x80 != 0;
    let (len, mut off) = match b1 & 0x7F {
        126 => match src.get(2..4).and_then(|b| <[u8; 2]>::try_from(b).ok()) {
            Some(b) => (u64::from(u16::from_be_bytes(b)), 4),
            None => return Ok(None),
        },
        127 => match src.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| bad(format!("WebSocket frame of {len} bytes")))?;
    let mut key = [0u8; 4];
    if masked {
        match src.get(off..off + 4) {
            Some(k) => key.copy_from_slice(k),
            None => return Ok(None),
        }
        off += 4;
    }
    if src.len() < off + len {
        src.reserve(off + len - src.len());
        return Ok(None);
    }
    src.advance(off);
    let mut payload = src.split_to(len);
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key.get(i % 4).copied().unwrap_or(0);
        }
    }
    Ok(Some(WsFrame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0F,
        payload: payload.freeze(),
    }))
}

/// Takes one NATS operation off the byte stream `src`.
fn nats_decode(src: &mut BytesMut) -> io::Result<Option<NatsOp>> {
    let Some(eol) = find(src, b"\r\n") else {
        if src.len() > 64 * 1024 {
            return Err(bad("NATS control line too long".to_owned()));
        }
        return Ok(None);
    };
    let line = src.get(..eol).unwrap_or_default();
    if line.starts_with(b"MSG ") || line.starts_with(b"msg ") {
        // MSG <subject> <sid> [reply-to] <#bytes>
        let size: usize = std::str::from_utf8(line)
            .ok()
            .and_then(|l| l.split_ascii_whitespace().last())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad(format!("bad MSG line {:?}", String::from_utf8_lossy(line))))?;
        let total = eol + 2 + size + 2;
        if src.len() < total {
            return Ok(None);
        }
        src.advance(eol + 2);
        let payload = src.split_to(size).freeze();
        src.advance(2);
        return Ok(Some(NatsOp::Msg { payload }));
    }
    let op = if line.eq_ignore_ascii_case(b"PING") {
        NatsOp::Ping
    } else if line.eq_ignore_ascii_case(b"PONG") {
        NatsOp::Pong
    } else if line.starts_with(b"INFO") {
        NatsOp::Info
    } else if line.starts_with(b"+OK") {
        NatsOp::Ok
    } else if line.starts_with(b"-ERR") {
        NatsOp::Err(String::from_utf8_lossy(line).into_owned())
    } else {
        return Err(bad(format!(
            "unknown NATS operation {:?}",
            String::from_utf8_lossy(line)
        )));
    };
    src.advance(eol + 2);
    Ok(Some(op))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_roundtrip_masked_and_long() {
        let body = vec![7u8; 70_000];
        let mut buf = BytesMut::new();
        ws_frame(OP_BIN, &body, &mut buf);
        ws_frame(OP_PING, b"hi", &mut buf);
        let a = ws_decode(&mut buf).unwrap().unwrap();
        assert_eq!((a.fin, a.opcode, a.payload.len()), (true, OP_BIN, 70_000));
        let b = ws_decode(&mut buf).unwrap().unwrap();
        assert_eq!((b.opcode, &b.payload[..]), (OP_PING, &b"hi"[..]));
        assert!(ws_decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn nats_ops() {
        let mut s = BytesMut::from(&b"INFO {}\r\nMSG a.b 1 5\r\nhel"[..]);
        assert!(matches!(nats_decode(&mut s).unwrap(), Some(NatsOp::Info)));
        assert!(nats_decode(&mut s).unwrap().is_none());
        s.extend_from_slice(b"lo\r\nPING\r\n");
        match nats_decode(&mut s).unwrap() {
            Some(NatsOp::Msg { payload }) => assert_eq!(&payload[..], b"hello"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(nats_decode(&mut s).unwrap(), Some(NatsOp::Ping)));
        assert!(s.is_empty());
    }
}
