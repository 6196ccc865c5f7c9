//! A TCP proxy a test can cut and restore, to take a database away from a running server,
//! or stall, to leave the server's connections open with nothing coming through.

use std::net::SocketAddr;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    stall: watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (cut, cut_rx) = watch::channel(false);
        let (stall, stall_rx) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *cut_rx.borrow() {
                    drop(client); // refused while cut
                    continue;
                }
                let mut cut_rx = cut_rx.clone();
                let mut stall_rx = stall_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    let stalled = tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => false,
                        _ = cut_rx.wait_for(|cut| *cut) => false,
                        _ = stall_rx.wait_for(|stall| *stall) => true,
                    };
                    if stalled {
                        // Both ends stay open and silent until the proxy is cut.
                        let _ = cut_rx.wait_for(|cut| *cut).await;
                    }
                });
            }
        });
        Proxy { addr, cut, stall }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Stops forwarding on every connection, open or new, without closing any: a network
    /// that hangs rather than fails. Lasts until [`Proxy::cut`].
    pub fn stall(&self) {
        self.stall.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}
