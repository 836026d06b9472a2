//! Opening sessions: im-server auth with a self-minted JWT, NATS
//! CONNECT/SUB, and the few HTTP calls the bench makes (no HTTP client
//! crate: one request per connection, `Connection: close`).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use im_protocol::pb::v2 as pb;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::wire::{Conn, In, Kind, NatsOp, bad, find};

// The command numbers the bench uses, from the protocol's one definition
// (u16 in the TCP header it writes, i32 as its frames are decoded).
pub const CMD_HEARTBEAT_REQ: u16 = pb::CommandType::CmdHeartbeatReq as u16;
pub const CMD_AUTH_REQ: u16 = pb::CommandType::CmdAuthReq as u16;
pub const CMD_AUTH_RSP: i32 = pb::CommandType::CmdAuthRsp as i32;
pub const CMD_SEND_REQ: u16 = pb::CommandType::CmdSendMsgReq as u16;
pub const CMD_SEND_RSP: i32 = pb::CommandType::CmdSendMsgRsp as i32;
pub const CMD_PUSH: i32 = pb::CommandType::CmdPushMsg as i32;
pub const CMD_MSG_ACK: u16 = pb::CommandType::CmdMsgAck as u16;
pub const CMD_BATCH: i32 = pb::CommandType::CmdBatchMsg as i32;

/// An HS256 access token with the server's claims (`user_id`, `platform`,
/// `iat`, `exp` in seconds, a `jti`), valid for a day.
pub fn mint_token(secret: &str, user: &str, platform: &str) -> io::Result<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({
        "user_id": user,
        "platform": platform,
        "iat": now,
        "exp": now + 86_400,
        "jti": format!("bench-{user}-{now}"),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| bad(format!("signing a token: {e}")))
}

/// Connects and authenticates `user` (AUTH_REQ with sequence 1, waits for
/// a successful AUTH_RSP).
pub async fn open_im(
    kind: Kind,
    addr: SocketAddr,
    user: &str,
    secret: &str,
    within: Duration,
) -> io::Result<Conn> {
    let mut conn = Conn::connect(kind, addr, within).await?;
    let token = mint_token(secret, user, "iOS")?;
    let body = pb::AuthRequest {
        user_id: user.to_owned(),
        token,
        platform: "iOS".to_owned(),
    }
    .encode_to_vec();
    conn.queue_im(CMD_AUTH_REQ, 1, &body);
    conn.flush().await?;
    let wait = async {
        loop {
            match conn.read().await? {
                In::Im(f) if f.command == CMD_AUTH_RSP => {
                    let r = pb::AuthResponse::decode(f.body)
                        .map_err(|e| bad(format!("bad AuthResponse: {e}")))?;
                    if r.error_code != 0 {
                        return Err(bad(format!(
                            "auth of {user} failed: {} {}",
                            r.error_code, r.error_msg
                        )));
                    }
                    return Ok(());
                }
                In::Im(_) | In::Nats(_) => {}
                In::WsPing(p) => conn.queue_pong(&p),
                In::Closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "closed before AUTH_RSP",
                    ));
                }
            }
        }
    };
    timeout(within, wait)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no AUTH_RSP"))??;
    conn.flush().await?;
    Ok(conn)
}

/// Connects to nats-server's WebSocket listener, sends CONNECT (and SUB
/// `subject` with sid 1), and waits for the PONG of a PING: the
/// subscription is registered once it arrives.
pub async fn open_nats(
    addr: SocketAddr,
    subject: Option<&str>,
    echo: bool,
    within: Duration,
) -> io::Result<Conn> {
    let mut conn = Conn::connect(Kind::NatsWs, addr, within).await?;
    let mut text = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"echo\":{echo},\"name\":\"im-bench\",\"lang\":\"rust\",\"version\":\"0\",\"protocol\":1}}\r\n"
    );
    if let Some(s) = subject {
        text.push_str(&format!("SUB {s} 1\r\n"));
    }
    text.push_str("PING\r\n");
    conn.queue_nats(text.as_bytes());
    conn.flush().await?;
    let wait = async {
        loop {
            match conn.read().await? {
                In::Nats(NatsOp::Pong) => return Ok(()),
                In::Nats(NatsOp::Err(e)) => return Err(bad(format!("nats: {e}"))),
                In::Nats(NatsOp::Ping) => conn.queue_nats(b"PONG\r\n"),
                In::WsPing(p) => conn.queue_pong(&p),
                In::Nats(_) | In::Im(_) => {}
                In::Closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "closed before PONG",
                    ));
                }
            }
        }
    };
    timeout(within, wait)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no PONG"))??;
    conn.flush().await?;
    Ok(conn)
}

/// One HTTP/1.1 request; returns the status and the body parsed as JSON
/// (`Null` when it is not JSON).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
) -> io::Result<(u16, serde_json::Value)> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            payload.len()
        );
        if body.is_some() {
            req.push_str("Content-Type: application/json\r\n");
        }
        if let Some(t) = bearer {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&payload);
        s.write_all(req.as_bytes()).await?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await?;
        let end =
            find(&resp, b"\r\n\r\n").ok_or_else(|| bad("no HTTP response head".to_owned()))?;
        let (head, rest) = resp.split_at(end);
        let rest = rest.get(4..).unwrap_or_default();
        let head = String::from_utf8_lossy(head).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("no HTTP status".to_owned()))?;
        let body = if head.contains("transfer-encoding: chunked") {
            dechunk(rest)
        } else {
            rest.to_vec()
        };
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Ok((status, json))
    };
    timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "HTTP request timed out"))?
}

fn dechunk(mut src: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(src, b"\r\n") {
        let size = std::str::from_utf8(src.get(..eol).unwrap_or_default())
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let Some(chunk) = src.get(eol + 2..eol + 2 + size) else {
            break;
        };
        out.extend_from_slice(chunk);
        src = src.get(eol + 2 + size + 2..).unwrap_or_default();
    }
    out
}
