//! The client of the Confluent-compatible schema registry (Apicurio Registry's
//! `/apis/ccompat/v7`, or Confluent's own): the producers' schema ids, looked up once at
//! start, and the readers' id -> schema table, filled on first sight of an id.
//!
//! Nothing here is on the hot path for a known id: readers call [`Registry::resolve`] with
//! each payload, which for a single-object message or a known id is a byte check and a
//! read lock, and only for an id never seen goes to the registry (bounded by the timeout,
//! and at most once per [`RETRY_UNRESOLVED`] per id while it keeps failing). So an outage
//! costs nothing for ids already resolved, and a new id during an outage is rejected with
//! the reason (dead-lettered by the stage) instead of stalling it.
//!
//! HTTP/1.1 through hyper (already in the tree with axum), one short connection per
//! request: requests are rare (start-up, a new schema id), so no pool is kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use strikeflow_schemas::{
    confluent_id, subject_of, AvroRecord, CodecError, Encoding, Framing, SchemaIds, Topics,
};
use tokio::net::TcpStream;
use tracing::{info, warn};

/// How long an id that could not be resolved is left alone before the next attempt: while
/// the registry is down, a burst of records with a new id costs one timeout, not one each.
pub const RETRY_UNRESOLVED: Duration = Duration::from_secs(5);

/// Media type of the Confluent REST API.
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Where the registry is and what producers write; `[registry]` of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConnection {
    /// Base URL of the Confluent-compatible API, e.g.
    /// `http://127.0.0.1:18081/apis/ccompat/v7` (Apicurio) or `http://host:8081`
    /// (Confluent). Only `http://` is supported.
    pub url: String,
    /// Limit of one request (connect, send, read the answer).
    pub timeout: Duration,
    /// What producers write.
    pub encoding: Encoding,
}

/// Why talking to the registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The configured URL cannot be used.
    #[error("schema registry URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection, or the connection broke.
    #[error("schema registry at {url} is unreachable")]
    Unreachable {
        /// The registry's URL.
        url: String,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No complete answer within the timeout.
    #[error("schema registry at {url} did not answer within {timeout:?}")]
    Timeout {
        /// The registry's URL.
        url: String,
        /// The configured limit.
        timeout: Duration,
    },
    /// The registry refused the request.
    #[error("schema registry answered {status} to {what}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The request, e.g. `GET /schemas/ids/7`.
        what: String,
        /// The registry's message.
        body: String,
    },
    /// A producer's schema is not registered under its subject.
    #[error("{record} is not registered under subject {subject} in the schema registry; run `strikeflow migrate` (producers never register schemas themselves): {detail}")]
    NotRegistered {
        /// The subject looked up.
        subject: String,
        /// The record's full Avro name.
        record: &'static str,
        /// What the registry said.
        detail: String,
    },
    /// The answer is not the JSON the API documents.
    #[error("schema registry's answer to {what} is not understood: {reason}")]
    BadAnswer {
        /// The request.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// A schema could not be parsed.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// The HTTP side: where the API is.
#[derive(Debug)]
struct Client {
    url: String,
    authority: String,
    base_path: String,
    timeout: Duration,
}

#[derive(Debug)]
struct Inner {
    client: Option<Client>,
    encoding: Encoding,
    ids: SchemaIds,
    /// When each unresolved id was last tried.
    last_attempt: Mutex<HashMap<u32, Instant>>,
}

/// A stage's view of the schema registry: its HTTP client (if one is configured), the
/// producers' encoding and the shared id -> schema table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl Registry {
    /// The registry of `connection`, or none: producers then write single-object records
    /// and a Confluent-framed record is rejected as undecodable (no registry to ask).
    pub fn new(connection: Option<&RegistryConnection>) -> Result<Self, RegistryError> {
        let (client, encoding) = match connection {
            Some(c) => (Some(Client::parse(&c.url, c.timeout)?), c.encoding),
            None => (None, Encoding::SingleObject),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                encoding,
                ids: SchemaIds::new(),
                last_attempt: Mutex::default(),
            }),
        })
    }

    /// No registry: single-object writes, Confluent records rejected.
    pub fn none() -> Self {
        Self {
            inner: Arc::new(Inner {
                client: None,
                encoding: Encoding::SingleObject,
                ids: SchemaIds::new(),
                last_attempt: Mutex::default(),
            }),
        }
    }

    /// The id -> schema table the readers decode with
    /// ([`strikeflow_schemas::decode_any`]).
    pub fn ids(&self) -> &SchemaIds {
        &self.inner.ids
    }

    /// What producers write.
    pub fn encoding(&self) -> Encoding {
        self.inner.encoding
    }

    /// Makes sure the schema id of `payload` (if it is Confluent-framed) is in
    /// [`Registry::ids`], fetching it from the registry the first time it is seen. Never
    /// fails: a failure is recorded in the table, and the decode then reports it. Costs no
    /// I/O for a single-object payload, a known id, or an id that failed less than
    /// [`RETRY_UNRESOLVED`] ago.
    pub async fn resolve(&self, payload: &[u8]) {
        let Some(id) = confluent_id(payload) else {
            return;
        };
        let ids = &self.inner.ids;
        if ids.is_known(id) {
            return;
        }
        let Some(client) = &self.inner.client else {
            ids.insert_failure(
                id,
                "no schema registry is configured ([registry] url / SCHEMA_REGISTRY_URL)".into(),
            );
            return;
        };
        {
            let mut last = self
                .inner
                .last_attempt
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if last
                .get(&id)
                .is_some_and(|t| now.duration_since(*t) < RETRY_UNRESOLVED)
            {
                return;
            }
            last.insert(id, now);
        }
        match client.schema(id).await {
            Ok(schema) => {
                if ids.insert_schema(id, &schema).is_ok() {
                    info!(id, url = %client.url, "schema id resolved from the registry");
                }
            }
            Err(e) => {
                warn!(id, error = %e, "schema id could not be resolved");
                ids.insert_failure(id, format!("not resolvable from the registry: {e}"));
            }
        }
    }

    /// [`Registry::resolve`] for code running on a blocking thread of a Tokio runtime
    /// (`spawn_blocking`), such as the processor's replay. Without a runtime it does
    /// nothing (the decode then reports the id as unresolved).
    pub fn resolve_blocking(&self, payload: &[u8]) {
        if confluent_id(payload).is_none_or(|id| self.inner.ids.is_known(id)) {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.block_on(self.resolve(payload));
        }
    }

    /// Resolves the ids of this deployment's own schemas (every subject of `topics`) ahead
    /// of the first record, so a reader whose registry is down later still decodes what
    /// its own producers write. Failures are only logged: a reader works without it.
    pub async fn warm(&self, topics: &Topics) {
        if self.inner.client.is_none() {
            return;
        }
        let specs = topics.subjects();
        let ids = futures::future::join_all(
            specs
                .iter()
                .map(|spec| self.lookup(&spec.subject, spec.schema_json)),
        )
        .await;
        for (spec, id) in specs.iter().zip(ids) {
            match id {
                Ok(id) => {
                    if let Err(e) = self.inner.ids.insert_schema(id, spec.schema_json) {
                        warn!(subject = %spec.subject, error = %e, "schema not usable");
                    }
                }
                Err(e) => {
                    info!(subject = %spec.subject, error = %e, "schema id not known in advance")
                }
            }
        }
    }

    /// How a producer frames record `T` on `topic`: single object, or Confluent with the
    /// id of `T`'s schema under its subject ([`strikeflow_schemas::subject_of`]), looked
    /// up now. Nothing is registered: an unregistered schema is
    /// [`RegistryError::NotRegistered`], so a producer fails at start, not at its first
    /// record.
    pub async fn framing<T: AvroRecord>(
        &self,
        topics: &Topics,
        topic: &str,
    ) -> Result<Framing, RegistryError> {
        if self.inner.encoding == Encoding::SingleObject {
            return Ok(Framing::SingleObject);
        }
        let subject = subject_of::<T>(topics, topic);
        let id = match self.lookup(&subject, T::SCHEMA_JSON).await {
            Ok(id) => id,
            Err(RegistryError::Status {
                status: 404, body, ..
            }) => {
                return Err(RegistryError::NotRegistered {
                    subject,
                    record: T::NAME,
                    detail: body,
                })
            }
            Err(e) => return Err(e),
        };
        self.inner.ids.insert_record::<T>(id)?;
        Ok(Framing::Confluent { id })
    }

    /// The id of `schema_json` if it is registered under `subject`
    /// (`POST /subjects/<subject>`); a 404 means it is not.
    pub async fn lookup(&self, subject: &str, schema_json: &str) -> Result<u32, RegistryError> {
        let answer: IdAnswer = self
            .client()?
            .call(
                Method::POST,
                &format!("/subjects/{}", path_segment(subject)?),
                Some(schema_body(schema_json)),
            )
            .await?;
        Ok(answer.id)
    }

    /// Registers `schema_json` under `subject` (a no-op returning the same id when it is
    /// already there) and returns its id. For `strikeflow migrate` only.
    pub async fn register(&self, subject: &str, schema_json: &str) -> Result<u32, RegistryError> {
        let answer: IdAnswer = self
            .client()?
            .call(
                Method::POST,
                &format!("/subjects/{}/versions", path_segment(subject)?),
                Some(schema_body(schema_json)),
            )
            .await?;
        Ok(answer.id)
    }

    /// Sets the compatibility level of `subject` (e.g. `BACKWARD`).
    pub async fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), RegistryError> {
        let body = serde_json::json!({ "compatibility": level }).to_string();
        let answer: CompatibilityAnswer = self
            .client()?
            .call(
                Method::PUT,
                &format!("/config/{}", path_segment(subject)?),
                Some(body),
            )
            .await?;
        if answer.compatibility != level {
            return Err(RegistryError::BadAnswer {
                what: format!("PUT /config/{subject}"),
                reason: format!("level is {} after setting {level}", answer.compatibility),
            });
        }
        Ok(())
    }

    /// Whether `schema_json` may be registered as the next version of `subject` under the
    /// subject's compatibility level (checked against its latest version).
    pub async fn is_compatible(
        &self,
        subject: &str,
        schema_json: &str,
    ) -> Result<bool, RegistryError> {
        let answer: IsCompatibleAnswer = self
            .client()?
            .call(
                Method::POST,
                &format!(
                    "/compatibility/subjects/{}/versions/latest",
                    path_segment(subject)?
                ),
                Some(schema_body(schema_json)),
            )
            .await?;
        Ok(answer.is_compatible)
    }

    /// The schema text registered under `id`.
    pub async fn schema(&self, id: u32) -> Result<String, RegistryError> {
        self.client()?.schema(id).await
    }

    fn client(&self) -> Result<&Client, RegistryError> {
        self.inner
            .client
            .as_ref()
            .ok_or_else(|| RegistryError::BadUrl {
                url: String::new(),
                reason: "no schema registry is configured ([registry] url / SCHEMA_REGISTRY_URL)"
                    .into(),
            })
    }
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
}

#[derive(Deserialize)]
struct CompatibilityAnswer {
    #[serde(alias = "compatibilityLevel")]
    compatibility: String,
}

#[derive(Deserialize)]
struct IsCompatibleAnswer {
    is_compatible: bool,
}

/// The request body that carries a schema.
fn schema_body(schema_json: &str) -> String {
    serde_json::json!({ "schema": schema_json }).to_string()
}

/// A subject as one path segment: topic names are `[A-Za-z0-9._-]`, which need no escaping;
/// anything else is refused rather than sent mangled.
fn path_segment(subject: &str) -> Result<&str, RegistryError> {
    if !subject.is_empty()
        && subject
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Ok(subject)
    } else {
        Err(RegistryError::BadAnswer {
            what: format!("subject {subject:?}"),
            reason: "a subject must be made of [A-Za-z0-9._-]".into(),
        })
    }
}

impl Client {
    /// Checks the URL: `http://host[:port][/base path]`.
    fn parse(url: &str, timeout: Duration) -> Result<Self, RegistryError> {
        let bad = |reason: &str| RegistryError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// is supported"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if uri.query().is_some() {
            return Err(bad("must not have a query"));
        }
        let authority = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            timeout,
        })
    }

    async fn schema(&self, id: u32) -> Result<String, RegistryError> {
        let answer: SchemaAnswer = self
            .call(Method::GET, &format!("/schemas/ids/{id}"), None)
            .await?;
        Ok(answer.schema)
    }

    /// One request, bounded by the timeout, its JSON answer parsed as `A`.
    async fn call<A: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<A, RegistryError> {
        let what = format!("{method} {path}");
        let exchange = self.exchange(method, path, body);
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| RegistryError::Timeout {
                url: self.url.clone(),
                timeout: self.timeout,
            })??;
        if !status.is_success() {
            return Err(RegistryError::Status {
                status: status.as_u16(),
                what,
                body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::BadAnswer {
            what,
            reason: e.to_string(),
        })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Bytes), RegistryError> {
        let unreachable =
            |source: Box<dyn std::error::Error + Send + Sync>| RegistryError::Unreachable {
                url: self.url.clone(),
                source,
            };
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| unreachable(e.into()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.into()))?;
        // Drives the connection while the request is in flight; ends with it.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_path))
            .header(HOST, &self.authority)
            .header(ACCEPT, MEDIA_TYPE)
            .header(CONTENT_TYPE, MEDIA_TYPE)
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| RegistryError::BadUrl {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.into()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.into()))?
            .to_bytes();
        Ok((status, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(url: &str) -> RegistryConnection {
        RegistryConnection {
            url: url.into(),
            timeout: Duration::from_secs(1),
            encoding: Encoding::Confluent,
        }
    }

    #[test]
    fn urls_are_checked() {
        let ok = Registry::new(Some(&connection("http://127.0.0.1:18081/apis/ccompat/v7/")))
            .expect("valid");
        let client = ok.inner.client.as_ref().expect("client");
        assert_eq!(client.authority, "127.0.0.1:18081");
        assert_eq!(client.base_path, "/apis/ccompat/v7");
        let default_port = Registry::new(Some(&connection("http://registry"))).expect("valid");
        assert_eq!(
            default_port
                .inner
                .client
                .as_ref()
                .expect("client")
                .authority,
            "registry:80"
        );
        for bad in ["https://r:1", "r:1", "", "http://r:1/?x=1"] {
            assert!(
                matches!(
                    Registry::new(Some(&connection(bad))),
                    Err(RegistryError::BadUrl { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(Registry::none().encoding(), Encoding::SingleObject);
    }

    #[test]
    fn subjects_are_single_path_segments() {
        assert!(path_segment("x.ticks.v1-value").is_ok());
        assert!(path_segment("a/b").is_err());
        assert!(path_segment("").is_err());
    }

    #[tokio::test]
    async fn without_a_registry_confluent_ids_are_unresolved_with_the_reason() {
        let registry = Registry::none();
        registry.resolve(&[0, 0, 0, 0, 9, 1]).await;
        let status = registry.ids().status(9);
        assert!(
            matches!(&status, Some(strikeflow_schemas::IdStatus::Unresolved { reason }) if reason.contains("no schema registry")),
            "{status:?}"
        );
    }
}
