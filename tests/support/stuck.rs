//! A CA that does not answer: a TCP listener inside a [`Topology`]'s network namespace that accepts every
//! connection and then never reads or writes (the TLS handshake never completes). Not a mock of an ACME
//! server — a fault no real server produces on demand: a CA process that hangs with its socket open.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::ari::enter_netns;
use super::topology::Topology;

pub struct StuckListener {
    port: u16,
    fd: i32,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl StuckListener {
    /// Listen on 127.0.0.1:`port` inside `topo`'s namespace; returns once it is listening.
    pub fn start(topo: &Topology, port: u16) -> StuckListener {
        let netns = topo.dir().join("netns");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<i32, String>>();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let thread = std::thread::Builder::new()
            .name("stuck-listener".into())
            .spawn(move || {
                let listener = match enter_netns(&netns).and_then(|()| {
                    TcpListener::bind(("127.0.0.1", port)).map_err(|e| e.to_string())
                }) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(listener.as_raw_fd()));
                // Hold every connection open, say nothing. `accept` fails once Drop shuts the socket.
                let mut held = Vec::new();
                while let Ok((stream, _)) = listener.accept() {
                    count.fetch_add(1, Ordering::SeqCst);
                    held.push(stream);
                }
            })
            .expect("spawn the stuck listener");
        let fd = match ready_rx.recv() {
            Ok(Ok(fd)) => fd,
            Ok(Err(e)) => panic!("stuck listener: {e}"),
            Err(_) => panic!("stuck listener: the thread died"),
        };
        StuckListener {
            port,
            fd,
            accepted,
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:PORT/dir`: a directory URL that never answers.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for StuckListener {
    fn drop(&mut self) {
        // SAFETY: shutdown(2) on the listening socket the thread owns; it makes `accept` return an error,
        // so the thread ends (and closes the held connections).
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
