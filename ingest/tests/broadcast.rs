//! Spot index ticks reach every ticks partition (real Kafka from `./dev up`): each is written
//! once as usual (the primary, no header) and once more into every partition as a reference
//! copy carrying `REFERENCE_COPY_HEADER`, in publish order; other ticks are not copied, and
//! neither are rejected ones.

use std::collections::HashMap;
use std::time::Duration;

use strikeflow_ingest::{IngestError, MarketSimulator, SimulatorConfig, TickPublisher};
use strikeflow_kafka::KafkaError;
use strikeflow_schemas::{decode, encode, InstrumentType, Tick, Topics, REFERENCE_COPY_HEADER};

mod common;
use common::{brokers, consumer, read_records, read_rest, topics_and_dir, Record};

const TICKS: usize = 400;
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_ticks_are_copied_into_every_partition_in_publish_order() {
    let (topics, _dir) = topics_and_dir("broadcast").await;
    // NIFTY and BANKNIFTY: two spot indices, their futures and options.
    let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
    let spots: HashMap<i64, String> = sim
        .instruments()
        .iter()
        .filter(|i| i.instrument_type == InstrumentType::EQ)
        .map(|i| (i.instrument_token, i.chain_key().to_string()))
        .collect();
    assert_eq!(spots.len(), 2, "the default market has two indices");

    let mut publisher = TickPublisher::connect(&brokers(), &topics, None).unwrap();
    let instruments = sim.instruments().to_vec();
    publisher.publish_instruments(&instruments).await.unwrap();
    let ticks: Vec<Tick> = (0..TICKS).map(|_| sim.next_tick()).collect();
    for (i, tick) in ticks.iter().enumerate() {
        publisher
            .publish(tick, || format!("test:{i}"), None)
            .await
            .unwrap();
    }
    // A rejected spot tick (negative price) is dead-lettered, not copied.
    let spot_token = *spots.keys().next().unwrap();
    let rejected = Tick {
        instrument_token: spot_token,
        ltp: -1.0,
        ..ticks[0].clone()
    };
    publisher
        .publish(&rejected, || "test:rejected".into(), None)
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    assert_eq!(
        (publisher.published(), publisher.rejected()),
        (TICKS as u64, 1),
        "published counts primaries only"
    );

    let spot_ticks: Vec<&Tick> = ticks
        .iter()
        .filter(|t| spots.contains_key(&t.instrument_token))
        .collect();
    assert!(
        spot_ticks.len() >= 4,
        "the sample needs some spot ticks, got {}",
        spot_ticks.len()
    );
    let partitions = Topics::TICKS_PARTITIONS as usize;
    let expected = TICKS + spot_ticks.len() * partitions;
    let reader = consumer(&topics.ticks());
    let mut records = read_records(&reader, expected, WAIT).await;
    let extra = read_rest(&reader, Duration::from_secs(3)).await;
    assert!(
        extra.is_empty(),
        "{} messages more than expected, e.g. {:?}",
        extra.len(),
        extra.first()
    );
    records.sort_by_key(|r| (r.partition, r.offset));

    let (copies, primaries): (Vec<Record>, Vec<Record>) =
        records.into_iter().partition(Record::is_reference_copy);

    // Every tick, spot or not, is on the topic exactly once without the header.
    for r in &primaries {
        assert!(r.headers.is_empty(), "a primary has no headers: {r:?}");
    }
    let mut published: Vec<Tick> = primaries
        .iter()
        .map(|r| decode(&r.payload).unwrap())
        .collect();
    let mut sent = ticks.clone();
    let order = |t: &Tick| (t.instrument_token, t.exchange_ts);
    published.sort_by_key(order);
    sent.sort_by_key(order);
    assert_eq!(published, sent, "each tick once as a primary");

    // Each spot tick is copied exactly once into each partition, with the primary's key
    // and payload, the header "1", and in publish order within each partition.
    let expected_copies: Vec<Vec<u8>> = spot_ticks.iter().map(|t| encode(*t).unwrap()).collect();
    for partition in 0..Topics::TICKS_PARTITIONS {
        let here: Vec<&Record> = copies.iter().filter(|r| r.partition == partition).collect();
        let payloads: Vec<Vec<u8>> = here.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(
            payloads, expected_copies,
            "partition {partition}: one copy of each spot tick, in publish order"
        );
        for r in &here {
            assert_eq!(
                r.headers,
                vec![(REFERENCE_COPY_HEADER.to_owned(), "1".to_owned())],
                "partition {partition}: {r:?}"
            );
            let tick: Tick = decode(&r.payload).unwrap();
            assert_eq!(
                std::str::from_utf8(&r.key).unwrap(),
                spots[&tick.instrument_token],
                "a copy keeps the primary's key"
            );
        }
    }
    assert_eq!(copies.len(), spot_ticks.len() * partitions);

    // In the spot's own partition the primary comes before its copy.
    for r in primaries.iter().filter(|r| {
        let t: Tick = decode(&r.payload).unwrap();
        spots.contains_key(&t.instrument_token)
    }) {
        let copy = copies
            .iter()
            .find(|c| c.partition == r.partition && c.payload == r.payload)
            .expect("a copy in the primary's partition");
        assert!(
            r.offset < copy.offset,
            "primary at {} after its copy at {}",
            r.offset,
            copy.offset
        );
    }

    // Option and future ticks are never copied.
    for c in &copies {
        let tick: Tick = decode(&c.payload).unwrap();
        assert!(spots.contains_key(&tick.instrument_token), "{tick:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ticks_topic_is_a_typed_error() {
    let topics = Topics::new(format!("broadcast_missing_{}.", std::process::id()));
    let result =
        tokio::task::spawn_blocking(move || TickPublisher::connect(&brokers(), &topics, None))
            .await
            .unwrap();
    match result {
        Err(IngestError::Kafka(KafkaError::MissingTopic { topic, .. })) => {
            assert!(topic.ends_with("ticks.v1"), "{topic}")
        }
        Err(other) => panic!("expected a missing topic, got {other}"),
        Ok(_) => panic!("connected to a topic that does not exist"),
    }
}
