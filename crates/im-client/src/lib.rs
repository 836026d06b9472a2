//! An async Rust client of the im-server protocol, used by the end-to-end
//! tests, the bench and anyone embedding the crates.
//!
//! It speaks WebSocket in both generations (`ws://host:port/ws/v1`, `/ws/v2`,
//! `/ws?v=1`, …: the generation is chosen by the caller, who must pick the
//! path that matches it) and TCP v2 (16-byte header packets), in terms of the
//! `im_core::command` model: [`Request`] out, [`Reply`] and [`Event`] in.
//!
//! * Requests get the next sequence number; [`Client::request`] waits for the
//!   reply carrying that sequence (the server echoes request sequences and
//!   uses 0 for pushes). Events and unrelated replies that arrive meanwhile
//!   are queued, never dropped: read them with [`Client::next_event`] and
//!   [`Client::next_reply`]. A BATCH_MSG (204) becomes one event per message.
//! * Every wait is bounded: by the client's timeout ([`Client::set_timeout`],
//!   [`ClientOptions::timeout`]) or by an explicit `timeout` argument.
//! * Raw writers ([`Client::send_raw`], [`Client::send_ws_binary`],
//!   [`Client::send_ws_text`], [`Client::send_tcp_bytes`]) exist for
//!   bad-input tests, and [`Client::closed`] observes the server hanging up.
//! * TLS (`wss://`, TCP over TLS): set [`ClientOptions::tls`] to a
//!   [`ClientTls`] with the roots to trust and the server's name.
//! * Server pings are answered automatically (unless
//!   [`ClientOptions::auto_pong`] is off), even while nobody is reading.
//!
//! ```no_run
//! # async fn demo(addr: std::net::SocketAddr, token: &str) -> im_client::Result<()> {
//! use std::time::Duration;
//! use im_client::Client;
//! use im_core::Generation;
//!
//! let mut c = Client::connect_ws(addr, "/ws/v2", Generation::V2).await?;
//! let reply = c.auth("alice", token, "iOS").await?;
//! let sent = c.send_text("single_alice_bob", "c-1", "hello").await?;
//! while let Some(event) = c.next_event(Duration::from_millis(100)).await? {
//!     println!("{event:?}");
//! }
//! # let _ = (reply, sent); Ok(()) }
//! ```

mod deadline;
mod error;
mod tcp;
mod tls;
mod ws;

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use fastwebsockets::OpCode;
use im_core::command::{Event, Reply, Request, SendRequest};
use im_core::{Generation, MessageType};
use im_protocol::{ServerFrame, decode_server_frame, encode_request};

use crate::deadline::Deadline;
use crate::tcp::TcpConn;
use crate::ws::WsConn;

pub use crate::error::{ClientError, Result};
pub use crate::tls::ClientTls;
/// The rustls the client is built with (for [`ClientTls`]'s root store
/// and config types).
pub use rustls;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Bound of connecting and of every wait that takes no explicit timeout
    /// (`auth`, `request`, writes). Default 5 s.
    pub timeout: Duration,
    /// Answer server WebSocket pings (default true). Off, pings go
    /// unanswered, to test the server's dead-peer handling.
    pub auto_pong: bool,
    /// Largest frame accepted from the server: TCP body or WebSocket
    /// message. Default 1 MiB + 64, the SDK's limit (contract §3) plus room
    /// for the envelope; anything bigger is a [`ClientError::Protocol`].
    pub max_frame_bytes: usize,
    /// Most events and unclaimed replies kept queued; one more is a
    /// [`ClientError::Protocol`] (read your events). Default 65 536.
    pub max_queued: usize,
    /// Speak TLS (`wss://`, TCP over TLS) with these roots and server
    /// name. Default `None`: plain TCP.
    pub tls: Option<ClientTls>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            auto_pong: true,
            max_frame_bytes: (1 << 20) + 64,
            max_queued: 1 << 16,
            tls: None,
        }
    }
}

/// Which transport a [`Client`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    WebSocket,
    Tcp,
}

/// Code and reason of the close frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    pub code: u16,
    pub reason: String,
}

/// What a transport reads.
pub(crate) enum Inbound {
    Frame {
        command: i32,
        sequence: u32,
        body: Bytes,
    },
    Pong(Bytes),
    Closed(Option<CloseInfo>),
}

enum Conn {
    Tcp(TcpConn),
    Ws(WsConn),
}

/// One connection to a server. Not shared: every method takes `&mut self`.
pub struct Client {
    conn: Conn,
    generation: Generation,
    options: ClientOptions,
    next_seq: u32,
    /// The user given to the last successful `auth`.
    user_id: String,
    events: VecDeque<Event>,
    replies: VecDeque<(u32, Reply)>,
    /// Pongs received, and the payload of the last one.
    pongs: u64,
    last_pong: Bytes,
    /// `Some` once the server closed; the inner value is the WS close frame.
    closed: Option<Option<CloseInfo>>,
    body: BytesMut,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("transport", &self.transport())
            .field("generation", &self.generation)
            .field("user_id", &self.user_id)
            .field("next_seq", &self.next_seq)
            .field("queued_events", &self.events.len())
            .field("queued_replies", &self.replies.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects over WebSocket: `path` is the request target, e.g. `/ws/v2`
    /// or `/ws?v=1`; `generation` is how this client encodes and decodes
    /// bodies (the server decides its own from the path).
    pub async fn connect_ws(addr: SocketAddr, path: &str, generation: Generation) -> Result<Self> {
        Self::connect_ws_with(addr, path, generation, ClientOptions::default()).await
    }

    /// [`Client::connect_ws`] with explicit options.
    pub async fn connect_ws_with(
        addr: SocketAddr,
        path: &str,
        generation: Generation,
        options: ClientOptions,
    ) -> Result<Self> {
        let deadline = Deadline::after(options.timeout);
        let conn = WsConn::connect(
            addr,
            path,
            options.tls.as_ref(),
            deadline,
            options.max_frame_bytes,
            options.auto_pong,
        )
        .await?;
        Ok(Self::new(Conn::Ws(conn), generation, options))
    }

    /// Connects over TCP (always generation v2).
    pub async fn connect_tcp(addr: SocketAddr) -> Result<Self> {
        Self::connect_tcp_with(addr, ClientOptions::default()).await
    }

    /// [`Client::connect_tcp`] with explicit options.
    pub async fn connect_tcp_with(addr: SocketAddr, options: ClientOptions) -> Result<Self> {
        let deadline = Deadline::after(options.timeout);
        let conn = TcpConn::connect(
            addr,
            options.tls.as_ref(),
            deadline,
            options.max_frame_bytes,
        )
        .await?;
        Ok(Self::new(Conn::Tcp(conn), Generation::V2, options))
    }

    fn new(conn: Conn, generation: Generation, options: ClientOptions) -> Self {
        Self {
            conn,
            generation,
            options,
            next_seq: 1,
            user_id: String::new(),
            events: VecDeque::new(),
            replies: VecDeque::new(),
            pongs: 0,
            last_pong: Bytes::new(),
            closed: None,
            body: BytesMut::new(),
        }
    }

    // ---- state ------------------------------------------------------------

    pub fn generation(&self) -> Generation {
        self.generation
    }

    pub fn transport(&self) -> TransportKind {
        match self.conn {
            Conn::Tcp(_) => TransportKind::Tcp,
            Conn::Ws(_) => TransportKind::WebSocket,
        }
    }

    /// The default bound of waits without an explicit timeout.
    pub fn timeout(&self) -> Duration {
        self.options.timeout
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.options.timeout = timeout;
    }

    /// The user of the last successful [`Client::auth`] ("" before).
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// Takes the next request sequence (1, 2, …; 0 is skipped on wrap, it
    /// marks pushes). Useful with [`Client::send_raw`].
    pub fn next_sequence(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = after(seq);
        seq
    }

    /// Events received but not yet taken by [`Client::next_event`].
    pub fn queued_events(&self) -> usize {
        self.events.len()
    }

    /// Whether the server is known to have closed the connection.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// The close frame of a WebSocket the server closed, if it sent one.
    pub fn close_info(&self) -> Option<&CloseInfo> {
        self.closed.as_ref().and_then(Option::as_ref)
    }

    // ---- requests -----------------------------------------------------------

    /// Sends AUTH_REQ (100) and waits for AUTH_RSP (101): on TCP the one
    /// carrying the request's sequence (contract §3), on WebSocket the first
    /// 101 (contract §2) or any reply with the request's sequence (an error
    /// reply). The returned reply may carry a failure code.
    pub async fn auth(&mut self, user_id: &str, token: &str, platform: &str) -> Result<Reply> {
        let req = Request::Auth {
            user_id: user_id.to_owned(),
            token: token.to_owned(),
            platform: platform.to_owned(),
        };
        let seq = self.send(&req).await?;
        let deadline = Deadline::after(self.options.timeout);
        let reply = match self.conn {
            Conn::Tcp(_) => self.wait_for(deadline, |s, _| s == seq).await?,
            Conn::Ws(_) => {
                self.wait_for(deadline, |s, r| s == seq || matches!(r, Reply::Auth { .. }))
                    .await?
            }
        };
        if matches!(&reply, Reply::Auth { code, .. } if code.code() == 0) {
            self.user_id = user_id.to_owned();
        }
        Ok(reply)
    }

    /// Sends `req` with the next sequence and waits for the reply carrying
    /// that sequence. For requests the server does not answer (MSG_ACK,
    /// typing) use [`Client::send`] instead, or this times out.
    pub async fn request(&mut self, req: Request) -> Result<Reply> {
        let seq = self.send(&req).await?;
        self.wait_reply(seq, self.options.timeout).await
    }

    /// Sends `req` with the next sequence without waiting; returns the
    /// sequence (for [`Client::wait_reply`]).
    pub async fn send(&mut self, req: &Request) -> Result<u32> {
        let seq = self.next_sequence();
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        let command = encode_request(self.generation, req, &mut body);
        let r = self.send_raw(command, seq, &body).await;
        self.body = body;
        r.map(|()| seq)
    }

    /// Sends a text message (type 1) and waits for SEND_MSG_RSP. For a
    /// `single_<a>_<b>` conversation that contains the authenticated user,
    /// `receiver_id` is the other user, as the SDK sends it; otherwise it is
    /// left empty (the server derives recipients from the conversation id).
    pub async fn send_text(
        &mut self,
        conversation_id: &str,
        client_msg_id: &str,
        text: &str,
    ) -> Result<Reply> {
        let req = SendRequest {
            client_msg_id: client_msg_id.to_owned(),
            conversation_id: conversation_id.to_owned(),
            receiver_id: peer_of(conversation_id, &self.user_id)
                .unwrap_or_default()
                .to_owned(),
            message_type: MessageType::TEXT.0,
            content: Bytes::copy_from_slice(text.as_bytes()),
            send_time: now_ms(),
            ..SendRequest::default()
        };
        self.request(Request::Send(req)).await
    }

    /// Acknowledges a pushed message (MSG_ACK 203, `seq` 0 as the SDK sends
    /// it). The server does not answer.
    pub async fn ack(&mut self, message_id: &str) -> Result<()> {
        self.send(&Request::Ack {
            message_id: message_id.to_owned(),
            seq: 0,
        })
        .await
        .map(drop)
    }

    /// HEARTBEAT_REQ (5) with an empty body; waits for the reply with its
    /// sequence (HEARTBEAT_RSP 6). Works on both transports.
    pub async fn heartbeat(&mut self) -> Result<Reply> {
        self.request(Request::Heartbeat { client_time: 0 }).await
    }

    /// Sends a WebSocket ping (payload up to 125 bytes) and waits for the
    /// pong echoing `payload` (events meanwhile are queued). WebSocket only.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<()> {
        let deadline = Deadline::after(self.options.timeout);
        self.ws()?.write(OpCode::Ping, payload, deadline).await?;
        loop {
            let before = self.pongs;
            if !self.pump(deadline).await? {
                return Err(deadline.expired("pong"));
            }
            if self.pongs != before && self.last_pong == payload {
                return Ok(());
            }
        }
    }

    /// Pongs received so far (answers to [`Client::ping`] and unsolicited ones).
    pub fn pongs_received(&self) -> u64 {
        self.pongs
    }

    // ---- raw writes ----------------------------------------------------------

    /// Sends one frame with any command, sequence and body: a WebSocket
    /// envelope (timestamp 0) or a TCP packet (command must fit in u16).
    pub async fn send_raw(&mut self, command: i32, sequence: u32, body: &[u8]) -> Result<()> {
        self.check_open()?;
        let deadline = Deadline::after(self.options.timeout);
        match &mut self.conn {
            Conn::Tcp(c) => c.send_packet(command, sequence, body, deadline).await,
            Conn::Ws(c) => c.send_envelope(command, sequence, body, deadline).await,
        }
    }

    /// Sends `bytes` as one binary WebSocket message, not wrapped in an
    /// envelope. WebSocket only.
    pub async fn send_ws_binary(&mut self, bytes: &[u8]) -> Result<()> {
        let deadline = Deadline::after(self.options.timeout);
        self.ws()?.write(OpCode::Binary, bytes, deadline).await
    }

    /// Sends a text WebSocket message. WebSocket only.
    pub async fn send_ws_text(&mut self, text: &str) -> Result<()> {
        let deadline = Deadline::after(self.options.timeout);
        self.ws()?
            .write(OpCode::Text, text.as_bytes(), deadline)
            .await
    }

    /// Sends a text WebSocket message whose payload is `bytes` as is, valid
    /// UTF-8 or not (a server must refuse the invalid kind). WebSocket only.
    pub async fn send_ws_text_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let deadline = Deadline::after(self.options.timeout);
        self.ws()?.write(OpCode::Text, bytes, deadline).await
    }

    /// Writes raw bytes to the TCP stream (partial or broken packets). TCP only.
    pub async fn send_tcp_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.check_open()?;
        let deadline = Deadline::after(self.options.timeout);
        match &mut self.conn {
            Conn::Tcp(c) => c.write_bytes(bytes, deadline).await,
            Conn::Ws(_) => Err(ClientError::Unsupported(
                "raw TCP bytes on a WebSocket connection",
            )),
        }
    }

    // ---- reads ----------------------------------------------------------------

    /// Waits up to `timeout` for the reply carrying `sequence` (replies with
    /// other sequences and events stay queued).
    pub async fn wait_reply(&mut self, sequence: u32, timeout: Duration) -> Result<Reply> {
        self.wait_for(Deadline::after(timeout), |s, _| s == sequence)
            .await
    }

    /// The next reply of any sequence, with its sequence: queued ones first.
    /// `None` when none arrives within `timeout`.
    pub async fn next_reply(&mut self, timeout: Duration) -> Result<Option<(u32, Reply)>> {
        let deadline = Deadline::after(timeout);
        loop {
            if let Some(r) = self.replies.pop_front() {
                return Ok(Some(r));
            }
            if !self.pump(deadline).await? {
                return Ok(None);
            }
        }
    }

    /// The next pushed event: queued ones first. `None` when none arrives
    /// within `timeout`; [`ClientError::Closed`] once the queue is empty and
    /// the server has closed.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>> {
        let deadline = Deadline::after(timeout);
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            if !self.pump(deadline).await? {
                return Ok(None);
            }
        }
    }

    /// Waits up to `timeout` for the server to close the connection, queueing
    /// whatever arrives meanwhile. `Ok(false)`: still open at the deadline.
    pub async fn closed(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Deadline::after(timeout);
        loop {
            match self.pump(deadline).await {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(ClientError::Closed) => return Ok(true),
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes the connection from this side: a WebSocket close frame (1000)
    /// and the server's answering close, or a TCP FIN and the server's EOF,
    /// both bounded by the client's timeout.
    pub async fn close(mut self) -> Result<()> {
        if self.closed.is_some() {
            return Ok(());
        }
        let deadline = Deadline::after(self.options.timeout);
        match &mut self.conn {
            Conn::Tcp(c) => c.shutdown(deadline).await?,
            Conn::Ws(c) => c.send_close(1000, deadline).await?,
        }
        loop {
            match self.pump(deadline).await {
                Ok(true) => {}
                Ok(false) => return Err(deadline.expired("the server to close")),
                Err(ClientError::Closed) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    // ---- internals ------------------------------------------------------------

    fn check_open(&self) -> Result<()> {
        if self.closed.is_some() {
            Err(ClientError::Closed)
        } else {
            Ok(())
        }
    }

    fn ws(&mut self) -> Result<&mut WsConn> {
        self.check_open()?;
        match &mut self.conn {
            Conn::Ws(c) => Ok(c),
            Conn::Tcp(_) => Err(ClientError::Unsupported(
                "WebSocket frames on a TCP connection",
            )),
        }
    }

    /// Takes the first queued reply accepted by `want`, reading until one
    /// arrives or `deadline` passes.
    async fn wait_for(
        &mut self,
        deadline: Deadline,
        want: impl Fn(u32, &Reply) -> bool,
    ) -> Result<Reply> {
        loop {
            let found = self.replies.iter().position(|(s, r)| want(*s, r));
            if let Some((_, reply)) = found.and_then(|i| self.replies.remove(i)) {
                return Ok(reply);
            }
            if !self.pump(deadline).await? {
                return Err(deadline.expired("reply"));
            }
        }
    }

    /// Reads one item and files it. `Ok(false)`: `deadline` passed first.
    async fn pump(&mut self, deadline: Deadline) -> Result<bool> {
        self.check_open()?;
        let item = match &mut self.conn {
            Conn::Tcp(c) => c.recv(deadline).await?,
            Conn::Ws(c) => c.recv(deadline).await?,
        };
        match item {
            None => Ok(false),
            Some(Inbound::Pong(payload)) => {
                self.pongs = self.pongs.wrapping_add(1);
                self.last_pong = payload;
                Ok(true)
            }
            Some(Inbound::Closed(info)) => {
                self.closed = Some(info);
                Err(ClientError::Closed)
            }
            Some(Inbound::Frame {
                command,
                sequence,
                body,
            }) => {
                self.file(command, sequence, &body)?;
                Ok(true)
            }
        }
    }

    fn file(&mut self, command: i32, sequence: u32, body: &[u8]) -> Result<()> {
        let frame = decode_server_frame(self.generation, command, body).map_err(|e| {
            ClientError::Protocol(format!(
                "undecodable {:?} frame from the server (command {command}, sequence {sequence}): {e}",
                self.generation
            ))
        })?;
        match frame {
            ServerFrame::Reply(r) => self.replies.push_back((sequence, r)),
            ServerFrame::Event(e) => self.events.push_back(e),
            ServerFrame::Batch(events) => self.events.extend(events),
        }
        let queued = self.events.len() + self.replies.len();
        if queued > self.options.max_queued {
            return Err(ClientError::Protocol(format!(
                "{queued} frames queued unread (limit {}): read events with next_event",
                self.options.max_queued
            )));
        }
        Ok(())
    }
}

/// The other user of `single_<a>_<b>` when `me` is one of the two (`a` and
/// `b` sorted; user ids may themselves contain `_`).
fn peer_of<'a>(conversation_id: &'a str, me: &str) -> Option<&'a str> {
    if me.is_empty() {
        return None;
    }
    let pair = conversation_id.strip_prefix("single_")?;
    let after = pair
        .strip_prefix(me)
        .and_then(|r| r.strip_prefix('_'))
        .filter(|rest| !rest.is_empty() && me <= *rest);
    let before = || {
        pair.strip_suffix(me)
            .and_then(|r| r.strip_suffix('_'))
            .filter(|rest| !rest.is_empty() && *rest <= me)
    };
    after.or_else(before)
}

/// The sequence after `seq`, skipping 0 (pushes) on wrap.
fn after(seq: u32) -> u32 {
    seq.checked_add(1).unwrap_or(1)
}

/// Wall-clock milliseconds (0 before 1970).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_of_single_conversations() {
        assert_eq!(peer_of("single_alice_bob", "alice"), Some("bob"));
        assert_eq!(peer_of("single_alice_bob", "bob"), Some("alice"));
        assert_eq!(peer_of("single_a_b_c", "a_b"), Some("c"));
        assert_eq!(peer_of("single_a_b_c", "a"), Some("b_c"));
        assert_eq!(peer_of("single_alice_bob", "carol"), None);
        assert_eq!(peer_of("single_alice_bob", ""), None);
        assert_eq!(peer_of("group_42", "alice"), None);
        // Self-chat: the peer is oneself.
        assert_eq!(peer_of("single_bob_bob", "bob"), Some("bob"));
    }

    #[test]
    fn sequences_skip_zero() {
        assert_eq!(after(1), 2);
        assert_eq!(after(u32::MAX), 1);
    }
}
