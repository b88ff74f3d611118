//! The push bench's crowd: N WebSocket clients in this process, each timing every data
//! message it reads against the moment its record was published. `bench e2e` uses the same
//! crowd with its own [`Timing`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use strikeflow_push::protocol::bars_channel;

use super::wire::{Event, WireClient};

/// Handshakes in flight at once: enough to connect 10,000 clients in seconds without
/// overrunning the listener's accept backlog.
const CONNECTING: usize = 128;

/// The push endpoint's path.
const PATH: &str = "/ws";
/// Bytes of a message's start that hold its head (type, channel, epoch, seq).
const HEAD_BYTES: usize = 512;

/// The kinds a latency is reported for, by channel prefix.
const KINDS: [(&str, &str); 3] = [("ticks.", "ticks"), ("bars.", "bars"), ("chain.", "chain")];

/// How a client learns when the record behind a delivered message entered the pipeline:
/// the push bench from its log of publish times, `bench e2e` from the tick itself.
pub(crate) trait Timing: Send + Sync {
    /// Nanoseconds since the bench's origin, now.
    fn now(&self) -> u64;
    /// When the message's record was sent, in nanoseconds since the origin; `None` for a
    /// message the bench cannot place. `head` is the start of the message's text (its head
    /// and the first fields of its data).
    fn sent(&self, channel: &str, epoch: &str, seq: u64, head: &str) -> Option<u64>;
}

/// Which channels each client subscribes to.
pub(crate) struct Plan {
    subscriptions: Vec<Vec<String>>,
}

impl Plan {
    /// Client i: chain i mod chains, the one-minute bars of one symbol and the ticks of two,
    /// spreading the clients evenly over the channels.
    pub(crate) fn new(clients: usize, chains: &[String], symbols: &[String]) -> Self {
        let subscriptions = (0..clients)
            .map(|i| {
                let mut channels = Vec::with_capacity(4);
                if !chains.is_empty() {
                    channels.push(chains[i % chains.len()].clone());
                }
                if !symbols.is_empty() {
                    let n = symbols.len();
                    channels.push(bars_channel(&symbols[i % n], 1));
                    channels.push(format!("ticks.{}", symbols[(2 * i) % n]));
                    if n > 1 {
                        channels.push(format!("ticks.{}", symbols[(2 * i + 1) % n]));
                    }
                }
                channels
            })
            .collect();
        Self { subscriptions }
    }
}

/// Figures shared by every client while the bench runs.
#[derive(Default)]
struct Shared {
    counting: AtomicBool,
    deliveries: AtomicU64,
    last_delivery: AtomicU64,
    connected: AtomicUsize,
}

/// What one client saw.
struct ClientReport {
    /// (kind index, microseconds) per timed data message.
    latencies: Vec<(u8, u32)>,
    /// The close code, when the server closed it.
    closed_with: Option<u16>,
}

/// Latency percentiles of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Latency {
    pub(crate) count: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

/// The crowd's figures once stopped.
pub(crate) struct Report {
    pub(crate) connected: usize,
    pub(crate) refused: usize,
    pub(crate) deliveries: u64,
    pub(crate) closes: BTreeMap<u16, usize>,
    pub(crate) latency: Vec<(String, Latency)>,
}

/// The running clients.
pub(crate) struct Crowd {
    shared: Arc<Shared>,
    times: Arc<dyn Timing>,
    tasks: JoinSet<ClientReport>,
    refused: usize,
}

impl Crowd {
    /// Connects and subscribes every client of `plan`; returns once each has either
    /// subscribed or failed.
    pub(crate) async fn connect(
        addr: String,
        token: &str,
        plan: &Plan,
        times: Arc<dyn Timing>,
        stop: CancellationToken,
    ) -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let gate = Arc::new(Semaphore::new(CONNECTING));
        let token: Arc<str> = Arc::from(token);
        let mut tasks = JoinSet::new();
        let mut ready = Vec::with_capacity(plan.subscriptions.len());
        for channels in &plan.subscriptions {
            let (done, subscribed) = oneshot::channel();
            ready.push(subscribed);
            let client = Client {
                addr: addr.clone(),
                token: token.clone(),
                channels: channels.clone(),
                shared: shared.clone(),
                times: times.clone(),
                stop: stop.clone(),
            };
            let gate = gate.clone();
            tasks.spawn(async move { client.run(gate, done).await });
        }
        let mut refused = 0;
        for subscribed in ready {
            if !matches!(subscribed.await, Ok(true)) {
                refused += 1;
            }
        }
        Ok(Self {
            shared,
            times,
            tasks,
            refused,
        })
    }

    /// From now on, data messages count and are timed.
    pub(crate) fn start_counting(&self) {
        self.shared.counting.store(true, Ordering::Release);
    }

    /// Waits until no message has arrived for `quiet`, at most `limit`.
    pub(crate) async fn wait_quiet(&self, quiet: Duration, limit: Duration) {
        let quiet = u64::try_from(quiet.as_nanos()).unwrap_or(u64::MAX);
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let last = self.shared.last_delivery.load(Ordering::Acquire);
            if self.times.now().saturating_sub(last) >= quiet {
                return;
            }
        }
    }

    /// Collects every client's figures (the stop token must be cancelled first).
    pub(crate) async fn finish(mut self) -> Report {
        let mut closes = BTreeMap::new();
        let mut by_kind: Vec<Vec<u32>> = vec![Vec::new(); KINDS.len()];
        while let Some(joined) = self.tasks.join_next().await {
            let Ok(report) = joined else { continue };
            if let Some(code) = report.closed_with {
                *closes.entry(code).or_default() += 1;
            }
            for (kind, micros) in report.latencies {
                if let Some(v) = by_kind.get_mut(usize::from(kind)) {
                    v.push(micros);
                }
            }
        }
        let mut all: Vec<u32> = by_kind.iter().flatten().copied().collect();
        let mut latency = vec![("all".to_owned(), percentiles(&mut all))];
        for ((_, label), mut values) in KINDS.iter().zip(by_kind) {
            latency.push(((*label).to_owned(), percentiles(&mut values)));
        }
        Report {
            connected: self.shared.connected.load(Ordering::Acquire),
            refused: self.refused,
            deliveries: self.shared.deliveries.load(Ordering::Acquire),
            closes,
            latency,
        }
    }
}

/// p50, p99 and max of microsecond values, in milliseconds.
pub(crate) fn percentiles(values: &mut [u32]) -> Latency {
    values.sort_unstable();
    let at = |q: usize| -> f64 {
        if values.is_empty() {
            return 0.0;
        }
        let i = (values.len() * q / 100).min(values.len() - 1);
        f64::from(values[i]) / 1_000.0
    };
    Latency {
        count: values.len(),
        p50_ms: at(50),
        p99_ms: at(99),
        max_ms: values.last().map_or(0.0, |v| f64::from(*v) / 1_000.0),
    }
}

/// One client.
struct Client {
    addr: String,
    token: Arc<str>,
    channels: Vec<String>,
    shared: Arc<Shared>,
    times: Arc<dyn Timing>,
    stop: CancellationToken,
}

impl Client {
    async fn run(self, gate: Arc<Semaphore>, subscribed: oneshot::Sender<bool>) -> ClientReport {
        let mut report = ClientReport {
            latencies: Vec::new(),
            closed_with: None,
        };
        let socket = {
            let Ok(_permit) = gate.acquire().await else {
                let _ = subscribed.send(false);
                return report;
            };
            WireClient::connect(&self.addr, PATH, &self.token).await
        };
        let Ok(mut socket) = socket else {
            let _ = subscribed.send(false);
            return report;
        };
        for channel in &self.channels {
            let op = format!(r#"{{"op":"subscribe","channel":"{channel}"}}"#);
            if socket.send_text(&op).await.is_err() {
                let _ = subscribed.send(false);
                return report;
            }
        }
        self.shared.connected.fetch_add(1, Ordering::AcqRel);
        let _ = subscribed.send(true);
        // One waiter registered for the whole session, polled after the socket: every
        // client shares `stop`, and each poll of it takes the token's lock.
        let stop = self.stop.cancelled();
        tokio::pin!(stop);
        loop {
            let event = tokio::select! {
                biased;
                event = socket.next() => event,
                _ = &mut stop => break,
            };
            match event {
                Ok(Event::Text(len)) => self.on_text(socket.text(len), &mut report),
                Ok(Event::Closed(code)) => {
                    report.closed_with = code;
                    break;
                }
                Err(_) => break,
            }
        }
        report
    }

    fn on_text(&self, text: &[u8], report: &mut ClientReport) {
        if !self.shared.counting.load(Ordering::Relaxed) {
            return;
        }
        // The head is ASCII and near the start; never validate the whole payload.
        let prefix = &text[..text.len().min(HEAD_BYTES)];
        let prefix = match std::str::from_utf8(prefix) {
            Ok(prefix) => prefix,
            Err(e) => std::str::from_utf8(&prefix[..e.valid_up_to()]).unwrap_or_default(),
        };
        let Some(head) = Head::parse(prefix) else {
            return;
        };
        if head.snapshot {
            return;
        }
        let now = self.times.now();
        self.shared.deliveries.fetch_add(1, Ordering::Relaxed);
        self.shared.last_delivery.fetch_max(now, Ordering::Relaxed);
        let Some(sent) = self.times.sent(head.channel, head.epoch, head.seq, prefix) else {
            return;
        };
        let kind = KINDS
            .iter()
            .position(|(prefix, _)| head.channel.starts_with(prefix));
        if let Some(kind) = kind.and_then(|k| u8::try_from(k).ok()) {
            let micros = now.saturating_sub(sent) / 1_000;
            report
                .latencies
                .push((kind, u32::try_from(micros).unwrap_or(u32::MAX)));
        }
    }
}

/// The head of a data message, read without parsing its body: push writes
/// `{"type":…,"channel":…,"epoch":…,"seq":N[,"snapshot":true],"data":…}` in that order
/// (`protocol::data_envelope`), and channel names and epochs hold no escapes.
struct Head<'a> {
    channel: &'a str,
    epoch: &'a str,
    seq: u64,
    snapshot: bool,
}

impl<'a> Head<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let rest = text.strip_prefix(r#"{"type":""#)?;
        let (_, rest) = rest.split_once('"')?;
        let rest = rest.strip_prefix(r#","channel":""#)?;
        let (channel, rest) = rest.split_once('"')?;
        let rest = rest.strip_prefix(r#","epoch":""#)?;
        let (epoch, rest) = rest.split_once('"')?;
        let rest = rest.strip_prefix(r#","seq":"#)?;
        let end = rest.find(|c: char| !c.is_ascii_digit())?;
        let seq = rest[..end].parse().ok()?;
        let snapshot = rest[end..].starts_with(r#","snapshot":true"#);
        Some(Self {
            channel,
            epoch,
            seq,
            snapshot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_head_push_writes() {
        let text = strikeflow_push::protocol::data_envelope(
            strikeflow_push::protocol::ChannelKind::Ticks,
            "ticks.NIFTY26DEC24000CE",
            "p.ticks.v1/0",
            42,
            false,
            r#"{"ltp":1.5}"#,
        );
        let head = Head::parse(&text).unwrap();
        assert_eq!(head.channel, "ticks.NIFTY26DEC24000CE");
        assert_eq!(head.epoch, "p.ticks.v1/0");
        assert_eq!(head.seq, 42);
        assert!(!head.snapshot);
        let snapshot = strikeflow_push::protocol::data_envelope(
            strikeflow_push::protocol::ChannelKind::Bars,
            "bars.X",
            "p.bars.v1/0",
            7,
            true,
            "{}",
        );
        assert!(Head::parse(&snapshot).unwrap().snapshot);
        assert!(Head::parse(r#"{"type":"subscribed","channel":"x"}"#).is_none());
    }

    #[test]
    fn plan_spreads_clients_over_channels() {
        let chains = vec![
            "chain.A.2026-12-31".to_owned(),
            "chain.B.2026-12-31".to_owned(),
        ];
        let symbols: Vec<String> = (0..4).map(|i| format!("S{i}")).collect();
        let plan = Plan::new(4, &chains, &symbols);
        assert_eq!(
            plan.subscriptions[1],
            ["chain.B.2026-12-31", "bars.S1", "ticks.S2", "ticks.S3"]
        );
        let ticks: usize = plan
            .subscriptions
            .iter()
            .flatten()
            .filter(|c| c.starts_with("ticks.S0"))
            .count();
        assert_eq!(ticks, 2);
    }

    #[test]
    fn percentiles_of_known_values() {
        let mut values: Vec<u32> = (1..=100).rev().map(|v| v * 1_000).collect();
        let lat = percentiles(&mut values);
        assert_eq!(lat.count, 100);
        assert_eq!(lat.p50_ms, 51.0);
        assert_eq!(lat.p99_ms, 100.0);
        assert_eq!(lat.max_ms, 100.0);
    }
}
