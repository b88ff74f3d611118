//! TLS and SASL against the TLS endpoints `./dev up` starts beside the plaintext ones
//! (docs/operations.md, "TLS, SASL and mTLS"): Kafka over SASL_SSL with SCRAM-SHA-512 and
//! over mutual TLS, PostgreSQL with `sslmode=verify-full` and the dev CA, Redis over
//! `rediss://`, each built through the project's own configuration and connectors; and the
//! failures an operator must be able to read: a wrong password, a missing client
//! certificate, a wrong CA, a host name the certificate was not issued for. Finally, no
//! secret of the configuration shows in its `Debug` output.
//!
//! The endpoints are the ones `./dev env` exports (`DEV_*`), defaulting to ./dev's own.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strikeflow::Config;
use strikeflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use strikeflow_kafka::rdkafka::message::Message;
use strikeflow_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};
use strikeflow_kafka::{
    client_config, delete_topics, ensure_topics, producer_config, reader_config, Brokers,
    SaslMechanism, SecurityProtocol,
};
use strikeflow_push::redis_link::RedisLink;
use strikeflow_schemas::TopicSpec;

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `.dev/tls`: the dev CA, the second CA that signed nothing, the client certificate.
fn tls_dir() -> PathBuf {
    std::env::var_os("DEV_TLS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".dev/tls"),
        PathBuf::from,
    )
}

fn tls_file(name: &str) -> String {
    tls_dir().join(name).to_string_lossy().into_owned()
}

fn sasl_password() -> String {
    std::env::var("DEV_KAFKA_SASL_PASSWORD").unwrap_or_else(|_| {
        std::fs::read_to_string(tls_dir().join("kafka-sasl.password"))
            .expect("the SCRAM password ./dev up writes (is ./dev up done?)")
            .trim()
            .to_owned()
    })
}

/// The `[kafka]` section an operator writes for the SASL_SSL listener, validated as at start.
fn sasl_config(password: &str) -> Config {
    let mut config = Config::default();
    config.kafka.brokers = var("DEV_KAFKA_SASL_BROKERS", "127.0.0.1:19094");
    config.kafka.security_protocol = SecurityProtocol::SaslSsl;
    config.kafka.ssl_ca_file = tls_file("ca.pem");
    config.kafka.sasl_mechanism = SaslMechanism::ScramSha512;
    config.kafka.sasl_username = var("DEV_KAFKA_SASL_USERNAME", "strikeflow");
    config.kafka.sasl_password = password.to_owned();
    config.validate().expect("a valid SASL_SSL configuration");
    config
}

/// The `[kafka]` section for the mutual-TLS listener; without the client certificate when
/// `client_cert` is false.
fn mtls_config(client_cert: bool) -> Config {
    let mut config = Config::default();
    config.kafka.brokers = var("DEV_KAFKA_MTLS_BROKERS", "127.0.0.1:19095");
    config.kafka.security_protocol = SecurityProtocol::Ssl;
    config.kafka.ssl_ca_file = tls_file("ca.pem");
    if client_cert {
        config.kafka.ssl_cert_file = tls_file("client.pem");
        config.kafka.ssl_key_file = tls_file("client.key");
    }
    config.validate().expect("a valid SSL configuration");
    config
}

fn unique(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("tls-{label}-{}-{nanos:x}", std::process::id())
}

/// Creates a topic, produces one record and reads it back, all over `brokers` (admin,
/// producer and reader built by the project's builders), then deletes the topic.
async fn round_trip(brokers: &Brokers, label: &str) {
    let topic = unique(label);
    let spec = TopicSpec {
        name: topic.clone(),
        partitions: 1,
        compacted: false,
        max_message_bytes: None,
    };
    ensure_topics(brokers, &[spec], 1)
        .await
        .expect("creating the topic over TLS");
    let producer: FutureProducer = producer_config(brokers).create().expect("a producer");
    let payload = format!("hello over {label}");
    producer
        .send(
            FutureRecord::to(&topic).key("k").payload(&payload),
            Duration::from_secs(20),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("producing over TLS");

    let reader: BaseConsumer = reader_config(brokers, label).create().expect("a reader");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, Offset::Beginning)
        .expect("partition 0");
    reader.assign(&assignment).expect("assigning partition 0");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut read = None;
    while read.is_none() && Instant::now() < deadline {
        if let Some(Ok(message)) = reader.poll(Duration::from_millis(200)) {
            read = message.payload().map(<[u8]>::to_vec);
        }
    }
    assert_eq!(
        read.as_deref(),
        Some(payload.as_bytes()),
        "consumed over {label}"
    );
    delete_topics(brokers, &[&topic])
        .await
        .expect("deleting the topic");
}

/// Everything logged in this process, as a stage's log would show it (installed once).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter("info")
            .with_writer(move || LogWriter(sink.clone()))
            .init();
        logs
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a client built from `brokers` reports when it cannot get the cluster's metadata,
/// and what librdkafka logged meanwhile (the lines an operator reads).
fn refused(brokers: &Brokers) -> (String, String) {
    let logs = logs();
    let client: BaseConsumer = client_config(brokers).create().expect("a client");
    let error = match client.fetch_metadata(None, Duration::from_secs(10)) {
        Ok(_) => panic!("metadata fetched from {brokers} although it must be refused"),
        Err(e) => e.to_string(),
    };
    // librdkafka's error events reach the context (which logs them) as the client is
    // polled, as every stage's consumer and producer is all the time.
    for _ in 0..10 {
        let _ = client.poll(Duration::from_millis(100));
    }
    drop(client);
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    (error, logged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sasl_ssl_scram_produces_and_consumes() {
    let config = sasl_config(&sasl_password());
    let brokers = config.kafka_connection().brokers;
    assert_eq!(brokers.security.protocol, SecurityProtocol::SaslSsl);
    round_trip(&brokers, "sasl-ssl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mutual_tls_produces_and_consumes() {
    let brokers = mtls_config(true).kafka_connection().brokers;
    round_trip(&brokers, "mtls").await;
}

#[test]
fn kafka_wrong_password_is_an_authentication_error() {
    let brokers = sasl_config("not-the-password").kafka.brokers();
    let (error, logged) = refused(&brokers);
    assert!(
        logged.contains("SASL authentication error"),
        "a wrong SCRAM password should be logged as an authentication failure: {error}\n{logged}"
    );
    assert!(!logged.contains("not-the-password"), "{logged}");
}

#[test]
fn kafka_mutual_tls_without_a_client_certificate_is_refused() {
    let brokers = mtls_config(false).kafka.brokers();
    let (error, logged) = refused(&brokers);
    assert!(
        logged.contains("alert bad certificate") || logged.contains("certificate required"),
        "a listener requiring a client certificate should refuse the handshake, logged: \
         {error}\n{logged}"
    );
}

/// `DATABASE_URL` of ./dev with TLS: verify-full against the dev CA.
fn database_tls_url() -> String {
    var(
        "DEV_DATABASE_TLS_URL",
        &format!(
            "postgres://strikeflow@127.0.0.1:15432/strikeflow?sslmode=verify-full&sslrootcert={}",
            tls_file("ca.pem")
        ),
    )
}

/// Whether the session of `url` (connected through strikeflow-tls) is encrypted.
async fn session_is_encrypted(url: &str) -> Result<bool, String> {
    let target = strikeflow_tls::postgres(url).map_err(|e| e.to_string())?;
    let (client, connection) = target.connect().await.map_err(|e| format!("{e:?}"))?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test]
async fn postgres_verify_full_with_the_ca_connects_encrypted_and_migrates() {
    let url = database_tls_url();
    assert_eq!(session_is_encrypted(&url).await, Ok(true));
    // migrate connects through the same connector; ./dev test migrated already, so this is
    // the check-and-do-nothing path, over TLS.
    strikeflow::migrate::migrate_database(&url)
        .await
        .expect("migrate over verify-full");
}

#[tokio::test]
async fn postgres_with_another_ca_is_refused() {
    let url = database_tls_url().replace("ca.pem", "other-ca.pem");
    assert!(url.contains("other-ca.pem"), "{url}");
    let error = session_is_encrypted(&url)
        .await
        .expect_err("an unknown issuer");
    assert!(error.contains("UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn postgres_verify_full_checks_the_host_name() {
    // The server at 127.0.0.1 (hostaddr) under a name its certificate does not carry.
    let url = database_tls_url().replace("@127.0.0.1:", "@db.strikeflow.invalid:")
        + "&hostaddr=127.0.0.1";
    let error = session_is_encrypted(&url)
        .await
        .expect_err("a name mismatch");
    assert!(error.contains("NotValidForName"), "{error}");
    // verify-ca checks the chain only, so the same connection is accepted.
    let chain_only = url.replace("sslmode=verify-full", "sslmode=verify-ca");
    assert_eq!(session_is_encrypted(&chain_only).await, Ok(true));
}

fn redis_tls_url(ca: &str) -> String {
    var(
        "DEV_REDIS_TLS_URL",
        &format!(
            "rediss://127.0.0.1:16380/?sslrootcert={}",
            tls_file("ca.pem")
        ),
    )
    .replace("ca.pem", ca)
}

#[tokio::test]
async fn push_reaches_redis_over_rediss() {
    let link = RedisLink::new(&redis_tls_url("ca.pem")).expect("a rediss:// link");
    // push's link gives a connection 2 s; on a loaded test machine the first handshake may
    // take longer, and the link simply connects again on the next call, as in push.
    let mut answered = link.ping().await;
    for _ in 0..4 {
        if answered.is_ok() {
            break;
        }
        answered = link.ping().await;
    }
    answered.expect("PING over TLS");

    let wrong = RedisLink::new(&redis_tls_url("other-ca.pem")).expect("a rediss:// link");
    let error = wrong
        .ping()
        .await
        .expect_err("an unknown issuer")
        .to_string();
    assert!(error.contains("UnknownIssuer"), "{error}");
}

#[test]
fn no_secret_shows_in_the_configurations_debug_output() {
    let mut config = sasl_config("kafka-pass-1234567");
    config.database.url = "postgres://strikeflow:db-pass-1234567@db:5432/strikeflow".into();
    config.redis.url = "rediss://:redis-pass-1234567@cache:6380".into();
    config.auth.jwt_secret = "jwt-secret-1234567-long-enough-to-be-used".into();
    let shown = format!(
        "{config:?}\n{:?}\n{:?}",
        config.kafka_connection(),
        config.processor().kafka
    );
    for secret in [
        "kafka-pass-1234567",
        "db-pass-1234567",
        "redis-pass-1234567",
        "jwt-secret-1234567",
    ] {
        assert!(!shown.contains(secret), "{secret} in: {shown}");
    }
    // What is not secret stays visible, so the dump still helps.
    assert!(shown.contains("strikeflow:***@db:5432"), "{shown}");
    assert!(shown.contains("SaslSsl"), "{shown}");
}
