//! Which schema-registry subject each record type of each topic is registered under.
//!
//! Topic-name strategy: a topic's record type is registered as `<topic>-value`, the subject
//! every Confluent-aware tool looks under by default. The ticks topic also carries
//! event-time markers ([`Watermark`]); they are registered as `<topic>-strikeflow.Watermark`
//! (Confluent's topic-record-name strategy), so the ticks subject keeps one schema and its
//! compatibility checks stay meaningful. `strikeflow migrate` registers this list; producers
//! look their id up under the same subject.

use crate::{
    AvroRecord, Bar, ChainAnalytics, IndicatorPoint, Instrument, MoneynessPoint, StrikeAnalytics,
    Tick, Topics, Watermark,
};

/// One subject to register: which topic, which record, which schema text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectSpec {
    /// The registry subject, e.g. `ticks.v1-value`.
    pub subject: String,
    /// The topic (prefix included) whose records use it.
    pub topic: String,
    /// Full Avro name of the record.
    pub record: &'static str,
    /// The `.avsc` text registered.
    pub schema_json: &'static str,
}

/// The `<topic>-value` subject of a topic's record type (topic-name strategy).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// The subject of record `T` on `topic`: `<topic>-value` for the topic's own record type,
/// `<topic>-<full name>` for the other record a topic carries (the watermark on ticks).
pub fn subject_of<T: AvroRecord>(topics: &Topics, topic: &str) -> String {
    if T::NAME == Watermark::NAME && topic == topics.ticks() {
        format!("{topic}-{}", Watermark::NAME)
    } else {
        value_subject(topic)
    }
}

fn spec<T: AvroRecord>(topics: &Topics, topic: String) -> SubjectSpec {
    SubjectSpec {
        subject: subject_of::<T>(topics, &topic),
        topic,
        record: T::NAME,
        schema_json: T::SCHEMA_JSON,
    }
}

impl Topics {
    /// Every subject of this deployment, one per (topic, record type) carried in Avro.
    /// Dead-letter topics hold other topics' records unchanged and the processor-state topic
    /// is not Avro, so neither has a subject.
    pub fn subjects(&self) -> Vec<SubjectSpec> {
        vec![
            spec::<Instrument>(self, self.instruments()),
            spec::<Tick>(self, self.ticks()),
            spec::<Watermark>(self, self.ticks()),
            spec::<Bar>(self, self.bars()),
            spec::<StrikeAnalytics>(self, self.strikes()),
            spec::<ChainAnalytics>(self, self.chains()),
            spec::<MoneynessPoint>(self, self.moneyness()),
            spec::<IndicatorPoint>(self, self.indicators()),
            spec::<Tick>(self, self.late()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_topic_name_strategy() {
        let topics = Topics::new("p.");
        let got: Vec<(String, &str)> = topics
            .subjects()
            .into_iter()
            .map(|s| (s.subject, s.record))
            .collect();
        assert_eq!(
            got,
            vec![
                ("p.instruments.v1-value".into(), "strikeflow.Instrument"),
                ("p.ticks.v1-value".into(), "strikeflow.Tick"),
                (
                    "p.ticks.v1-strikeflow.Watermark".into(),
                    "strikeflow.Watermark"
                ),
                ("p.bars.v1-value".into(), "strikeflow.Bar"),
                ("p.strikes.v1-value".into(), "strikeflow.StrikeAnalytics"),
                ("p.chains.v1-value".into(), "strikeflow.ChainAnalytics"),
                ("p.moneyness.v1-value".into(), "strikeflow.MoneynessPoint"),
                ("p.indicators.v1-value".into(), "strikeflow.IndicatorPoint"),
                ("p.ticks.late.v1-value".into(), "strikeflow.Tick"),
            ]
        );
        // Every .avsc is registered somewhere.
        let files = std::fs::read_dir(crate::AVRO_SCHEMA_DIR)
            .expect("avro dir")
            .filter_map(|e| {
                let path = e.expect("entry").path();
                (path.extension()? == "avsc").then(|| std::fs::read_to_string(path).expect("read"))
            })
            .collect::<Vec<_>>();
        for text in &files {
            assert!(
                topics.subjects().iter().any(|s| s.schema_json == text),
                "an .avsc has no subject"
            );
        }
    }
}
