//! Configuration of the processor stage: the `[processor]` tuning, checked before anything
//! connects, and the runtime configuration the binary builds from it and `[kafka]`.

use serde::Deserialize;
use strikeflow_analytics::chain::{ChainSettings, ReferenceChoice};
use strikeflow_analytics::indicator_bank::{IndicatorBank, IndicatorChoice};
use strikeflow_analytics::pricing::{Convention, DayCount, Pricer};
use strikeflow_analytics::CoreSettings;
use strikeflow_kafka::{KafkaConnection, RegistryConnection};

use crate::ProcessorError;

/// What the processor stage runs with: where Kafka is (shared by every stage, from
/// `[kafka]`) and its own tuning (`[processor]`).
#[derive(Debug, Clone, Default)]
pub struct ProcessorConfig {
    /// Brokers and topic names.
    pub kafka: KafkaConnection,
    /// The schema registry (`[registry]`), if any: the outputs' encoding and the ids of
    /// Confluent-framed ticks.
    pub registry: Option<RegistryConnection>,
    /// The stage's tuning.
    pub settings: ProcessorSettings,
}

/// `[processor]`: tuning of the processor stage. Connection settings are not here; they
/// live in `[kafka]` so every stage reads them from one place.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorSettings {
    /// Consumer group shared by all processor instances; partitions are split among them.
    pub group_id: String,
    /// This instance's name in the group, stable across its restarts (default: the host
    /// name). It makes the transactional id `<group_id>-<instance_id>`, so a restarted
    /// instance aborts what its crashed predecessor left open instead of waiting for the
    /// transaction timeout. Two live instances must not share it.
    pub instance_id: String,
    /// How far behind its partition's newest tick a tick may arrive and still count.
    pub allowed_lateness_ms: u64,
    /// Most ticks handled per batch (one Kafka transaction for outputs and offsets).
    pub batch_max: usize,
    /// Longest wait to fill a batch once its first tick arrived.
    pub batch_wait_ms: u64,
    /// How often each partition's state is snapshotted into the transaction. A restart
    /// replays (without publishing) the ticks since the last snapshot, so this bounds the
    /// restart work; a snapshot of full NIFTY and BANKNIFTY chains is a few hundred KiB.
    pub snapshot_interval_ms: u64,
    /// Kafka `transaction.timeout.ms`: how long a crashed instance's open transaction can
    /// hold back `read_committed` readers if the instance does not come back.
    pub transaction_timeout_ms: u64,
    /// Kafka `session.timeout.ms`: how long the group waits for a crashed instance before
    /// giving its partitions to the others (librdkafka's 45 s default is long for live
    /// dashboards; a clean shutdown leaves the group at once either way).
    pub session_timeout_ms: u64,
    /// Option pricing and chain analytics.
    pub analytics: AnalyticsSettings,
    /// Indicators computed on every instrument's bars (default: the brief's dashboard set).
    pub indicators: Vec<IndicatorChoice>,
    /// Bar lengths, in minutes, the indicators run on.
    pub timeframes: Vec<u32>,
}

impl Default for ProcessorSettings {
    fn default() -> Self {
        Self {
            group_id: "strikeflow-processors".into(),
            instance_id: host_name(),
            allowed_lateness_ms: 2_000,
            batch_max: 5_000,
            batch_wait_ms: 50,
            snapshot_interval_ms: 10_000,
            transaction_timeout_ms: 10_000,
            session_timeout_ms: 10_000,
            analytics: AnalyticsSettings::default(),
            indicators: IndicatorChoice::defaults(),
            timeframes: vec![1, 3, 5, 15],
        }
    }
}

/// Pricing convention of implied volatilities and Greeks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConventionName {
    /// Black-76 on the forward (brokers: Sensibull, Kite), rate `rate`.
    Black76,
    /// Black–Scholes on spot with the rate `rate` (NSE publishes IV with 10%).
    Nse,
}

/// Year fraction used for time to expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayCountName {
    /// Minutes to 15:30 IST on expiry day over minutes in 365 days.
    Act365,
    /// Trading sessions over 252.
    Trading252,
}

/// What ATM is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceName {
    /// The strike nearest the forward (the future, else put–call parity).
    Forward,
    /// The strike nearest the spot index.
    Spot,
}

/// `[processor.analytics]`: conventions that change the numbers, and emission shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsSettings {
    /// `black76` (default) or `nse`.
    pub convention: ConventionName,
    /// Rate for the convention: default 0 under Black-76, 0.10 under NSE.
    pub rate: Option<f64>,
    /// `act365` (default) or `trading252`.
    pub day_count: DayCountName,
    /// ATM is the strike nearest the forward (`forward`, default) or the spot (`spot`).
    pub reference: ReferenceName,
    /// Moneyness buckets per side (ITM1..ITMn, OTM1..OTMn).
    pub moneyness_levels: u32,
    /// ΔOI window in minutes.
    pub oi_window_minutes: u32,
    /// Strike and chain analytics cadence in event-time milliseconds (and at minute close).
    pub emit_every_ms: u64,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self {
            convention: ConventionName::Black76,
            rate: None,
            day_count: DayCountName::Act365,
            reference: ReferenceName::Forward,
            moneyness_levels: 5,
            oi_window_minutes: 15,
            emit_every_ms: 1_000,
        }
    }
}

impl AnalyticsSettings {
    /// The engine settings these names stand for.
    pub fn chain_settings(&self) -> ChainSettings {
        let convention = match self.convention {
            ConventionName::Black76 => Convention::Black76 {
                rate: self.rate.unwrap_or(0.0),
            },
            ConventionName::Nse => Convention::BlackScholesSpot {
                rate: self.rate.unwrap_or(Convention::NSE_RATE),
            },
        };
        ChainSettings {
            pricer: Pricer::new(convention),
            day_count: match self.day_count {
                DayCountName::Act365 => DayCount::Act365,
                DayCountName::Trading252 => DayCount::Trading252,
            },
            reference: match self.reference {
                ReferenceName::Forward => ReferenceChoice::Forward,
                ReferenceName::Spot => ReferenceChoice::Spot,
            },
            moneyness_levels: self.moneyness_levels,
            oi_window_minutes: self.oi_window_minutes,
            emit_every_micros: micros(self.emit_every_ms),
        }
    }
}

/// Milliseconds as event-time microseconds, saturating (a validated setting never is).
fn micros(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX).saturating_mul(1_000)
}

/// A value that fails `test` is refused with the key named.
fn check(ok: bool, key: &str, reason: &str) -> Result<(), ProcessorError> {
    if ok {
        Ok(())
    } else {
        Err(ProcessorError::Config {
            key: format!("processor.{key}"),
            reason: reason.to_owned(),
        })
    }
}

impl ProcessorSettings {
    /// Checks every value, so a bad setting stops `strikeflow` at start, naming the key,
    /// before it connects to anything.
    pub fn validate(&self) -> Result<(), ProcessorError> {
        check(
            !self.group_id.trim().is_empty(),
            "group_id",
            "must not be empty",
        )?;
        check(
            !self.instance_id.trim().is_empty(),
            "instance_id",
            "must not be empty",
        )?;
        check(self.batch_max > 0, "batch_max", "must be positive")?;
        check(
            self.snapshot_interval_ms > 0,
            "snapshot_interval_ms",
            "must be positive",
        )?;
        check(
            self.transaction_timeout_ms >= 1_000,
            "transaction_timeout_ms",
            "must be at least 1000 (Kafka's smallest useful transaction timeout)",
        )?;
        check(
            self.session_timeout_ms >= 1_000,
            "session_timeout_ms",
            "must be at least 1000",
        )?;
        let analytics = &self.analytics;
        check(
            analytics.emit_every_ms > 0,
            "analytics.emit_every_ms",
            "must be positive",
        )?;
        check(
            analytics.rate.is_none_or(|r| r.is_finite() && r > -1.0),
            "analytics.rate",
            "must be a finite rate above -1",
        )?;
        check(
            analytics.moneyness_levels > 0,
            "analytics.moneyness_levels",
            "must be positive",
        )?;
        check(
            analytics.oi_window_minutes > 0,
            "analytics.oi_window_minutes",
            "must be positive",
        )?;
        check(
            !self.timeframes.is_empty(),
            "timeframes",
            "must not be empty",
        )?;
        check(
            self.timeframes.iter().all(|&m| m > 0),
            "timeframes",
            "every timeframe must be a positive number of minutes",
        )?;
        self.indicator_bank()?;
        Ok(())
    }

    /// The indicators and timeframes, validated against the registry (names, parameter
    /// ranges, rollup lengths).
    pub fn indicator_bank(&self) -> Result<IndicatorBank, ProcessorError> {
        IndicatorBank::new(&self.indicators, &self.timeframes).map_err(|source| {
            ProcessorError::Indicators {
                key: "processor.indicators".into(),
                source,
            }
        })
    }

    /// The settings of every partition's core.
    pub fn core_settings(&self) -> CoreSettings {
        CoreSettings {
            allowed_lateness_micros: micros(self.allowed_lateness_ms),
            chain: self.analytics.chain_settings(),
        }
    }
}

/// The host name, the default instance id (stable across restarts on one host or pod).
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "processor".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(result: Result<(), ProcessorError>) -> String {
        match result {
            Err(ProcessorError::Config { key, .. } | ProcessorError::Indicators { key, .. }) => key,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_validate() {
        ProcessorSettings::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let s = ProcessorSettings {
            batch_max: 0,
            ..Default::default()
        };
        assert_eq!(key_of(s.validate()), "processor.batch_max");
        let mut s = ProcessorSettings::default();
        s.analytics.emit_every_ms = 0;
        assert_eq!(key_of(s.validate()), "processor.analytics.emit_every_ms");
        let s = ProcessorSettings {
            instance_id: " ".into(),
            ..Default::default()
        };
        assert_eq!(key_of(s.validate()), "processor.instance_id");
        let s = ProcessorSettings {
            timeframes: vec![1, 0],
            ..Default::default()
        };
        assert_eq!(key_of(s.validate()), "processor.timeframes");
        let mut s = ProcessorSettings::default();
        s.indicators[0].params.insert("period".into(), 0.0);
        assert_eq!(key_of(s.validate()), "processor.indicators");
    }

    fn parse(json: &str) -> Result<ProcessorSettings, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn unknown_keys_names_and_conventions_are_refused_when_read() {
        let e = parse(r#"{"batch_maxx": 5}"#).unwrap_err().to_string();
        assert!(e.contains("batch_maxx"), "{e}");
        let e = parse(r#"{"analytics": {"convention": "bs"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bs") && e.contains("black76"), "{e}");
        let e = parse(r#"{"analytics": {"reference": "future"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("future"), "{e}");
        let e = parse(r#"{"indicators": [{"name": "rsii"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("rsii") && e.contains("macd"), "{e}");
        let ok = parse(r#"{"indicators": [{"name": "rsi", "params": {"period": 7}}]}"#).unwrap();
        ok.validate().unwrap();
    }
}
