//! Which stage failures a restart cannot cure.
//!
//! A stage that lost a service is restarted; one that failed because of something only an
//! operator can change — a setting, a credential, a permission, a topic that is gone, data
//! that expired unread — stops the process at once, with what to fix, rather than
//! restarting into the same wall until the restart limit runs out.

use strikeflow_kafka::rdkafka::error::KafkaError as RdKafkaError;
use strikeflow_kafka::rdkafka::types::RDKafkaErrorCode;
use strikeflow_kafka::{KafkaError, RegistryError};
use strikeflow_processors::ProcessorError;
use strikeflow_push::PushError;
use strikeflow_sink::SinkError;
use tokio_postgres::error::SqlState;

/// What an operator must fix, when `error` is a failure restarting cannot cure; `None`
/// when a restart may help.
pub(crate) fn permanent(error: &anyhow::Error) -> Option<&'static str> {
    error.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<SinkError>() {
            return sink(e);
        }
        if let Some(e) = cause.downcast_ref::<ProcessorError>() {
            return processor(e);
        }
        if let Some(e) = cause.downcast_ref::<PushError>() {
            return push(e);
        }
        if let Some(e) = cause.downcast_ref::<strikeflow_api::ApiError>() {
            return api(e);
        }
        if let Some(e) = cause.downcast_ref::<KafkaError>() {
            return kafka(e);
        }
        if let Some(e) = cause.downcast_ref::<RegistryError>() {
            return registry(e);
        }
        if let Some(e) = cause.downcast_ref::<RdKafkaError>() {
            return rdkafka(e);
        }
        if let Some(e) = cause.downcast_ref::<tokio_postgres::Error>() {
            return postgres(e);
        }
        None
    })
}

const FIX_SETTING: &str = "fix the setting named in the error";
const FIX_CREDENTIALS: &str =
    "fix the credentials or grant the permission named in the error (Kafka ACLs, database roles)";
const RUN_MIGRATE: &str = "a table the stage needs is missing: run `strikeflow migrate`";

fn sink(e: &SinkError) -> Option<&'static str> {
    match e {
        SinkError::Config { .. } => Some(FIX_SETTING),
        SinkError::OffsetGap { .. } => Some(
            "records expired from Kafka before the sink stored them; see docs/sql.md, \"Offset gaps\"",
        ),
        SinkError::Postgres(e) => postgres(e),
        SinkError::Kafka(e) => kafka(e),
        SinkError::Registry(e) => registry(e),
        // Another sink's session not yet reaped, a lost lock: worth another attempt.
        _ => None,
    }
}

fn processor(e: &ProcessorError) -> Option<&'static str> {
    match e {
        ProcessorError::Config { .. } | ProcessorError::Indicators { .. } => Some(FIX_SETTING),
        ProcessorError::Encode(_) => {
            Some("an output does not fit its Avro schema: a bug to report, not a fault to retry")
        }
        ProcessorError::Kafka(e) => kafka(e),
        ProcessorError::Registry(e) => registry(e),
        _ => None,
    }
}

fn push(e: &PushError) -> Option<&'static str> {
    match e {
        PushError::Config { .. } | PushError::KeyFile { .. } | PushError::Key { .. } => {
            Some(FIX_SETTING)
        }
        PushError::Kafka(e) => kafka(e),
        PushError::Registry(e) => registry(e),
        _ => None,
    }
}

fn api(e: &strikeflow_api::ApiError) -> Option<&'static str> {
    match e {
        strikeflow_api::ApiError::Config { .. } | strikeflow_api::ApiError::Keys(_) => {
            Some(FIX_SETTING)
        }
        _ => None,
    }
}

fn kafka(e: &KafkaError) -> Option<&'static str> {
    match e {
        // Not permanent at once: a topic created moments ago (by `migrate`, beside this
        // start) is not in every broker's metadata yet. A deleted one fails every restart
        // and stops the process after the restart limit, with the same advice.
        KafkaError::MissingTopic { .. } => None,
        KafkaError::Client(e) => rdkafka(e),
        _ => None,
    }
}

/// A bad registry URL or a schema `migrate` never registered; an unreachable registry may
/// come back.
fn registry(e: &RegistryError) -> Option<&'static str> {
    match e {
        RegistryError::BadUrl { .. } => Some(FIX_SETTING),
        RegistryError::NotRegistered { .. } => {
            Some("a schema is not registered in the schema registry: run `strikeflow migrate`")
        }
        _ => None,
    }
}

fn rdkafka(e: &RdKafkaError) -> Option<&'static str> {
    match e.rdkafka_error_code()? {
        RDKafkaErrorCode::SaslAuthenticationFailed
        | RDKafkaErrorCode::Authentication
        | RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::GroupAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed
        | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
        | RDKafkaErrorCode::DelegationTokenAuthorizationFailed => Some(FIX_CREDENTIALS),
        RDKafkaErrorCode::InvalidConfig | RDKafkaErrorCode::InvalidArgument => Some(FIX_SETTING),
        _ => None,
    }
}

fn postgres(e: &tokio_postgres::Error) -> Option<&'static str> {
    let code = e.code()?;
    if *code == SqlState::INVALID_PASSWORD
        || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        || *code == SqlState::INSUFFICIENT_PRIVILEGE
    {
        Some(FIX_CREDENTIALS)
    } else if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_CATALOG_NAME {
        Some(RUN_MIGRATE)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_credentials_are_permanent_a_missing_topic_is_not() {
        let config = anyhow::Error::from(SinkError::Config {
            key: "batch_rows",
            reason: "must be positive",
        });
        assert_eq!(permanent(&config), Some(FIX_SETTING));

        let auth = anyhow::Error::from(SinkError::Kafka(KafkaError::Client(
            RdKafkaError::MetadataFetch(RDKafkaErrorCode::TopicAuthorizationFailed),
        )));
        assert_eq!(permanent(&auth), Some(FIX_CREDENTIALS));

        // A topic missing right after `migrate` created it is a race, not a verdict.
        let just_created = anyhow::Error::from(ProcessorError::Kafka(KafkaError::MissingTopic {
            topic: "ticks.v1".into(),
            reason: "unknown topic".into(),
        }))
        .context("processor failed");
        assert_eq!(permanent(&just_created), None);
    }

    #[test]
    fn lost_services_are_not_permanent() {
        let transport = anyhow::Error::from(SinkError::Kafka(KafkaError::Client(
            RdKafkaError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown),
        )));
        assert_eq!(permanent(&transport), None);
        let fenced = anyhow::Error::from(SinkError::Fenced {
            consumer: "main".into(),
        });
        assert_eq!(permanent(&fenced), None);
        assert_eq!(permanent(&anyhow::anyhow!("something else")), None);
    }
}
