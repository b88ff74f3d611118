//! Every worked query of `docs/sql.md`, run on the stored output of a simulated session and
//! checked against the same quantity computed here from the Kafka topics.
//!
//! The session is the pinned single-chain market (`SimulatorConfig::single_chain`): NIFTY on
//! Wednesday 2 December 2026, its weekly expiring 8 December, the future `NIFTY26DECFUT`
//! and the index `NIFTY 50`, for about 100 minutes of event time from the 09:15 IST open
//! (enough 5-minute bars for RSI(14) to warm up). The doc queries are written with exactly
//! those literals, so they run as printed — in `psql`, here, and in `./dev check-timescale`
//! — and the test substitutes nothing: the simulator's calendar, symbols and session date
//! are deterministic (the prices are not, and need not be: each run is checked against its
//! own topics). Isolation: the `Sandbox` gives this test its own database and topic prefix,
//! so the tables hold this session only.
//!
//! The ```sql blocks are taken from `docs/sql.md` in order, and each is matched to its
//! check by its first comment line (`-- 1. PCR and max pain ...`): a block added, removed or
//! reordered without updating the test fails by name. Every check compares the full result,
//! row by row and column by column (doubles to 1e-9 relative: sums such as the straddle
//! and the basis are computed here again), and every result must be non-empty.

mod common;

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chrono::{NaiveDate, TimeZone};
use common::{last_per_key, records, wait_processed, wait_until_stored, Sandbox};
use strikeflow_ingest::SimulatorConfig;
use strikeflow_schemas::{
    days_from_date, Bar, BuildUp, ChainAnalytics, IndicatorPoint, Instrument, MoneynessPoint,
    OptionSide, StrikeAnalytics,
};
use tokio_postgres::types::Type;
use tokio_postgres::Row;
use tokio_util::sync::CancellationToken;

const TICKS: u64 = 12_000;
const UNDERLYING: &str = "NIFTY";
const FUTURE: &str = "NIFTY26DECFUT";
const SPOT: &str = "NIFTY 50";
const MINUTE: i64 = 60_000_000;

/// One value of a result, typed loosely enough to compare SQL with Rust.
#[derive(Debug, Clone)]
enum V {
    Null,
    F(f64),
    I(i64),
    T(String),
    /// A timestamptz, UTC micros.
    Ts(i64),
}

impl PartialEq for V {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (V::Null, V::Null) => true,
            (V::F(a), V::F(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
            (V::I(a), V::I(b)) | (V::Ts(a), V::Ts(b)) => a == b,
            (V::T(a), V::T(b)) => a == b,
            _ => false,
        }
    }
}

fn f(v: Option<f64>) -> V {
    v.map_or(V::Null, V::F)
}

fn i(v: Option<i64>) -> V {
    v.map_or(V::Null, V::I)
}

fn t(s: &str) -> V {
    V::T(s.to_owned())
}

/// 2 December 2026 at `h:m` IST, UTC micros.
fn ist(h: u32, m: u32) -> i64 {
    chrono::FixedOffset::east_opt(5 * 3600 + 1800)
        .unwrap()
        .from_local_datetime(
            &NaiveDate::from_ymd_opt(2026, 12, 2)
                .unwrap()
                .and_hms_opt(h, m, 0)
                .unwrap(),
        )
        .unwrap()
        .timestamp_micros()
}

fn row_values(row: &Row) -> Vec<V> {
    (0..row.len())
        .map(|c| {
            let ty = row.columns()[c].type_();
            if *ty == Type::FLOAT8 {
                f(row.get(c))
            } else if *ty == Type::INT8 {
                i(row.get(c))
            } else if *ty == Type::INT4 {
                i(row.get::<_, Option<i32>>(c).map(i64::from))
            } else if *ty == Type::TEXT {
                row.get::<_, Option<String>>(c).map_or(V::Null, V::T)
            } else if *ty == Type::TIMESTAMPTZ {
                row.get::<_, Option<SystemTime>>(c).map_or(V::Null, |s| {
                    V::Ts(s.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64)
                })
            } else {
                panic!("column {} has type {ty}", row.columns()[c].name())
            }
        })
        .collect()
}

/// The bodies of the ```sql fenced blocks of a Markdown text, in order.
fn sql_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let fence = line.trim_start();
        match current.as_mut() {
            None if fence.starts_with("```sql") => current = Some(String::new()),
            Some(_) if fence.starts_with("```") => blocks.extend(current.take()),
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    blocks
}

fn build_up(b: BuildUp) -> &'static str {
    match b {
        BuildUp::LongBuildup => "LONG_BUILDUP",
        BuildUp::ShortBuildup => "SHORT_BUILDUP",
        BuildUp::ShortCovering => "SHORT_COVERING",
        BuildUp::LongUnwinding => "LONG_UNWINDING",
        BuildUp::Neutral => "NEUTRAL",
    }
}

/// The published session, as the checks need it.
struct Published {
    expiry: i32,
    strikes: Vec<StrikeAnalytics>,
    chains: Vec<ChainAnalytics>,
    moneyness: Vec<MoneynessPoint>,
    indicators: Vec<IndicatorPoint>,
    bars: Vec<Bar>,
    instruments: Vec<Instrument>,
}

/// Per strike, the call's and the put's latest strike record at or before `at`.
type Chain<'a> = BTreeMap<i64, (Option<&'a StrikeAnalytics>, Option<&'a StrikeAnalytics>)>;

impl Published {
    fn token(&self, symbol: &str) -> i64 {
        self.instruments
            .iter()
            .find(|i| i.tradingsymbol == symbol)
            .unwrap_or_else(|| panic!("{symbol} is listed"))
            .instrument_token
    }

    /// Strikes are whole rupees here (50-point steps), so they key a map as integers.
    fn chain_at(&self, at: i64) -> Chain<'_> {
        let mut latest: BTreeMap<i64, &StrikeAnalytics> = BTreeMap::new();
        for s in &self.strikes {
            if s.underlying == UNDERLYING && s.expiry == self.expiry && s.ts <= at {
                let e = latest.entry(s.instrument_token).or_insert(s);
                if s.ts > e.ts {
                    *e = s;
                }
            }
        }
        let mut chain = Chain::new();
        for s in latest.into_values() {
            let side = chain.entry(s.strike as i64).or_default();
            match s.option_type {
                OptionSide::CE => side.0 = Some(s),
                OptionSide::PE => side.1 = Some(s),
            }
        }
        chain
    }

    fn minute_chains(&self) -> impl Iterator<Item = &ChainAnalytics> {
        self.chains.iter().filter(move |c| {
            c.underlying == UNDERLYING
                && c.expiry == self.expiry
                && c.minute_close
                && c.ts >= ist(9, 15)
                && c.ts < ist(15, 30)
        })
    }

    /// The chain's minutes in [09:15, 15:30) IST as chain_summary_1m defines them, from
    /// the chains.v1 records: per minute (UTC minutes, which are IST minutes), the number
    /// of emissions and the last one.
    fn chain_summary(&self) -> Vec<(i64, i64, &ChainAnalytics)> {
        let mut minutes: BTreeMap<i64, (i64, &ChainAnalytics)> = BTreeMap::new();
        for c in &self.chains {
            let minute = c.ts.div_euclid(MINUTE) * MINUTE;
            if c.underlying != UNDERLYING
                || c.expiry != self.expiry
                || minute < ist(9, 15)
                || minute >= ist(15, 30)
            {
                continue;
            }
            let (n, last) = minutes.entry(minute).or_insert((0, c));
            *n += 1;
            if c.ts > last.ts {
                *last = c;
            }
        }
        minutes
            .into_iter()
            .map(|(minute, (n, last))| (minute, n, last))
            .collect()
    }

    fn moneyness(&self, bucket: &str, side: OptionSide) -> Vec<&MoneynessPoint> {
        let mut points: Vec<_> = self
            .moneyness
            .iter()
            .filter(|m| {
                m.underlying == UNDERLYING
                    && m.expiry == self.expiry
                    && m.bucket == bucket
                    && m.side == side
                    && m.minute >= ist(9, 15)
                    && m.minute < ist(15, 30)
            })
            .collect();
        points.sort_by_key(|m| m.minute);
        points
    }

    /// One-minute bars of `symbol` in time order.
    fn minute_bars(&self, symbol: &str) -> Vec<&Bar> {
        let token = self.token(symbol);
        let mut bars: Vec<_> = self
            .bars
            .iter()
            .filter(|b| b.instrument_token == token)
            .collect();
        bars.sort_by_key(|b| b.window_start);
        bars
    }

    /// `symbol`'s bars rolled up to `minutes`, aligned to the 09:15 IST open, as the
    /// rollups define them.
    fn rollup(&self, symbol: &str, minutes: i64) -> Vec<Bar> {
        let width = minutes * MINUTE;
        let mut out: Vec<Bar> = Vec::new();
        for b in self.minute_bars(symbol) {
            let start = ist(9, 15) + (b.window_start - ist(9, 15)).div_euclid(width) * width;
            match out.last_mut() {
                Some(r) if r.window_start == start => {
                    r.high = r.high.max(b.high);
                    r.low = r.low.min(b.low);
                    r.close = b.close;
                    r.volume += b.volume;
                    r.oi = b.oi;
                    r.tick_count += b.tick_count;
                }
                _ => out.push(Bar {
                    window_start: start,
                    window_end: start + width,
                    ..b.clone()
                }),
            }
        }
        out
    }
}

/// RSI with Wilder smoothing (TA-Lib's): seeded with the mean gain and loss of the first
/// `n` changes; `None` while warming up.
fn wilder_rsi(closes: &[f64], n: usize) -> Vec<Option<f64>> {
    let mut out = vec![None; closes.len()];
    let (mut gain, mut loss) = (0.0, 0.0);
    for k in 1..closes.len() {
        let d = closes[k] - closes[k - 1];
        let (g, l) = (d.max(0.0), (-d).max(0.0));
        if k <= n {
            gain += g / n as f64;
            loss += l / n as f64;
        } else {
            gain = (gain * (n as f64 - 1.0) + g) / n as f64;
            loss = (loss * (n as f64 - 1.0) + l) / n as f64;
        }
        if k >= n {
            out[k] = Some(if gain + loss == 0.0 {
                50.0
            } else {
                100.0 * gain / (gain + loss)
            });
        }
    }
    out
}

/// The expected rows of the block titled `title`, from the topics.
fn expected(p: &Published, title: &str) -> Vec<Vec<V>> {
    let number = title
        .trim_start_matches("-- ")
        .split('.')
        .next()
        .unwrap_or_default();
    match number {
        "1" => p
            .minute_chains()
            .map(|c| vec![V::Ts(c.ts), f(c.pcr_oi), f(c.max_pain)])
            .collect(),
        "2" => p
            .chain_at(ist(10, 0))
            .iter()
            .map(|(&k, (ce, pe))| {
                vec![
                    V::F(k as f64),
                    f(ce.and_then(|s| s.iv)),
                    f(pe.and_then(|s| s.iv)),
                    f(ce.and_then(|s| s.delta)),
                    f(pe.and_then(|s| s.delta)),
                ]
            })
            .collect(),
        "3" => {
            let start = p.chain_at(ist(9, 45));
            p.chain_at(ist(10, 30))
                .iter()
                .map(|(&k, (ce, pe))| {
                    let before = start.get(&k).copied().unwrap_or_default();
                    let added = |now: Option<&StrikeAnalytics>, then: Option<&StrikeAnalytics>| {
                        i(now.zip(then).map(|(n, t)| n.oi - t.oi))
                    };
                    vec![
                        V::F(k as f64),
                        added(*ce, before.0),
                        added(*pe, before.1),
                        ce.map_or(V::Null, |s| t(build_up(s.build_up))),
                        pe.map_or(V::Null, |s| t(build_up(s.build_up))),
                    ]
                })
                .collect()
        }
        "4" => {
            let puts: BTreeMap<i64, &MoneynessPoint> = p
                .moneyness("ATM", OptionSide::PE)
                .into_iter()
                .map(|m| (m.minute, m))
                .collect();
            p.moneyness("ATM", OptionSide::CE)
                .into_iter()
                .filter_map(|c| {
                    let put = puts.get(&c.minute)?;
                    Some(vec![V::Ts(c.minute), V::F(c.strike), V::F(c.ltp + put.ltp)])
                })
                .collect()
        }
        "5" => p
            .minute_chains()
            .map(|c| vec![V::Ts(c.ts), f(c.atm_iv), f(c.skew_25d)])
            .collect(),
        "6" => {
            let spot: BTreeMap<i64, f64> = p
                .minute_bars(SPOT)
                .into_iter()
                .map(|b| (b.window_start, b.close))
                .collect();
            p.minute_bars(FUTURE)
                .into_iter()
                .filter_map(|b| {
                    let s = *spot.get(&b.window_start)?;
                    Some(vec![
                        V::Ts(b.window_start),
                        V::F(b.close),
                        V::F(s),
                        V::F(b.close - s),
                    ])
                })
                .collect()
        }
        "7" => {
            let token = p.token(FUTURE);
            let published: BTreeMap<i64, f64> = p
                .indicators
                .iter()
                .filter(|x| {
                    x.instrument_token == token && x.timeframe_minutes == 5 && x.indicator == "rsi"
                })
                .map(|x| (x.window_start, x.outputs["value"]))
                .collect();
            let bars = p.rollup(FUTURE, 5);
            let closes: Vec<f64> = bars.iter().map(|b| b.close).collect();
            let ours = wilder_rsi(&closes, 14);
            assert!(
                !published.is_empty(),
                "the session produced no 5-minute RSI"
            );
            for (b, rsi) in bars.iter().zip(&ours) {
                // Our RSI over the 5-minute closes rebuilt from the minute bars agrees with
                // the published one wherever the processor published (a session's last,
                // unfinished 5-minute bar has none).
                if let Some(&value) = published.get(&b.window_start) {
                    assert_eq!(
                        V::F(value),
                        f(*rsi),
                        "RSI at {}: published {value}, Wilder {rsi:?}",
                        b.window_start
                    );
                }
            }
            bars.iter()
                .map(|b| {
                    vec![
                        V::Ts(b.window_start),
                        V::F(b.close),
                        f(published.get(&b.window_start).copied()),
                    ]
                })
                .collect()
        }
        "8" => {
            let mut moves: Vec<(i64, i64, &str, i64, i64)> = Vec::new();
            for (&k, (ce, pe)) in &p.chain_at(ist(10, 30)) {
                for (side, s) in [("CE", ce), ("PE", pe)] {
                    if let Some(change) = s.and_then(|s| s.oi_change_window) {
                        let oi = s.map_or(0, |s| s.oi);
                        moves.push((-change.abs(), k, side, oi, change));
                    }
                }
            }
            moves.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
            moves
                .iter()
                .take(5)
                .map(|&(_, k, side, oi, change)| {
                    vec![V::F(k as f64), t(side), V::I(oi), V::I(change)]
                })
                .collect()
        }
        "9" => p
            .moneyness("OTM1", OptionSide::CE)
            .into_iter()
            .map(|m| vec![V::Ts(m.minute), V::F(m.strike), V::F(m.ltp), f(m.iv)])
            .collect(),
        "10" => p
            .rollup(FUTURE, 15)
            .iter()
            .map(|b| {
                vec![
                    V::Ts(b.window_start),
                    V::Ts(b.window_end),
                    V::F(b.open),
                    V::F(b.high),
                    V::F(b.low),
                    V::F(b.close),
                    V::I(b.volume),
                    V::I(b.oi),
                    V::I(i64::from(b.tick_count)),
                ]
            })
            .collect(),
        "11" => p
            .chain_summary()
            .into_iter()
            .map(|(minute, n, c)| {
                vec![
                    V::Ts(minute),
                    V::Ts(c.ts),
                    V::I(n),
                    f(c.spot),
                    V::F(c.atm_strike),
                    f(c.pcr_oi),
                    f(c.pcr_volume),
                    f(c.max_pain),
                    f(c.atm_iv),
                ]
            })
            .collect(),
        "12" => {
            let minutes = p.chain_summary();
            let mut rows = Vec::new();
            let mut previous: Option<&ChainAnalytics> = None;
            for (minute, _, c) in minutes {
                // lag() is the previous row of the result, whatever minute it was.
                let change =
                    |now: Option<f64>, then: Option<f64>| f(now.zip(then).map(|(n, t)| n - t));
                rows.push(vec![
                    V::Ts(minute),
                    i(previous.map(|b| c.total_ce_oi - b.total_ce_oi)),
                    i(previous.map(|b| c.total_pe_oi - b.total_pe_oi)),
                    change(c.pcr_oi, previous.and_then(|b| b.pcr_oi)),
                ]);
                previous = Some(c);
            }
            rows
        }
        _ => panic!("docs/sql.md block {title:?} has no check in tests/sql_docs.rs"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_docs_sql_query_matches_the_topics() {
    let started = Instant::now();
    let markdown = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/sql.md"))
        .expect("docs/sql.md");
    let blocks = sql_blocks(&markdown);
    assert!(
        blocks.len() >= 8,
        "docs/sql.md has {} sql blocks",
        blocks.len()
    );

    let mut sandbox = Sandbox::new("sqldocs").await;
    let config = &mut sandbox.config;
    // ~100 minutes of event time from the open (one tick every 500 ms across the market).
    config.simulate.market = SimulatorConfig::single_chain();
    config.simulate.market.tick_interval_ms = 500;
    config.simulate.rate = 20_000.0;
    config.simulate.max_ticks = TICKS;
    config.processor.group_id = format!("{}-processors", sandbox.name);
    let config = sandbox.config.clone();
    let topics = config.topics();
    let brokers = config.kafka.brokers.clone();
    let shutdown = CancellationToken::new();
    let processor = tokio::spawn(strikeflow_processors::run(
        config.processor(),
        shutdown.clone(),
    ));
    let sink = tokio::spawn(strikeflow_sink::run(config.sink(), shutdown.clone()));
    let report = strikeflow_ingest::run_simulation(config.simulate(), shutdown.clone())
        .await
        .expect("simulation");
    assert_eq!(report.ticks, TICKS);

    wait_processed(&config, &processor).await;

    let instruments = last_per_key(
        records::<Instrument>(&brokers, &topics.instruments()),
        |i| i.instrument_token,
    );
    let expiry = days_from_date(NaiveDate::from_ymd_opt(2026, 12, 8).unwrap());
    let published = Published {
        expiry,
        bars: last_per_key(records::<Bar>(&brokers, &topics.bars()), |b| {
            (b.instrument_token, b.window_start)
        }),
        strikes: last_per_key(
            records(&brokers, &topics.strikes()),
            |s: &StrikeAnalytics| (s.instrument_token, s.ts),
        ),
        chains: last_per_key(records(&brokers, &topics.chains()), |c: &ChainAnalytics| {
            (c.underlying.clone(), c.expiry, c.ts)
        }),
        moneyness: last_per_key(
            records(&brokers, &topics.moneyness()),
            |m: &MoneynessPoint| {
                (
                    m.underlying.clone(),
                    m.expiry,
                    m.bucket.clone(),
                    format!("{:?}", m.side),
                    m.minute,
                )
            },
        ),
        indicators: last_per_key(
            records(&brokers, &topics.indicators()),
            |x: &IndicatorPoint| {
                (
                    x.instrument_token,
                    x.timeframe_minutes,
                    x.indicator.clone(),
                    x.params.clone(),
                    x.window_start,
                )
            },
        ),
        instruments,
    };
    assert!(
        published
            .instruments
            .iter()
            .any(|i| i.name == UNDERLYING && i.expiry == Some(expiry)),
        "the simulator no longer lists the NIFTY weekly of 2026-12-08 the docs query"
    );
    let last_bar = published.bars.iter().map(|b| b.window_start).max();
    eprintln!(
        "published {} bars (to {:?} min after the open), {} strikes, {} chains, {} moneyness, \
         {} indicators in {:.1?}",
        published.bars.len(),
        last_bar.map(|t| (t - ist(9, 15)) / MINUTE),
        published.strikes.len(),
        published.chains.len(),
        published.moneyness.len(),
        published.indicators.len(),
        started.elapsed()
    );

    // The sink has caught up once every table holds as many rows as its topic has keys.
    let db = sandbox.db().await;
    let tables = [
        ("bars_1m", published.bars.len()),
        ("strike_analytics", published.strikes.len()),
        ("chain_analytics", published.chains.len()),
        ("moneyness_points", published.moneyness.len()),
        ("indicator_values", published.indicators.len()),
        ("instruments", published.instruments.len()),
    ];
    wait_until_stored(&db, &tables, &sink).await;
    shutdown.cancel();
    processor.await.unwrap().expect("processor stops cleanly");
    sink.await.unwrap().expect("sink stops cleanly");

    for (n, sql) in blocks.iter().enumerate() {
        let title = sql.lines().next().unwrap_or_default().trim();
        assert!(
            title.starts_with(&format!("-- {}. ", n + 1)),
            "docs/sql.md sql block {} must start with `-- {}. <title>`, not {title:?}",
            n + 1,
            n + 1
        );
        let query_started = Instant::now();
        let rows = db
            .query(sql.as_str(), &[])
            .await
            .unwrap_or_else(|e| panic!("{title}: {e:?}\n{sql}"));
        let got: Vec<Vec<V>> = rows.iter().map(row_values).collect();
        let want = expected(&published, title);
        assert!(
            !want.is_empty(),
            "{title}: the session gives no rows to check"
        );
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{title}: row {k} differs (SQL, then topics)");
        }
        assert_eq!(
            got.len(),
            want.len(),
            "{title}: {} rows from SQL, {} from the topics",
            got.len(),
            want.len()
        );
        eprintln!(
            "{title}: {} rows equal the topics ({:.1?})",
            got.len(),
            query_started.elapsed()
        );
    }
    eprintln!(
        "{} docs/sql.md queries checked in {:.1?}",
        blocks.len(),
        started.elapsed()
    );
}
