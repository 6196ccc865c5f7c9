//! TLS for the REST facade, with the certificate the gRPC port uses. Handshakes run in
//! their own tasks under the first-request deadline, so a slow or silent client never holds
//! up others.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::api::TlsIdentity;
use crate::connections::{ConnectionGate, Limited};

/// Connections handshaken but not yet taken by the server.
const READY_BACKLOG: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the TLS certificate chain is not PEM: {0}")]
    Certificate(String),
    #[error("the TLS private key is not PEM: {0}")]
    Key(String),
    #[error("the TLS certificate and key do not fit together: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot read the listening address: {0}")]
    Address(#[from] std::io::Error),
}

/// Accepts TCP connections and hands over those whose TLS handshake completed.
pub struct TlsListener {
    addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<Limited<TcpStream>>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(
        tcp: TcpListener,
        gate: Arc<ConnectionGate>,
        identity: &TlsIdentity,
    ) -> Result<TlsListener, TlsError> {
        let chain = CertificateDer::pem_slice_iter(&identity.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(&identity.key)
            .map_err(|e| TlsError::Key(e.to_string()))?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_BACKLOG);
        tokio::spawn(accept_loop(tcp, gate, acceptor, tx));
        Ok(TlsListener { addr, ready })
    }
}

/// Runs until the listener is dropped.
async fn accept_loop(
    tcp: TcpListener,
    gate: Arc<ConnectionGate>,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<Limited<TcpStream>>, SocketAddr)>,
) {
    let deadline = gate.limits().first_request_timeout;
    loop {
        let stream = tokio::select! {
            stream = gate.accept(&tcp) => stream,
            _ = tx.closed() => return,
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let peer = stream.connection().peer();
            match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "REST TLS handshake failed"),
                Err(_) => tracing::debug!("REST TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<Limited<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept loop only ends once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
