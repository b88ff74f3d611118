//! What the end-to-end bench reads from outside the stages while they run: how far the
//! processor group and the sink are behind the ticks topic's end, and the newest tick a
//! query on the scratch database can see.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use strikeflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};
use strikeflow_schemas::Topics;
use tokio_postgres::Client;

/// Limit of one broker request.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(5);

/// Records of the ticks topic (ticks and spot reference copies, summed over partitions)
/// not yet consumed by each stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Lag {
    /// Behind the processor group's committed offsets (committed in the transaction that
    /// published their outputs).
    pub(super) processor: i64,
    /// Behind the sink's stored offsets (`sink_offsets`, committed with the rows).
    pub(super) sink: i64,
}

/// Reads lags and the newest stored tick.
pub(super) struct Watcher {
    /// Only reads the processor group's committed offsets and the watermarks; never joins.
    consumer: Arc<BaseConsumer>,
    ticks: String,
    db: Client,
    sink_consumer: String,
}

impl Watcher {
    pub(super) fn new(
        config: &crate::Config,
        topics: &Topics,
        group: &str,
        db: Client,
        sink_consumer: &str,
    ) -> Result<Self> {
        let consumer: BaseConsumer = strikeflow_kafka::client_config(&config.kafka.brokers())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("creating the lag watcher")?;
        Ok(Self {
            consumer: Arc::new(consumer),
            ticks: topics.ticks(),
            db,
            sink_consumer: sink_consumer.to_owned(),
        })
    }

    /// Both stages' lag now.
    pub(super) async fn lag(&self) -> Result<Lag> {
        let consumer = self.consumer.clone();
        let topic = self.ticks.clone();
        let (ends, committed) = tokio::task::spawn_blocking(move || {
            let mut ends = Vec::new();
            let mut partitions = TopicPartitionList::new();
            for p in 0..Topics::TICKS_PARTITIONS {
                ends.push(consumer.fetch_watermarks(&topic, p, KAFKA_TIMEOUT)?.1);
                partitions.add_partition(&topic, p);
            }
            let committed = consumer.committed_offsets(partitions, KAFKA_TIMEOUT)?;
            let committed: Vec<i64> = (0..Topics::TICKS_PARTITIONS)
                .map(
                    |p| match committed.find_partition(&topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(n)) => n,
                        _ => 0,
                    },
                )
                .collect();
            Ok::<_, anyhow::Error>((ends, committed))
        })
        .await
        .context("the lag watcher")??;
        let rows = self
            .db
            .query(
                "SELECT partition, next_offset FROM sink_offsets WHERE consumer = $1 AND topic = $2",
                &[&self.sink_consumer, &self.ticks],
            )
            .await
            .context("reading sink_offsets")?;
        let stored = |p: i32| {
            rows.iter()
                .find(|r| r.get::<_, i32>(0) == p)
                .map_or(0, |r| r.get::<_, i64>(1))
        };
        let mut lag = Lag::default();
        for (p, end) in (0..Topics::TICKS_PARTITIONS).zip(ends) {
            lag.processor += (end - committed[p as usize]).max(0);
            lag.sink += (end - stored(p)).max(0);
        }
        Ok(lag)
    }

    /// `exchange_ts` of the newest tick stored and visible to a new query, in micros.
    pub(super) async fn newest_tick(&self) -> Result<Option<i64>> {
        let row = self
            .db
            .query_one(
                "SELECT (extract(epoch FROM max(ts)) * 1000000)::bigint FROM ticks",
                &[],
            )
            .await
            .context("reading the newest stored tick")?;
        Ok(row.get(0))
    }
}

/// The age of the newest visible row when a query saw it: how long a tick sent at
/// `newest` (or, while none of the step's ticks is visible yet, the step's first tick,
/// sent at `step_start`) has been on its way at `now`. Every time is in micros since the
/// bench's origin.
pub(super) fn visible_age(now: i64, newest: Option<i64>, step_start: i64) -> i64 {
    (now - newest.unwrap_or(i64::MIN).max(step_start)).max(0)
}

/// The processor's own account of its transactions, from its `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Commits {
    /// Ticks records taken into transactions (`processor_ticks_total`).
    pub(super) ticks: f64,
    /// Transactions committed (`processor_commit_seconds_count`).
    pub(super) count: f64,
    /// Seconds spent committing them: offsets into the transaction, then the commit
    /// (`processor_commit_seconds_sum`).
    pub(super) seconds: f64,
}

impl Commits {
    /// Reads them from the processor's metrics listener on `port`.
    pub(super) async fn scrape(port: u16) -> Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .context("connecting to the processor's metrics")?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        Ok(Self {
            ticks: metric(&text, "processor_ticks_total"),
            count: metric(&text, "processor_commit_seconds_count"),
            seconds: metric(&text, "processor_commit_seconds_sum"),
        })
    }

    /// What happened between `earlier` and this reading.
    pub(super) fn since(&self, earlier: &Commits) -> Commits {
        Commits {
            ticks: self.ticks - earlier.ticks,
            count: self.count - earlier.count,
            seconds: self.seconds - earlier.seconds,
        }
    }
}

/// The sum of every series of `name` in a Prometheus text exposition (0 when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                return None;
            }
            rest.rsplit(' ').next()?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::{metric, visible_age};

    #[test]
    fn sums_a_metric_over_its_series() {
        let text = "# TYPE processor_commit_seconds summary\n\
            processor_commit_seconds{quantile=\"0.5\"} 0.02\n\
            processor_commit_seconds_sum 12.5\n\
            processor_commit_seconds_count 400\n\
            processor_ticks_total{partition=\"0\"} 10\n\
            processor_ticks_total{partition=\"1\"} 5\n\
            processor_ticks_total_other 99\n";
        assert_eq!(metric(text, "processor_commit_seconds_sum"), 12.5);
        assert_eq!(metric(text, "processor_commit_seconds_count"), 400.0);
        assert_eq!(metric(text, "processor_ticks_total"), 15.0);
        assert_eq!(metric(text, "absent"), 0.0);
    }

    #[test]
    fn age_of_the_newest_row_counts_from_the_step_start_at_most() {
        assert_eq!(visible_age(10_000, Some(9_000), 5_000), 1_000);
        // Nothing of this step visible yet: the step's first tick is at least this late.
        assert_eq!(visible_age(10_000, Some(1_000), 5_000), 5_000);
        assert_eq!(visible_age(10_000, None, 5_000), 5_000);
        // A row newer than the query's clock reading (the clock is read first).
        assert_eq!(visible_age(10_000, Some(10_500), 5_000), 0);
    }
}
