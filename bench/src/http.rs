//! HTTP/1.1 client helpers for the benchmark tools: an `http://` URL parsed
//! into a socket address, an authority and an origin-form path, JSON-RPC POST
//! requests to it, and hyper 1 client connections driven directly.

use std::net::SocketAddr;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A resolved `http://` endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header value.
    pub authority: String,
    /// The request target (origin form).
    pub path: Uri,
}

impl Target {
    /// Parses and resolves an absolute `http://` URL.
    pub async fn resolve(url: &str) -> Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("invalid URL {url:?}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("URL scheme {other:?} is not supported (http only): {url}"),
            None => bail!("URL must be absolute, e.g. http://127.0.0.1:4000/agents/echo: {url}"),
        }
        let authority = uri.authority().with_context(|| format!("URL has no host: {url}"))?;
        let host = authority.host().trim_matches(['[', ']']).to_owned();
        let port = authority.port_u16().unwrap_or(80);
        let path: Uri = uri.path_and_query().map_or("/", |pq| pq.as_str()).parse().context("invalid URL path")?;
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        Ok(Self { url: url.to_owned(), addr, authority: authority.as_str().to_owned(), path })
    }

    /// A JSON-RPC POST to this target in A2A 1.0 that accepts an SSE answer.
    pub fn a2a_stream_request(&self, body: Bytes) -> Result<Request<Full<Bytes>>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.path.clone();
        let headers = req.headers_mut();
        headers.insert(HOST, HeaderValue::from_str(&self.authority)?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        headers.insert("a2a-version", HeaderValue::from_static("1.0"));
        Ok(req)
    }
}

/// Opens one HTTP/1.1 connection (`TCP_NODELAY`) and drives it in the background.
pub async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_targets() {
        let t = Target::resolve("http://127.0.0.2:4002/agents/echo").await.expect("valid");
        assert_eq!(t.addr, "127.0.0.2:4002".parse().expect("addr"));
        assert_eq!(t.authority, "127.0.0.2:4002");
        assert_eq!(t.path, "/agents/echo");
        assert!(Target::resolve("https://127.0.0.1/").await.is_err());
        assert!(Target::resolve("/relative").await.is_err());
    }
}
