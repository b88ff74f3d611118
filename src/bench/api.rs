//! `strikeflow bench api`: the query API under load. A private database is filled with a
//! simulated session played through the analytics core (instruments, ticks, bars, strike,
//! chain, moneyness and indicator rows, stored by the sink's own `write_batch`), the API is
//! started in this process on free ports with a minted token, and a fixed number of
//! keep-alive HTTP/1.1 connections (a small client in this process, sharing the cores with
//! the server) drive the five scenarios for a fixed time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use strikeflow_analytics::indicator_bank::{IndicatorBank, IndicatorChoice};
use strikeflow_analytics::{CoreSettings, Output, TickProcessor};
use strikeflow_api::{mint_token, ApiServer, ApiSettings, TokenRequest};
use strikeflow_ingest::MarketSimulator;
use strikeflow_schemas::Topics;
use strikeflow_sink::{write_batch, Batch, Source, Sources, SINK_LOCK_CLASS};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::scratch::{connect, create_database, drop_database};
use crate::migrate::migrate_database;
use crate::Config;

/// The sink consumer name the fill stores its offsets under.
const WRITER: &str = "bench-api";
/// Ticks per stored batch while filling.
const FILL_BATCH: usize = 20_000;

/// What `strikeflow bench api` runs.
#[derive(Debug, Clone)]
pub struct ApiBench {
    /// Seconds of load.
    pub secs: u64,
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// Simulated ticks stored before the load.
    pub ticks: usize,
}

/// The scenarios, in the order they are printed.
const SCENARIOS: [&str; 6] = [
    "health",
    "instruments search",
    "UDF history",
    "option chain (cached)",
    "option chain (uncached)",
    "F&O analysis (strikes)",
];

/// Runs the benchmark on a private database that is dropped afterwards.
pub async fn api(config: &Config, bench: ApiBench) -> Result<()> {
    if bench.connections == 0 || bench.secs == 0 {
        bail!("--connections and --secs must be at least 1");
    }
    let name = format!("sf_bench_api_{}", std::process::id());
    let (admin, url) = create_database(&config.database.url, &name).await?;
    let result = run(config, &bench, &url).await;
    let dropped = drop_database(&admin, &name).await;
    result?;
    dropped
}

async fn run(config: &Config, bench: &ApiBench, url: &str) -> Result<()> {
    migrate_database(url)
        .await
        .context("migrating the benchmark database")?;
    let started = Instant::now();
    let filled = fill(config, url, bench.ticks).await?;
    println!(
        "bench api: filled {} in {:.1?}: {} instruments, {} ticks, {} bars, {} strike rows, {} chain rows",
        url.rsplit('/').next().unwrap_or(url),
        started.elapsed(),
        filled.instruments,
        bench.ticks,
        filled.bars,
        filled.strikes,
        filled.chains
    );
    let db = connect(url).await?;
    db.batch_execute("ANALYZE").await?;
    let targets = Targets::read(&db).await?;
    drop(db);

    // Two servers on one database: the configured cache, and one with the cache off for the
    // uncached chain. High rate limits: one token makes every request.
    let settings = ApiSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        requests_per_sec: 1_000_000,
        requests_burst: 1_000_000,
        ..config.api.clone()
    };
    let mut api_config = config.api();
    api_config.database_url = url.to_owned();
    api_config.settings = settings.clone();
    let cached = ApiServer::bind(api_config.clone()).await?;
    api_config.settings.cache_ttl_ms = 0;
    let uncached = ApiServer::bind(api_config).await?;
    let (cached_addr, uncached_addr) = (cached.local_addr(), uncached.local_addr());
    let shutdown = CancellationToken::new();
    let servers = [
        tokio::spawn(cached.serve(shutdown.clone())),
        tokio::spawn(uncached.serve(shutdown.clone())),
    ];
    let token = mint_token(
        &config.auth,
        &TokenRequest {
            sub: "bench".to_owned(),
            ttl: Duration::from_secs(bench.secs + 600),
            audiences: vec![settings.audience.clone()],
            scopes: vec![settings.scope.clone()],
            channels: Vec::new(),
        },
    )?;
    let requests = targets.requests(cached_addr, uncached_addr, &token);

    // Warm-up (connections, statement plans, the cache), then the timed run.
    drive(&requests, bench.connections, Duration::from_secs(1)).await?;
    let started = Instant::now();
    let samples = drive(
        &requests,
        bench.connections,
        Duration::from_secs(bench.secs),
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    shutdown.cancel();
    for server in servers {
        server.await??;
    }
    report(bench, &targets, &samples, elapsed, cached_addr);
    Ok(())
}

/// Rows stored by [`fill`].
struct Filled {
    instruments: usize,
    bars: usize,
    strikes: usize,
    chains: usize,
}

/// Plays `ticks` simulated ticks through the analytics core and stores them and every
/// output with the sink's `write_batch`, holding the sink lock as the sink does.
async fn fill(config: &Config, url: &str, ticks: usize) -> Result<Filled> {
    let mut market = MarketSimulator::new(&config.simulate.market)?;
    let instruments = market.instruments().to_vec();
    let settings = CoreSettings {
        allowed_lateness_micros: 2_000_000,
        chain: config.processor().settings.analytics.chain_settings(),
    };
    let bank = IndicatorBank::new(&IndicatorChoice::defaults(), &[1, 3, 5, 15])?;
    let mut core = TickProcessor::new(settings, bank);
    for instrument in &instruments {
        core.on_instrument(instrument)?;
    }
    let mut client = connect(url).await?;
    client
        .execute(
            "SELECT pg_advisory_lock($1, hashtext($2))",
            &[&SINK_LOCK_CLASS, &WRITER],
        )
        .await?;
    // The sink's staging tables of one session, as its `prepare_session` creates them (the
    // copies name their columns, so every column of the table will do).
    for table in [
        "bars_1m",
        "strike_analytics",
        "chain_analytics",
        "moneyness_points",
        "indicator_values",
        "instrument_history",
    ] {
        client
            .batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS {table}_stage ON COMMIT DELETE ROWS \
                 AS SELECT * FROM {table} WITH NO DATA"
            ))
            .await?;
    }
    let topics = Topics::default();
    let sources = Sources::new(&topics);
    let mut filled = Filled {
        instruments: instruments.len(),
        bars: 0,
        strikes: 0,
        chains: 0,
    };
    let mut out = Vec::with_capacity(4_096);
    let mut done = 0;
    let mut first = true;
    while done < ticks || first {
        let mut batch = Batch::new(&sources);
        if first {
            for i in &instruments {
                batch
                    .contracts
                    .insert((i.instrument_token, i.expiry), i.clone());
                batch.instruments.insert(i.instrument_token, i.clone());
            }
            first = false;
        }
        let n = FILL_BATCH.min(ticks - done);
        for _ in 0..n {
            let tick = market.next_tick();
            batch.ticks.push(tick.clone());
            core.on_tick(tick, &mut out);
            for o in out.drain(..) {
                match o {
                    Output::Bar(b) => {
                        batch.bars.insert((b.instrument_token, b.window_start), b);
                    }
                    Output::Late(t) => batch.late.push(t),
                    Output::Strike(s) => {
                        batch.strikes.insert((s.instrument_token, s.ts), s);
                    }
                    Output::Chain(c) => {
                        batch
                            .chains
                            .insert((c.underlying.clone(), c.expiry, c.ts), c);
                    }
                    Output::Moneyness(m) => {
                        let id = (
                            m.underlying.clone(),
                            m.expiry,
                            m.bucket.clone(),
                            m.side,
                            m.minute,
                        );
                        batch.moneyness.insert(id, m);
                    }
                    Output::Indicator(p) => {
                        if p.outputs.iter().all(|(_, v)| v.is_finite()) {
                            let id = (
                                p.instrument_token,
                                p.timeframe_minutes,
                                p.indicator.clone(),
                                p.params.clone(),
                                p.window_start,
                            );
                            batch.indicators.insert(id, p);
                        }
                    }
                }
            }
        }
        done += n;
        filled.bars += batch.bars.len();
        filled.strikes += batch.strikes.len();
        filled.chains += batch.chains.len();
        batch.offsets.insert((Source::Ticks, 0), done as i64);
        // `{:?}`: the sink's error wraps PostgreSQL's, whose detail its Display leaves out.
        if let Err(e) = write_batch(&mut client, WRITER, &batch).await {
            bail!("storing the simulated session: {e:?}");
        }
    }
    Ok(filled)
}

/// What the scenarios ask for, read from the filled database.
struct Targets {
    underlying: String,
    expiry: String,
    /// First and last emission of that chain (unix seconds).
    from: i64,
    to: i64,
    /// Emission seconds of the chain, for `at=`.
    moments: Vec<i64>,
    /// Symbols with bars (futures and spots first), for UDF history.
    symbols: Vec<String>,
    /// Prefixes for the instrument search.
    prefixes: Vec<String>,
}

impl Targets {
    async fn read(db: &Client) -> Result<Targets> {
        let row = db
            .query_opt(
                "SELECT underlying, expiry::text, extract(epoch FROM min(ts))::bigint, \
                 extract(epoch FROM max(ts))::bigint FROM chain_analytics \
                 GROUP BY 1, 2 ORDER BY count(*) DESC, 2 LIMIT 1",
                &[],
            )
            .await?
            .context("the simulated session stored no chain analytics: use more --ticks")?;
        let (underlying, expiry, from, to): (String, String, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let moments = db
            .query(
                "SELECT DISTINCT extract(epoch FROM ts)::bigint FROM chain_analytics \
                 WHERE underlying = $1 AND expiry = $2::text::date ORDER BY 1",
                &[&underlying, &expiry],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let symbols = db
            .query(
                "SELECT i.tradingsymbol FROM instruments i \
                 WHERE EXISTS (SELECT 1 FROM bars_1m b WHERE b.instrument_token = i.instrument_token) \
                 ORDER BY i.instrument_type IN ('FUT', 'EQ') DESC, i.tradingsymbol LIMIT 20",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect::<Vec<String>>();
        if symbols.is_empty() {
            bail!("the simulated session stored no bars: use more --ticks");
        }
        let prefixes = db
            .query(
                "SELECT DISTINCT left(tradingsymbol, n) FROM instruments, \
                 (VALUES (5), (9), (12)) v(n) WHERE instrument_type IN ('CE', 'PE', 'FUT') \
                 ORDER BY 1 LIMIT 40",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(Targets {
            underlying,
            expiry,
            from,
            to: to + 1,
            moments,
            symbols,
            prefixes,
        })
    }

    /// Per scenario, the requests its connections cycle through (server, raw request).
    fn requests(
        &self,
        cached: SocketAddr,
        uncached: SocketAddr,
        token: &str,
    ) -> Vec<Vec<(SocketAddr, Vec<u8>)>> {
        let get = |addr: SocketAddr, path: String| {
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n")
                .into_bytes()
        };
        let (u, e) = (&self.underlying, &self.expiry);
        let health = vec![(cached, get(cached, "/healthz".to_owned()))];
        let instruments = self
            .prefixes
            .iter()
            .map(|q| {
                let path = format!("/api/v1/instruments?q={}&limit=20", enc(q));
                (cached, get(cached, path))
            })
            .collect();
        let history = self
            .symbols
            .iter()
            .flat_map(|s| ["1", "5", "15"].map(|r| (s.clone(), r)))
            .map(|(s, r)| {
                let path = format!(
                    "/udf/history?symbol={}&resolution={r}&from={}&to={}",
                    enc(&s),
                    self.from - 3_600,
                    self.to
                );
                (cached, get(cached, path))
            })
            .collect();
        let chain_cached = vec![(
            cached,
            get(
                cached,
                format!("/api/v1/chain?underlying={}&expiry={e}", enc(u)),
            ),
        )];
        let chain_uncached = self
            .moments
            .iter()
            .map(|at| {
                let path = format!("/api/v1/chain?underlying={}&expiry={e}&at={at}", enc(u));
                (uncached, get(uncached, path))
            })
            .collect();
        let strikes = vec![(
            uncached,
            get(
                uncached,
                format!(
                    "/api/v1/strikes?underlying={}&expiry={e}&from={}&to={}",
                    enc(u),
                    self.from,
                    self.to
                ),
            ),
        )];
        vec![
            health,
            instruments,
            history,
            chain_cached,
            chain_uncached,
            strikes,
        ]
    }
}

/// One answered request.
#[derive(Clone, Copy)]
struct Sample {
    scenario: usize,
    micros: u32,
    ok: bool,
    hit: bool,
    bytes: u32,
}

/// `connections` connections spread evenly over the scenarios, each sending its scenario's
/// requests in turn (the next once the answer is read) until `duration` has passed.
async fn drive(
    requests: &[Vec<(SocketAddr, Vec<u8>)>],
    connections: usize,
    duration: Duration,
) -> Result<Vec<Sample>> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::with_capacity(connections);
    for c in 0..connections {
        let requests = requests.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut conns: HashMap<SocketAddr, Conn> = HashMap::new();
            let mut samples = Vec::new();
            // Connection c runs scenario c mod 6 only, so a slow scenario does not hold
            // back the fast ones' connections.
            let scenario = c % requests.len();
            let list = &requests[scenario];
            let mut turn = c / requests.len();
            while Instant::now() < deadline {
                let (addr, raw) = &list[turn % list.len()];
                turn += 1;
                let conn = match conns.entry(*addr) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(Conn::open(*addr).await?)
                    }
                };
                let started = Instant::now();
                let answer = conn.call(raw).await?;
                let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
                samples.push(Sample {
                    scenario,
                    micros,
                    ok: answer.status == 200,
                    hit: answer.hit,
                    bytes: u32::try_from(answer.bytes).unwrap_or(u32::MAX),
                });
            }
            anyhow::Ok(samples)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

/// A keep-alive HTTP/1.1 connection.
struct Conn {
    stream: BufReader<TcpStream>,
    line: String,
    body: Vec<u8>,
}

struct Answer {
    status: u16,
    hit: bool,
    bytes: usize,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::with_capacity(64 * 1024, stream),
            line: String::new(),
            body: Vec::new(),
        })
    }

    /// Sends one request and reads its whole answer (content-length or chunked).
    async fn call(&mut self, raw: &[u8]) -> Result<Answer> {
        self.stream.get_mut().write_all(raw).await?;
        self.line.clear();
        if self.stream.read_line(&mut self.line).await? == 0 {
            bail!("the server closed the connection");
        }
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("an HTTP status line")?;
        let (mut length, mut chunked, mut hit) = (None, false, false);
        loop {
            self.line.clear();
            self.stream.read_line(&mut self.line).await?;
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                } else if name.eq_ignore_ascii_case("x-cache") {
                    hit = value.eq_ignore_ascii_case("hit");
                }
            }
        }
        let mut bytes = 0;
        if chunked {
            loop {
                self.line.clear();
                self.stream.read_line(&mut self.line).await?;
                let size = usize::from_str_radix(self.line.trim(), 16).context("a chunk size")?;
                // The chunk and its CRLF (the last chunk: just the CRLF after no trailers).
                self.body.resize(size + 2, 0);
                self.stream.read_exact(&mut self.body).await?;
                bytes += size;
                if size == 0 {
                    break;
                }
            }
        } else {
            let size = length.context("neither content-length nor chunked")?;
            self.body.resize(size, 0);
            self.stream.read_exact(&mut self.body).await?;
            bytes = size;
        }
        Ok(Answer { status, hit, bytes })
    }
}

fn report(bench: &ApiBench, targets: &Targets, samples: &[Sample], secs: f64, addr: SocketAddr) {
    println!(
        "  load: {} keep-alive HTTP/1.1 connections ({} per scenario) for {secs:.1} s against {addr} \
         (and a cache-off twin); client and server share this process and the machine's cores",
        bench.connections,
        bench.connections.div_ceil(SCENARIOS.len())
    );
    println!(
        "  chain {} {} ({} emissions), ranges {}..{} (unix s), {} history symbols, {} search prefixes",
        targets.underlying,
        targets.expiry,
        targets.moments.len(),
        targets.from,
        targets.to,
        targets.symbols.len(),
        targets.prefixes.len()
    );
    println!(
        "  {:<26} {:>9} {:>9} {:>8} {:>8} {:>8} {:>6} {:>6} {:>9}",
        "scenario",
        "requests",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "non200",
        "hit%",
        "avg bytes"
    );
    for (i, name) in SCENARIOS.iter().enumerate() {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.scenario == i).collect();
        if mine.is_empty() {
            continue;
        }
        let mut micros: Vec<u32> = mine.iter().map(|s| s.micros).collect();
        micros.sort_unstable();
        let pct = |p: f64| {
            let at = ((micros.len() as f64 * p).ceil() as usize).clamp(1, micros.len()) - 1;
            f64::from(micros[at]) / 1_000.0
        };
        let n = mine.len();
        println!(
            "  {:<26} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>5.0}% {:>9.0}",
            name,
            n,
            n as f64 / secs,
            pct(0.50),
            pct(0.95),
            pct(0.99),
            mine.iter().filter(|s| !s.ok).count(),
            100.0 * mine.iter().filter(|s| s.hit).count() as f64 / n as f64,
            mine.iter().map(|s| f64::from(s.bytes)).sum::<f64>() / n as f64,
        );
    }
    println!(
        "  overall: {} requests, {:.0} requests/s",
        samples.len(),
        samples.len() as f64 / secs
    );
}

/// Percent-encodes a query value.
fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn the_client_reads_sized_and_chunked_answers_on_one_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            let mut buf = [0_u8; 1024];
            let answers: [&[u8]; 2] = [
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-cache: hit\r\n\r\nhello",
                b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            ];
            for answer in answers {
                // One request each: read to the blank line, then answer.
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = socket.read(&mut buf).await.expect("read");
                    seen.extend_from_slice(&buf[..n]);
                }
                seen.clear();
                socket.write_all(answer).await.expect("write");
            }
        });
        let mut conn = Conn::open(addr).await.expect("connect");
        let first = conn.call(b"GET /a HTTP/1.1\r\n\r\n").await.expect("first");
        assert_eq!((first.status, first.hit, first.bytes), (200, true, 5));
        let second = conn.call(b"GET /b HTTP/1.1\r\n\r\n").await.expect("second");
        assert_eq!((second.status, second.hit, second.bytes), (404, false, 5));
        server.await.expect("server");
    }

    #[test]
    fn query_values() {
        assert_eq!(enc("NIFTY 50&x"), "NIFTY%2050%26x");
    }
}
