//! A TCP proxy in front of PostgreSQL that a test can take down and bring back, to play a
//! database outage without touching the real server: `down()` refuses new connections and
//! cuts the open ones (a server that went away), `unresponsive()` accepts and then never
//! answers (a server or network that hangs), `up()` forwards again on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Forward,
    Hang,
}

pub struct Proxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    /// The accept loop and every connection task, aborted (closing their sockets) on `down`.
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Proxy {
            addr,
            upstream,
            tasks: Arc::default(),
        };
        proxy.serve(listener, Mode::Forward);
        proxy
    }

    fn serve(&self, listener: TcpListener, mode: Mode) {
        let (tasks, upstream) = (self.tasks.clone(), self.upstream);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    match mode {
                        Mode::Forward => forward(client, upstream).await,
                        // Hold the socket open and say nothing until aborted.
                        Mode::Hang => {
                            let _held = client;
                            std::future::pending::<()>().await;
                        }
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Closes the port and every connection through it.
    pub fn down(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Accepts connections again and forwards them.
    pub async fn up(&self) {
        self.down();
        self.serve(self.rebind().await, Mode::Forward);
    }

    /// Accepts connections again but never answers on them.
    pub async fn unresponsive(&self) {
        self.down();
        self.serve(self.rebind().await, Mode::Hang);
    }

    /// The same port again; the aborted listener may take a moment to be released.
    async fn rebind(&self) -> TcpListener {
        for _ in 0..100 {
            if let Ok(l) = TcpListener::bind(self.addr).await {
                return l;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("cannot listen on {} again", self.addr);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr) {
    if let Ok(mut server) = TcpStream::connect(upstream).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}
