//! The userspace link proxy: one per directed link between nodes. It reads whole
//! frames (4-byte big-endian length, then the body) and, per the link's policy and
//! a seeded RNG, forwards, drops, delays (with jitter, so messages reorder) or
//! duplicates each one. A cut link drops every frame but keeps its connections
//! open: a partition never tells the node. With replay on, old frames of the
//! link are delivered again, and still cross a cut now and then.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use workloads::Rng;

/// Frames larger than this are not our protocol: the connection is closed.
const MAX_FRAME: usize = 64 << 20;

/// What a link does to the frames crossing it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkPolicy {
    /// Drop everything (partition).
    pub cut: bool,
    /// Probability of dropping a frame.
    pub loss: f64,
    /// Base delay.
    pub delay: Duration,
    /// Extra random delay, uniform in [0, jitter].
    pub jitter: Duration,
    /// Probability of delivering a frame twice.
    pub duplicate: f64,
    /// Probability, per frame forwarded, of also delivering an older frame of
    /// this link again (from its window, which outlives connections, so a
    /// restarted sender's previous incarnation can speak again). On a cut link,
    /// the probability per frame dropped of an old one crossing instead.
    pub replay: f64,
    /// Keep the replay window as it is: new frames cross but are not kept, so
    /// replay draws only on what crossed before (a dead sender's last words).
    pub freeze: bool,
}

/// Frames a link keeps for replay, and the largest it keeps.
const REPLAY_WINDOW: usize = 512;
const REPLAY_MAX_FRAME: usize = 64 << 10;

/// Counters of a link.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkCounters {
    /// Frames forwarded (duplicates included).
    pub forwarded: u64,
    /// Frames dropped by a cut or loss.
    pub dropped: u64,
    /// Old frames delivered again by replay.
    pub replayed: u64,
}

/// A link's policy, RNG and counters.
pub struct Shared {
    policy: LinkPolicy,
    rng: Rng,
    counters: LinkCounters,
    /// Recent frames forwarded on this link, oldest first, across connections.
    window: std::collections::VecDeque<Vec<u8>>,
}

impl Shared {
    fn new(rng: Rng) -> Self {
        Shared {
            policy: LinkPolicy::default(),
            rng,
            counters: LinkCounters::default(),
            window: std::collections::VecDeque::new(),
        }
    }

    /// An older frame to deliver in place of a new one that a cut drops, if the
    /// policy's replay draws one (the new frame is not kept: it never crossed).
    fn replay_only(&mut self) -> Option<Vec<u8>> {
        if self.window.is_empty() || !self.rng.chance(self.policy.replay) {
            return None;
        }
        let i = self.rng.below(self.window.len() as u64) as usize;
        self.counters.replayed += 1;
        self.window.get(i).cloned()
    }

    /// Keeps `frame` for replay; answers an older frame to deliver again, if
    /// the policy draws one.
    fn remember(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let again = if self.policy.replay > 0.0
            && !self.window.is_empty()
            && self.rng.chance(self.policy.replay)
        {
            let i = self.rng.below(self.window.len() as u64) as usize;
            self.counters.replayed += 1;
            self.window.get(i).cloned()
        } else {
            None
        };
        if frame.len() <= REPLAY_MAX_FRAME && !self.policy.freeze {
            if self.window.len() == REPLAY_WINDOW {
                self.window.pop_front();
            }
            self.window.push_back(frame.to_vec());
        }
        again
    }
}

/// A running proxy for the link `from → to`.
pub struct LinkProxy {
    /// The port the sender is told to use.
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl LinkProxy {
    /// Starts a proxy on a free port of address `bind` forwarding to `target`.
    pub async fn start(bind: &str, target: String, rng: Rng) -> std::io::Result<LinkProxy> {
        Self::serve(bind, target, rng, relay).await
    }

    /// Starts a byte-stream proxy: for protocols that are not our framing
    /// (Redis replication, etcd peers). It carries both directions of each
    /// connection; a cut holds the bytes (as a blackholed route does, until the
    /// endpoints time out) and delay holds each chunk; loss and duplication do
    /// not apply to a byte stream.
    pub async fn start_stream(bind: &str, target: String, rng: Rng) -> std::io::Result<LinkProxy> {
        Self::serve(bind, target, rng, relay_stream).await
    }

    /// Listens on a free port of `bind` and hands each connection to `handle`.
    async fn serve<F, Fut>(
        bind: &str,
        target: String,
        rng: Rng,
        handle: F,
    ) -> std::io::Result<LinkProxy>
    where
        F: Fn(TcpStream, String, Arc<Mutex<Shared>>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind((bind, 0)).await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Mutex::new(Shared::new(rng)));
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                tokio::spawn(handle(inbound, target.clone(), s.clone()));
            }
        });
        Ok(LinkProxy { port, shared, task })
    }

    /// Replaces the link's policy.
    pub fn set_policy(&self, policy: LinkPolicy) {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).policy = policy;
    }

    /// Changes the policy in place.
    pub fn update(&self, f: impl FnOnce(&mut LinkPolicy)) {
        f(&mut self.shared.lock().unwrap_or_else(|e| e.into_inner()).policy);
    }

    /// Frames forwarded and dropped so far.
    pub fn counters(&self) -> LinkCounters {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .counters
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_frame(r: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.ok()?;
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME {
        return None;
    }
    let mut frame = vec![0u8; n + 4];
    frame[..4].copy_from_slice(&len);
    r.read_exact(&mut frame[4..]).await.ok()?;
    Some(frame)
}

/// Moves frames from one accepted connection to a fresh connection to `target`.
async fn relay(mut inbound: TcpStream, target: String, shared: Arc<Mutex<Shared>>) {
    let Ok(Ok(outbound)) =
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&target)).await
    else {
        // The receiver is down: behave like it (the sender sees a closed connection).
        return;
    };
    let _ = outbound.set_nodelay(true);
    let (tx, rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(deliver(outbound, rx));
    while let Some(frame) = read_frame(&mut inbound).await {
        let plan = {
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            let p = s.policy.clone();
            if p.cut && p.replay > 0.0 {
                // A cut with replay on: new frames are lost, but old ones still
                // trickle across, as messages held somewhere along a broken route.
                s.counters.dropped += 1;
                s.replay_only()
                    .map(|old| (Instant::now(), None, Some(old), false))
            } else if p.cut || (p.loss > 0.0 && s.rng.chance(p.loss)) {
                s.counters.dropped += 1;
                None
            } else {
                let now = Instant::now();
                let jitter = if p.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    p.jitter.mul_f64(s.rng.unit())
                };
                let first = now + p.delay + jitter;
                let twice = p.duplicate > 0.0 && s.rng.chance(p.duplicate);
                let second = twice.then(|| now + p.delay + p.jitter.mul_f64(s.rng.unit()));
                s.counters.forwarded += 1 + twice as u64;
                let old = s.remember(&frame);
                Some((first, second, old, true))
            }
        };
        if let Some((at, again, old, send_new)) = plan {
            if let Some(at2) = again {
                let _ = tx.send((at2, frame.clone()));
            }
            if let Some(old) = old {
                // Delivered first: an old message overtaking a new one.
                let _ = tx.send((at, old));
            }
            if send_new && tx.send((at, frame)).is_err() {
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Carries one connection as a byte stream, both directions.
async fn relay_stream(inbound: TcpStream, target: String, shared: Arc<Mutex<Shared>>) {
    let Ok(Ok(outbound)) =
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&target)).await
    else {
        return;
    };
    let _ = outbound.set_nodelay(true);
    let (in_r, in_w) = inbound.into_split();
    let (out_r, out_w) = outbound.into_split();
    let up = tokio::spawn(pump(in_r, out_w, shared.clone()));
    pump(out_r, in_w, shared).await;
    up.abort();
}

/// Copies one direction of a byte stream, holding chunks while the link is
/// cut and for the link's delay.
async fn pump(
    from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Mutex<Shared>>,
) {
    pump_with(from, to, move || Some(shared.clone())).await;
}

/// [`pump`] with the link looked up per chunk (`None`: not known yet, forward).
async fn pump_with(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: impl Fn() -> Option<Arc<Mutex<Shared>>>,
) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Unknown links (a sender not yet identified) forward at once. A held
        // chunk counts once, as dropped, however long the cut lasts.
        let mut counted = false;
        while let Some(shared) = link() {
            let (cut, wait) = {
                let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                let p = s.policy.clone();
                let jitter = if p.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    p.jitter.mul_f64(s.rng.unit())
                };
                if !counted {
                    counted = true;
                    if p.cut {
                        s.counters.dropped += 1;
                    } else {
                        s.counters.forwarded += 1;
                    }
                }
                (p.cut, p.delay + jitter)
            };
            if !cut {
                tokio::time::sleep(wait).await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The links into one node, keyed by the sender's name, and the table from
/// the ids senders announce to their names.
pub type Senders = Arc<Mutex<std::collections::HashMap<String, Arc<Mutex<Shared>>>>>;
/// Announced sender id (e.g. an etcd member id in hex) to node name.
pub type SenderIds = Arc<Mutex<std::collections::HashMap<String, String>>>;

/// How a shared proxy learns which node a connection comes from.
#[derive(Clone, Copy, Debug)]
pub enum Announce {
    /// The value of this HTTP request header (etcd's `X-Server-From`).
    Header(&'static str),
    /// The connection's source IP address, for nodes that each bind their own
    /// loopback address (Redis and Sentinel with a bind address).
    SourceIp,
}

/// Peers that share one advertised address per node (etcd, Redis Sentinel's
/// announced addresses) go through one proxy per receiver, which learns each
/// connection's sender as `announce` says and applies that link's policy
/// (byte-stream semantics, as [`LinkProxy::start_stream`]). Connections from
/// unknown senders (the harness's clients) pass.
pub async fn start_announced(
    bind: &str,
    target: String,
    announce: Announce,
    senders: Senders,
    ids: SenderIds,
) -> std::io::Result<(u16, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind((bind, 0)).await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = inbound.set_nodelay(true);
            let (target, senders, ids) = (target.clone(), senders.clone(), ids.clone());
            tokio::spawn(async move {
                let (head, from) = match announce {
                    Announce::Header(header) => match read_head(&mut inbound, header).await {
                        Some(found) => found,
                        None => return,
                    },
                    Announce::SourceIp => (Vec::new(), Some(peer.ip().to_string())),
                };
                let Ok(Ok(mut outbound)) =
                    tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&target)).await
                else {
                    return;
                };
                let _ = outbound.set_nodelay(true);
                if outbound.write_all(&head).await.is_err() {
                    return;
                }
                let link = move || -> Option<Arc<Mutex<Shared>>> {
                    let from = from.as_ref()?;
                    let name = ids
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(from)?
                        .clone();
                    senders
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&name)
                        .cloned()
                };
                let (in_r, in_w) = inbound.into_split();
                let (out_r, out_w) = outbound.into_split();
                let up = tokio::spawn(pump_with(in_r, out_w, link.clone()));
                pump_with(out_r, in_w, link).await;
                up.abort();
            });
        }
    });
    Ok((port, task))
}

/// Reads up to the end of an HTTP request head (at most 16 KiB); answers the
/// bytes read and the value of `header`, if present.
async fn read_head(r: &mut TcpStream, header: &str) -> Option<(Vec<u8>, Option<String>)> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < (16 << 10) {
        let n = r.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let value = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case(header)
            .then(|| value.trim().to_string())
    });
    Some((head, value))
}

impl LinkProxy {
    /// A link whose traffic another proxy carries (see [`start_announced`]):
    /// it only holds the policy; `port` is the shared proxy's.
    pub fn policy_only(port: u16, rng: Rng) -> LinkProxy {
        LinkProxy {
            port,
            shared: Arc::new(Mutex::new(Shared::new(rng))),
            task: tokio::spawn(async {}),
        }
    }

    /// The policy holder, for a proxy that carries this link's traffic.
    pub fn shared(&self) -> Arc<Mutex<Shared>> {
        self.shared.clone()
    }
}

/// Writes frames at their delivery times, earliest first (so jitter reorders).
async fn deliver(mut out: TcpStream, mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>) {
    let mut heap: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut open = true;
    while open || !heap.is_empty() {
        let due = heap.peek().map(|Reverse((t, _, _))| *t);
        tokio::select! {
            msg = rx.recv(), if open => match msg {
                Some((at, frame)) => {
                    seq += 1;
                    heap.push(Reverse((at, seq, frame)));
                }
                None => open = false,
            },
            _ = async { tokio::time::sleep_until(due.unwrap_or_else(Instant::now)).await }, if due.is_some() => {}
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse((t, _, _))| *t <= now) {
            let Some(Reverse((_, _, frame))) = heap.pop() else {
                break;
            };
            if out.write_all(&frame).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_frames(listener: TcpListener) -> mpsc::UnboundedReceiver<Vec<u8>> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(f) = read_frame(&mut s).await {
                        let _ = tx.send(f[4..].to_vec());
                    }
                });
            }
        });
        rx
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    #[tokio::test]
    async fn forwards_frames_and_a_cut_drops_them_without_closing() {
        let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = sink.local_addr().unwrap().to_string();
        let mut got = echo_frames(sink).await;
        let proxy = LinkProxy::start("127.0.0.1", target, Rng::new(1))
            .await
            .unwrap();
        let mut conn = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
        conn.write_all(&frame(b"one")).await.unwrap();
        assert_eq!(got.recv().await.unwrap(), b"one");
        proxy.update(|p| p.cut = true);
        conn.write_all(&frame(b"lost")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.update(|p| p.cut = false);
        // Same connection, still open: the node never learned of the partition.
        conn.write_all(&frame(b"two")).await.unwrap();
        assert_eq!(got.recv().await.unwrap(), b"two");
        assert_eq!(proxy.counters().dropped, 1);
    }

    #[tokio::test]
    async fn a_cut_link_with_replay_lets_only_old_frames_across() {
        let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = sink.local_addr().unwrap().to_string();
        let mut got = echo_frames(sink).await;
        let proxy = LinkProxy::start("127.0.0.1", target, Rng::new(3))
            .await
            .unwrap();
        let mut conn = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
        for old in [b"old1", b"old2"] {
            conn.write_all(&frame(old)).await.unwrap();
            assert_eq!(got.recv().await.unwrap(), old);
        }
        proxy.update(|p| {
            p.cut = true;
            p.replay = 1.0;
        });
        for _ in 0..20 {
            conn.write_all(&frame(b"new")).await.unwrap();
        }
        let mut crossed = Vec::new();
        while let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(200), got.recv()).await {
            crossed.push(f);
        }
        assert_eq!(crossed.len(), 20, "one old frame per frame dropped");
        assert!(
            crossed.iter().all(|f| f == b"old1" || f == b"old2"),
            "{crossed:?}"
        );
        assert_eq!(proxy.counters().dropped, 20);
    }

    #[tokio::test]
    async fn a_stream_link_carries_both_directions_and_a_cut_holds_the_bytes() {
        let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = sink.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = sink.accept().await.unwrap();
            let mut buf = [0u8; 64];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let proxy = LinkProxy::start_stream("127.0.0.1", target, Rng::new(3))
            .await
            .unwrap();
        let mut conn = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
        let mut got = [0u8; 5];
        conn.write_all(b"hello").await.unwrap();
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        proxy.update(|p| p.cut = true);
        conn.write_all(b"later").await.unwrap();
        let held =
            tokio::time::timeout(Duration::from_millis(200), conn.read_exact(&mut got)).await;
        assert!(held.is_err(), "nothing crosses a cut link");
        proxy.update(|p| p.cut = false);
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(
            &got, b"later",
            "the held bytes arrive after the heal, in order"
        );
    }

    #[tokio::test]
    async fn loss_and_duplication_follow_the_policy() {
        let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = sink.local_addr().unwrap().to_string();
        let mut got = echo_frames(sink).await;
        let proxy = LinkProxy::start("127.0.0.1", target, Rng::new(2))
            .await
            .unwrap();
        proxy.set_policy(LinkPolicy {
            loss: 0.5,
            ..LinkPolicy::default()
        });
        let mut conn = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
        for i in 0..400u32 {
            conn.write_all(&frame(&i.to_be_bytes())).await.unwrap();
        }
        conn.write_all(&frame(b"end")).await.unwrap();
        while proxy.counters().forwarded + proxy.counters().dropped < 401 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        proxy.set_policy(LinkPolicy {
            duplicate: 1.0,
            ..LinkPolicy::default()
        });
        conn.write_all(&frame(b"dup")).await.unwrap();
        let mut n = 0;
        let mut dups = 0;
        loop {
            let f = tokio::time::timeout(Duration::from_secs(2), got.recv())
                .await
                .unwrap()
                .unwrap();
            if f == b"dup" {
                dups += 1;
                if dups == 2 {
                    break;
                }
            } else if f != b"end" {
                n += 1;
            }
        }
        assert!(
            (120..280).contains(&n),
            "{n} of 400 frames passed at 50% loss"
        );
    }
}
