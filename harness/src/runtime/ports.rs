//! Host ports for nodes, taken from below the kernel's ephemeral range (where
//! `bind(0)` and outgoing connections take theirs) and held until the nodes are
//! about to bind them, so a proxy or a client cannot grab one in between.

use std::net::TcpListener;

/// Ports reserved for this run; dropping it releases them for the nodes.
pub struct Reserved {
    held: Vec<TcpListener>,
    next: u32,
}

impl Reserved {
    /// An empty reservation; the start of the search depends on the process id so
    /// concurrent runs (tests) rarely probe the same ports.
    pub fn new() -> Self {
        Reserved {
            held: Vec::new(),
            next: (std::process::id() * 97) % 12_000,
        }
    }

    /// One more free port in 20000-31999, held until [`Reserved::release`].
    pub fn take(&mut self) -> std::io::Result<u16> {
        for _ in 0..12_000 {
            let port = (20_000 + self.next % 12_000) as u16;
            self.next += 1;
            if let Ok(l) = TcpListener::bind(("0.0.0.0", port)) {
                self.held.push(l);
                return Ok(port);
            }
        }
        Err(std::io::Error::other("no free port in 20000-31999"))
    }

    /// Lets the nodes bind the ports.
    pub fn release(self) {}
}

impl Default for Reserved {
    fn default() -> Self {
        Self::new()
    }
}
