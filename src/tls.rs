//! TLS on the public listener (`server.tls_cert_file`, `server.tls_key_file`, PEM).
//!
//! rustls with the ring provider, TLS 1.2 and 1.3, ALPN h2 and http/1.1. The certificate is
//! served through [`CertStore`], which [`spawn_reload`] refreshes when either file's content
//! changes (read every `server.tls_reload_ms`): new handshakes get the new certificate, open
//! connections keep the one they were made with, and nothing restarts. A file that does not
//! parse (a half-written pair, a key that does not match) leaves the current certificate in
//! place and is tried again at the next check. [`TlsListener`] runs handshakes off the accept
//! loop, at most `HANDSHAKES_MAX` at once and each within `HANDSHAKE_TIMEOUT`, and hands
//! axum only finished connections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Handshakes in progress at once; past it the accept loop waits (the kernel's backlog holds
/// new connections meanwhile).
const HANDSHAKES_MAX: usize = 256;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished handshakes waiting for axum to take them.
const ACCEPTED_QUEUE: usize = 64;

/// The certificate new handshakes get.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

impl CertStore {
    fn replace(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
    }
}

/// The certificate chain and key from PEM bytes, checked to belong together.
fn parse(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    if certs.is_empty() {
        return Err("certificate: no CERTIFICATE block".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key: {e}"))?;
    let key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| format!("key: {e}"))?;
    let certified = CertifiedKey::new(certs, key);
    certified.keys_match().map_err(|e| format!("the key does not match the certificate: {e}"))?;
    Ok(certified)
}

/// The files' bytes.
fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    Ok((read(cert)?, read(key)?))
}

/// A loaded certificate and what reloading it needs.
pub struct Tls {
    pub acceptor: TlsAcceptor,
    store: Arc<CertStore>,
    files: (PathBuf, PathBuf),
    loaded: (Vec<u8>, Vec<u8>),
}

impl Tls {
    /// Reads and checks the pair now (a startup error if it is unusable).
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let loaded = read_pair(cert, key)?;
        let certified = parse(&loaded.0, &loaded.1)?;
        let store = Arc::new(CertStore { current: RwLock::new(Arc::new(certified)) });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(store.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        Ok(Tls { acceptor, store, files: (cert.to_owned(), key.to_owned()), loaded })
    }

    /// Reads the files every `interval`; a changed pair that parses replaces the certificate.
    pub fn spawn_reload(&self, interval: Duration) {
        let reload =
            Reload { store: self.store.clone(), files: self.files.clone(), loaded: self.loaded.clone(), interval };
        tokio::spawn(reload.run());
    }
}

struct Reload {
    store: Arc<CertStore>,
    files: (PathBuf, PathBuf),
    loaded: (Vec<u8>, Vec<u8>),
    interval: Duration,
}

impl Reload {
    async fn run(mut self) {
        let mut last_error: Option<String> = None;
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let pair = match read_pair(&self.files.0, &self.files.1) {
                Ok(pair) if pair == self.loaded => continue,
                Ok(pair) => pair,
                Err(e) => {
                    self.warn_once(&mut last_error, e);
                    continue;
                }
            };
            match parse(&pair.0, &pair.1) {
                Ok(certified) => {
                    self.store.replace(certified);
                    self.loaded = pair;
                    last_error = None;
                    tracing::info!(cert = %self.files.0.display(), "TLS certificate reloaded: new connections get it");
                }
                Err(e) => self.warn_once(&mut last_error, e),
            }
        }
    }

    fn warn_once(&self, last: &mut Option<String>, error: String) {
        if last.as_deref() != Some(error.as_str()) {
            tracing::warn!(cert = %self.files.0.display(), %error, "TLS files unusable; keeping the current certificate");
        }
        *last = Some(error);
    }
}

/// The public listener with TLS: axum takes connections whose handshake finished.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let local_addr = listener.local_addr()?;
        let (done, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        tokio::spawn(accept_loop(listener, acceptor, done));
        Ok(TlsListener { accepted, local_addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended (its listener failed for good): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Accepts TCP connections and runs each handshake in its own task, until the
/// [`TlsListener`] is dropped.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    done: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else { return };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause as axum's own loop does.
                    tracing::debug!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = done.closed() => return,
        };
        // SSE writes many small frames: without TCP_NODELAY, Nagle and delayed ACKs hold
        // each one back by tens of milliseconds.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let (acceptor, done) = (acceptor.clone(), done.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = done.send((stream, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_mismatched_pairs_are_refused() {
        let ca = superx_cluster::testsuite::TestCa::new("tls unit");
        let (cert_a, key_a, _) = ca.server_cert(&["a.test"], "a");
        let (_, key_b, _) = ca.server_cert(&["b.test"], "b");
        assert!(parse(cert_a.as_bytes(), key_a.as_bytes()).is_ok());
        let mismatch = parse(cert_a.as_bytes(), key_b.as_bytes()).unwrap_err();
        assert!(mismatch.contains("does not match"), "{mismatch}");
        assert!(parse(b"", key_a.as_bytes()).unwrap_err().contains("no CERTIFICATE"));
        assert!(parse(cert_a.as_bytes(), b"not a key").unwrap_err().starts_with("key"));
    }
}
