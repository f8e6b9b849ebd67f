//! A TCP relay in front of a server, on a fixed 127.0.0.1 port: a test cuts it to make the
//! server unreachable for its clients (connections open are closed, new ones are closed as
//! soon as they are accepted) and restores it, without the server or its address changing.
//! TLS passes through untouched.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A relay to one server address.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Starts relaying 127.0.0.1:<a free port> to `target`. Panics if it cannot listen.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, _) = watch::channel(true);
        let accept = tokio::spawn(accept_loop(listener, target, up.clone()));
        Relay { addr, up, accept }
    }

    /// Returns the address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every relayed connection and refuses new ones until [`Self::restore`].
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, up: watch::Sender<bool>) {
    while let Ok((client, _)) = listener.accept().await {
        if !*up.borrow() {
            drop(client);
            continue;
        }
        tokio::spawn(pipe(client, target, up.subscribe()));
    }
}

/// Copies both ways between `client` and `target` until either side closes or the relay is cut.
async fn pipe(mut client: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}
