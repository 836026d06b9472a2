//! JSON over HTTP/1.1 to one node: one connection per request (hyper's
//! client connection), bounded by a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A reply: status and the parsed body (`Null` when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// `data` of a success envelope.
    pub fn data(&self) -> anyhow::Result<&Value> {
        if self.status != 200 {
            bail!("HTTP {}: {}", self.status, self.body);
        }
        Ok(self.body.get("data").unwrap_or(&Value::Null))
    }
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    tokio::time::timeout(timeout, exchange(addr, method, path, bearer, body))
        .await
        .with_context(|| format!("{method} {path}: no answer within {timeout:?}"))?
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<Reply> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let payload = match body {
        Some(v) => Bytes::from(serde_json::to_vec(v)?),
        None => Bytes::new(),
    };
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = send.send_request(req.body(Full::new(payload))?).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    driver.abort();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Reply { status, body })
}
