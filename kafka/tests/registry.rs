//! The schema-registry client against the real Apicurio Registry of `./dev up`
//! (`DEV_SCHEMA_REGISTRY_URL` / `SCHEMA_REGISTRY_URL`, default the local one): producers'
//! id lookups, readers' id resolution, and the schema-evolution guard through the
//! registry's own compatibility check.
//!
//! Every test works under subjects of its own (a random topic prefix), so tests run in
//! parallel and against a registry other runs already filled.

use std::path::Path;
use std::time::Duration;

use strikeflow_kafka::{Registry, RegistryConnection, RegistryError};
use strikeflow_schemas::{
    decode_any, encode_framed, AvroRecord, CodecError, Encoding, Framing, IdStatus, Tick, Topics,
    Watermark, AVRO_SCHEMA_DIR, RELEASED_SCHEMA_DIR,
};

fn registry_url() -> String {
    ["DEV_SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "http://127.0.0.1:18081/apis/ccompat/v7".into())
}

fn registry(url: &str, encoding: Encoding) -> Registry {
    Registry::new(Some(&RegistryConnection {
        url: url.to_owned(),
        timeout: Duration::from_secs(10),
        encoding,
    }))
    .expect("a valid registry URL")
}

fn unique_topics(label: &str) -> Topics {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    Topics::new(format!("{label}-{}-{nanos:x}.", std::process::id()))
}

async fn register_all(registry: &Registry, topics: &Topics) {
    for spec in topics.subjects() {
        registry
            .register(&spec.subject, spec.schema_json)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "registering {} (is the registry up? ./dev up): {e}",
                    spec.subject
                )
            });
    }
}

fn tick() -> Tick {
    Tick {
        instrument_token: 256_265,
        exchange_ts: 1_766_979_000_000_000,
        ltp: 24_500.5,
        last_qty: 75,
        volume: 1_000,
        oi: 10,
        bid: 24_500.0,
        bid_qty: 1,
        ask: 24_501.0,
        ask_qty: 2,
    }
}

#[tokio::test]
async fn producers_look_their_ids_up_and_refuse_to_start_unregistered() {
    let url = registry_url();
    let topics = unique_topics("reg-producer");
    let producer = registry(&url, Encoding::Confluent);
    match producer.framing::<Tick>(&topics, &topics.ticks()).await {
        Err(e @ RegistryError::NotRegistered { .. }) => {
            let message = e.to_string();
            let subject = format!("{}-value", topics.ticks());
            for part in [subject.as_str(), "strikeflow.Tick", "strikeflow migrate"] {
                assert!(message.contains(part), "{message} lacks {part}");
            }
        }
        other => panic!("an unregistered schema must stop the producer: {other:?}"),
    }

    register_all(&producer, &topics).await;
    let registered = producer
        .lookup(&format!("{}-value", topics.ticks()), Tick::SCHEMA_JSON)
        .await
        .expect("registered");
    let framing = producer
        .framing::<Tick>(&topics, &topics.ticks())
        .await
        .expect("registered now");
    assert_eq!(framing, Framing::Confluent { id: registered });
    // The watermark lives under its own subject on the same topic.
    let marker = producer
        .framing::<Watermark>(&topics, &topics.ticks())
        .await
        .expect("registered");
    assert_ne!(marker, framing);
    // Single-object producers never ask the registry.
    let plain = registry("http://127.0.0.1:9/unused", Encoding::SingleObject);
    assert_eq!(
        plain
            .framing::<Tick>(&topics, &topics.ticks())
            .await
            .expect("no lookup"),
        Framing::SingleObject
    );
}

#[tokio::test]
async fn readers_resolve_a_new_id_once_and_check_it_against_their_schema() {
    let url = registry_url();
    let topics = unique_topics("reg-reader");
    let producer = registry(&url, Encoding::Confluent);
    register_all(&producer, &topics).await;
    let framing = producer
        .framing::<Tick>(&topics, &topics.ticks())
        .await
        .expect("registered");
    let Framing::Confluent { id } = framing else {
        panic!("confluent expected")
    };
    let bytes = encode_framed(&tick(), framing).expect("encode");
    assert_eq!(bytes[0], 0);

    let reader = registry(&url, Encoding::Confluent);
    assert!(matches!(
        decode_any::<Tick>(&bytes, reader.ids()),
        Err(CodecError::UnknownSchemaId { .. })
    ));
    reader.resolve(&bytes).await;
    assert!(matches!(
        reader.ids().status(id),
        Some(IdStatus::Known { ref name, .. }) if name == "strikeflow.Tick"
    ));
    assert_eq!(
        decode_any::<Tick>(&bytes, reader.ids()).expect("decodes"),
        tick()
    );
    // The id stands for a Tick: decoding it as a Watermark is refused, not misread.
    assert!(matches!(
        decode_any::<Watermark>(&bytes, reader.ids()),
        Err(CodecError::SchemaIdMismatch { .. })
    ));
    // An id the registry does not have is a clear error naming the registry's answer.
    let unknown = [0, 0x7f, 0xff, 0xff, 0xf0, 2, 4];
    reader.resolve(&unknown).await;
    let err = decode_any::<Tick>(&unknown, reader.ids()).expect_err("unknown id");
    assert!(err.to_string().contains("404"), "{err}");
}

#[tokio::test]
async fn an_unreachable_registry_is_a_clear_error_only_for_new_ids() {
    let url = registry_url();
    let topics = unique_topics("reg-down");
    let producer = registry(&url, Encoding::Confluent);
    register_all(&producer, &topics).await;
    let framing = producer
        .framing::<Tick>(&topics, &topics.ticks())
        .await
        .expect("registered");
    let known = encode_framed(&tick(), framing).expect("encode");

    // Nothing listens on port 9 of loopback: every request is refused at once.
    let reader = registry("http://127.0.0.1:9/apis/ccompat/v7", Encoding::Confluent);
    let Framing::Confluent { id } = framing else {
        panic!("confluent expected")
    };
    reader.ids().insert_record::<Tick>(id).expect("cached id");
    reader.resolve(&known).await;
    assert_eq!(
        decode_any::<Tick>(&known, reader.ids()).expect("cached"),
        tick()
    );
    let new_id = encode_framed(&tick(), Framing::Confluent { id: id + 100_000 }).expect("encode");
    reader.resolve(&new_id).await;
    let err = decode_any::<Tick>(&new_id, reader.ids()).expect_err("registry down");
    let message = err.to_string();
    assert!(
        message.contains("unreachable") && message.contains("127.0.0.1:9"),
        "{message}"
    );
}

/// Every `.avsc`, checked against its previous released version by the registry's own
/// compatibility endpoint under `BACKWARD`; and a field added without a default is refused
/// by the same endpoint.
#[tokio::test]
async fn every_schema_is_backward_compatible_with_its_released_version_in_the_registry() {
    let registry = registry(&registry_url(), Encoding::Confluent);
    let prefix = unique_topics("reg-evolution").prefix;
    let mut checked = 0;
    for entry in std::fs::read_dir(AVRO_SCHEMA_DIR).expect("schema dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "avsc") {
            continue;
        }
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let current = std::fs::read_to_string(&path).expect("read");
        let released_path = Path::new(RELEASED_SCHEMA_DIR).join(&file);
        let released = std::fs::read_to_string(&released_path).unwrap_or_else(|_| {
            panic!("{file} has no released copy in {RELEASED_SCHEMA_DIR} (see docs/formats.md)")
        });
        let subject = format!("{prefix}{}-value", file.trim_end_matches(".avsc"));
        registry
            .register(&subject, &released)
            .await
            .expect("the released version registers");
        registry
            .set_compatibility(&subject, "BACKWARD")
            .await
            .expect("compatibility set");
        assert!(
            registry
                .is_compatible(&subject, &current)
                .await
                .expect("check"),
            "{file} is not BACKWARD compatible with its released version"
        );
        let breaking = add_field_without_default(&current);
        assert!(
            !registry
                .is_compatible(&subject, &breaking)
                .await
                .expect("check"),
            "the registry accepted a field without a default in {file}"
        );
        match registry.register(&subject, &breaking).await {
            Err(RegistryError::Status { status: 409, .. }) => {}
            other => panic!("registering an incompatible {file} must be refused: {other:?}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 8, "every .avsc is checked");
}

/// `schema_json` with one more field, `added_without_default: double`, and no default.
fn add_field_without_default(schema_json: &str) -> String {
    let mut schema: serde_json::Value = serde_json::from_str(schema_json).expect("json");
    schema["fields"]
        .as_array_mut()
        .expect("a record")
        .push(serde_json::json!({"name": "added_without_default", "type": "double"}));
    schema.to_string()
}
