//! Loading and checking the configuration: overrides, and every way a setting is refused.

// figment::Jail's closures return figment's own (large) error type.
#![allow(clippy::result_large_err)]

use std::path::Path;

use figment::Jail;

use super::*;

/// `load`'s error as figment's, for `?` inside a jail.
fn jailed(error: ConfigError) -> figment::Error {
    figment::Error::from(error.to_string())
}

/// Loads `custom.toml` with `text` in a jail without the caller's environment.
fn load_file(jail: &mut Jail, text: &str) -> Result<Config, ConfigError> {
    jail.clear_env();
    jail.create_file("custom.toml", text)
        .map_err(|e| ConfigError::invalid("test", e.to_string()))?;
    Config::load(Some(Path::new("custom.toml")))
}

/// The message a file with `text` is refused with, at load or validation.
fn refusal(text: &str) -> String {
    let mut message = String::new();
    Jail::expect_with(|jail| {
        let result = load_file(jail, text).and_then(|config| config.validate());
        match result {
            Ok(()) => Err(format!("{text:?} was accepted").into()),
            Err(e) => {
                message = e.to_string();
                Ok(())
            }
        }
    });
    message
}

/// Fails the test unless `message` holds every one of `parts`.
fn assert_names(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} does not mention {part:?}"
        );
    }
}

#[test]
fn file_then_env_override_defaults() {
    Jail::expect_with(|jail| {
        // `./dev test` exports KAFKA_BROKERS and friends; this test sets its own.
        jail.clear_env();
        jail.create_file(
            "custom.toml",
            "[kafka]\nbrokers = \"file:9092\"\ntopic_prefix = \"demo.\"\n[sink]\nbatch_rows = 7\n",
        )?;
        jail.set_env("STRIKEFLOW_PROCESSOR__ALLOWED_LATENESS_MS", "1234");
        jail.set_env("DATABASE_URL", "postgres://elsewhere/db");
        let config = Config::load(Some(Path::new("custom.toml"))).map_err(jailed)?;
        config.validate().map_err(jailed)?;
        assert_eq!(config.sink().kafka.brokers.bootstrap, "file:9092");
        assert_eq!(config.sink().settings.batch_rows, 7);
        assert_eq!(config.sink().database_url, "postgres://elsewhere/db");
        assert_eq!(config.processor().settings.allowed_lateness_ms, 1234);
        assert_eq!(config.processor().kafka.topics.ticks(), "demo.ticks.v1");
        Ok(())
    });
}

#[test]
fn missing_explicit_file_is_an_error() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        assert!(Config::load(Some(Path::new("nope.toml"))).is_err());
        Ok(())
    });
}

#[test]
fn defaults_and_the_documented_file_are_valid() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        Config::default().validate().map_err(jailed)?;
        let documented = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/strikeflow.toml");
        let config = Config::load(Some(&documented)).map_err(jailed)?;
        config.validate().map_err(jailed)?;
        assert_eq!(config.simulate.market.seed, 42);
        assert_eq!(config.simulate.rate, 2_000.0);
        Ok(())
    });
}

#[test]
fn variables_the_project_sets_are_not_settings() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("STRIKEFLOW_CONFIG", "elsewhere.toml");
        jail.set_env("STRIKEFLOW_PYTHON", "/usr/bin/python3");
        jail.set_env("STRIKEFLOW_JWT_SECRET", "s3cret");
        jail.set_env("STRIKEFLOW_KAFKA__TOPIC_PREFIX", "demo-1.");
        jail.set_env("STRIKEFLOW_TELEMETRY__METRICS_LISTEN", "");
        jail.set_env("STRIKEFLOW_PROCESSOR__INSTANCE_ID", "strikeflow-0");
        jail.set_env("STRIKEFLOW_PUSH__LISTEN", "0.0.0.0:8080");
        let config = Config::load(None).map_err(jailed)?;
        config.validate().map_err(jailed)?;
        assert_eq!(config.auth.jwt_secret, "s3cret");
        assert_eq!(config.telemetry.metrics_listen, None);
        assert_eq!(config.processor.instance_id, "strikeflow-0");
        Ok(())
    });
}

#[test]
fn a_misspelt_key_in_the_file_is_named_with_the_file() {
    let message = refusal("[sink]\nbatch_row = 5\n");
    assert_names(
        &message,
        &["sink.batch_row", "unknown key", "batch_rows", "custom.toml"],
    );
}

#[test]
fn a_misspelt_key_in_the_environment_is_named_with_the_variable() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("STRIKEFLOW_SINK__BATCH_ROW", "5");
        let Err(e) = Config::load(None) else {
            return Err("STRIKEFLOW_SINK__BATCH_ROW was accepted".into());
        };
        assert_names(
            &e.to_string(),
            &[
                "sink.batch_row",
                "unknown key",
                "environment variable STRIKEFLOW_SINK__BATCH_ROW",
            ],
        );
        Ok(())
    });
}

#[test]
fn an_unknown_section_in_the_environment_names_its_variables() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("STRIKEFLOW_SINKS__BATCH_ROWS", "5");
        let Err(e) = Config::load(None) else {
            return Err("STRIKEFLOW_SINKS__BATCH_ROWS was accepted".into());
        };
        assert_names(
            &e.to_string(),
            &["sinks: unknown key", "STRIKEFLOW_SINKS__BATCH_ROWS"],
        );
        Ok(())
    });
}

#[test]
fn an_unknown_section_is_named() {
    let message = refusal("[sinks]\nbatch_rows = 5\n");
    assert_names(&message, &["sinks", "unknown key", "custom.toml"]);
}

#[test]
fn the_old_flat_simulate_section_is_refused() {
    // Simulator settings moved to [simulate.market]; a file still written the old way must
    // not silently run the default market.
    let message = refusal("[simulate]\nseed = 7\n");
    assert_names(&message, &["simulate.seed", "unknown key", "market"]);
}

#[test]
fn a_misspelt_simulator_key_is_named() {
    let message = refusal("[simulate.market]\nsead = 7\n");
    assert_names(&message, &["simulate.market.sead", "unknown key"]);
}

#[test]
fn a_value_of_the_wrong_type_is_named() {
    let message = refusal("[sink]\nbatch_rows = \"many\"\n");
    assert_names(&message, &["sink.batch_rows", "custom.toml"]);
}

#[test]
fn a_bad_stage_value_is_named_with_the_reason() {
    let message = refusal("[sink]\nbatch_rows = 0\n");
    assert_names(&message, &["sink.batch_rows: must"]);
}

#[test]
fn an_unknown_indicator_is_named() {
    let message = refusal("[processor]\nindicators = [{ name = \"rsx\" }]\n");
    assert_names(&message, &["processor.indicators", "rsx"]);
}

#[test]
fn an_unknown_pricing_convention_is_named() {
    let message = refusal("[processor.analytics]\nconvention = \"black77\"\n");
    assert_names(
        &message,
        &[
            "processor.analytics.convention",
            "black77",
            "black76",
            "nse",
        ],
    );
}

#[test]
fn connection_settings_are_checked() {
    for (text, key) in [
        ("[kafka]\nbrokers = \"\"\n", "kafka.brokers"),
        ("[kafka]\nbrokers = \"a:9092,,b:9092\"\n", "kafka.brokers"),
        ("[kafka]\ntopic_prefix = \"demo/\"\n", "kafka.topic_prefix"),
        ("[kafka]\nreplication = 0\n", "kafka.replication"),
        ("[database]\nurl = \"redis://127.0.0.1\"\n", "database.url"),
        ("[database]\nurl = \"nonsense\"\n", "database.url"),
        ("[redis]\nurl = \"postgres://127.0.0.1\"\n", "redis.url"),
        ("[redis]\nurl = \"127.0.0.1:6379\"\n", "redis.url"),
        ("[auth]\njwt_secret = \"\"\n", "auth.jwt_secret"),
        ("[auth]\nissuer = \"\"\n", "auth.issuer"),
        ("[auth]\nleeway_secs = 3600\n", "auth.leeway_secs"),
        (
            "[auth]\nrs256_public_key_file = \"/nonexistent.pem\"\n",
            "auth.rs256_public_key_file: cannot read /nonexistent.pem",
        ),
        (
            "[auth]\njwks_file = \"/nonexistent.json\"\n",
            "auth.jwks_file",
        ),
        ("[auth]\nissuer_url = \"x\"\n", "auth.issuer_url"),
        ("[push]\nmax_subscriptions = 0\n", "push.max_subscriptions"),
        ("[push]\nmax_frame_bytes = 1\n", "push.max_frame_bytes"),
        (
            "[telemetry]\nmetrics_listen = \"nowhere\"\n",
            "telemetry.metrics_listen",
        ),
        ("[telemetry]\nlog = \"foo=loud\"\n", "telemetry.log"),
        ("[simulate]\nrate = -1.0\n", "simulate.rate"),
    ] {
        assert_names(&refusal(text), &[key]);
    }
}

#[test]
fn auth_and_push_limits_reach_push() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file(
            "custom.toml",
            "[auth]\nissuer = \"https://id.example\"\nleeway_secs = 2\n\
             [push]\nmax_subscriptions = 9\nops_per_sec = 7\n",
        )?;
        jail.set_env("STRIKEFLOW_AUTH__AUDIENCE", "dashboards");
        jail.set_env("STRIKEFLOW_JWT_SECRET", "s3cret");
        let config = Config::load(Some(Path::new("custom.toml"))).map_err(jailed)?;
        config.validate().map_err(jailed)?;
        let push = config.push();
        assert_eq!(push.auth.issuer, "https://id.example");
        assert_eq!(push.auth.audience, "dashboards");
        assert_eq!(push.auth.jwt_secret, "s3cret");
        assert_eq!(push.auth.leeway_secs, 2);
        assert_eq!(push.settings.max_subscriptions, 9);
        assert_eq!(push.settings.ops_per_sec, 7);
        Ok(())
    });
}

#[test]
fn the_api_section_reaches_the_api_with_the_shared_connections() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file(
            "custom.toml",
            "[auth]\nissuer = \"https://id.example\"\n\
             [api]\nlisten = \"127.0.0.1:9181\"\naudience = \"dash-api\"\nscope = \"read\"\n\
             cors_origins = [\"https://dash.example\"]\ncache_ttl_ms = 500\n",
        )?;
        jail.set_env("STRIKEFLOW_API__REQUESTS_PER_SEC", "7");
        jail.set_env("STRIKEFLOW_API__POOL_SIZE", "3");
        jail.set_env("REDIS_URL", "redis://cache.example:6379");
        jail.set_env("DATABASE_URL", "postgres://elsewhere/db");
        jail.set_env("STRIKEFLOW_JWT_SECRET", "s3cret");
        let config = Config::load(Some(Path::new("custom.toml"))).map_err(jailed)?;
        config.validate().map_err(jailed)?;
        let api = config.api();
        api.validate()
            .map_err(|e| figment::Error::from(e.to_string()))?;
        assert_eq!(api.settings.listen.port(), 9181);
        assert_eq!(api.settings.audience, "dash-api");
        assert_eq!(api.settings.scope, "read");
        assert_eq!(api.settings.cors_origins, ["https://dash.example"]);
        assert_eq!(api.settings.cache_ttl_ms, 500);
        assert_eq!(api.settings.requests_per_sec, 7);
        assert_eq!(api.settings.pool_size, 3);
        assert_eq!(api.database_url, "postgres://elsewhere/db");
        assert_eq!(api.redis_url, "redis://cache.example:6379");
        // [auth] is shared: keys and issuer from it, the audience the API's own.
        assert_eq!(api.auth.issuer, "https://id.example");
        assert_eq!(api.auth.jwt_secret, "s3cret");
        assert_eq!(config.push().auth.audience, "strikeflow-push");
        Ok(())
    });
}

#[test]
fn a_bad_api_setting_is_named() {
    for (text, parts) in [
        (
            "[api]\npool_sise = 5\n",
            &["api.pool_sise", "unknown key", "pool_size"][..],
        ),
        ("[api]\npool_size = 0\n", &["api.pool_size: must"]),
        (
            "[api]\nlisten = \"nowhere\"\n",
            &["api.listen", "custom.toml"],
        ),
        ("[api]\nscope = \"a b\"\n", &["api.scope: "]),
        (
            "[api]\ncors_origins = [\"dash.example\"]\n",
            &["api.cors_origins: ", "dash.example"],
        ),
        ("[api]\nrequests_burst = 0\n", &["api.requests_burst: must"]),
        (
            "[api]\ncache_ttl_ms = 1500\n",
            &[
                "api.cache_ttl_ms: ",
                "processor.analytics.emit_every_ms (1000)",
            ],
        ),
        (
            "[processor.analytics]\nemit_every_ms = 250\n",
            &["api.cache_ttl_ms: ", "(250)"],
        ),
    ] {
        assert_names(&refusal(text), parts);
    }
    // A shorter emission interval with a cache to match is fine.
    Jail::expect_with(|jail| {
        let config = load_file(
            jail,
            "[processor.analytics]\nemit_every_ms = 250\n[api]\ncache_ttl_ms = 250\n",
        )
        .map_err(jailed)?;
        config.validate().map_err(jailed)
    });
}

#[test]
fn a_misspelt_api_variable_is_named() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("STRIKEFLOW_API__CACHE_TTL", "5");
        let Err(e) = Config::load(None) else {
            return Err("STRIKEFLOW_API__CACHE_TTL was accepted".into());
        };
        assert_names(
            &e.to_string(),
            &[
                "api.cache_ttl",
                "unknown key",
                "environment variable STRIKEFLOW_API__CACHE_TTL",
            ],
        );
        Ok(())
    });
}

#[test]
fn registry_settings_are_checked_and_named() {
    for (text, key) in [
        (
            "[registry]\nurl = \"https://r:8081\"\n",
            "registry.url: schema registry URL",
        ),
        ("[registry]\nurl = \"nonsense\"\n", "registry.url"),
        (
            "[registry]\nencoding = \"confluent\"\n",
            "registry.encoding",
        ),
        ("[registry]\nencoding = \"json\"\n", "registry.encoding"),
        (
            "[registry]\nurl = \"http://r:8081\"\ntimeout_ms = 0\n",
            "registry.timeout_ms",
        ),
        ("[registry]\nurll = \"http://r:8081\"\n", "registry.urll"),
    ] {
        assert_names(&refusal(text), &[key]);
    }
}

#[test]
fn the_registry_url_decides_the_default_encoding() {
    Jail::expect_with(|jail| {
        let config = load_file(jail, "").map_err(jailed)?;
        assert_eq!(config.registry_connection(), None);
        assert_eq!(config.processor().registry, None);

        jail.set_env(
            "SCHEMA_REGISTRY_URL",
            "http://127.0.0.1:18081/apis/ccompat/v7",
        );
        let config = Config::load(Some(Path::new("custom.toml"))).map_err(jailed)?;
        config.validate().map_err(jailed)?;
        let connection = config.registry_connection().expect("a registry");
        assert_eq!(connection.url, "http://127.0.0.1:18081/apis/ccompat/v7");
        assert_eq!(connection.encoding, strikeflow_schemas::Encoding::Confluent);
        assert_eq!(connection.timeout, std::time::Duration::from_secs(5));
        assert_eq!(config.sink().registry, Some(connection.clone()));
        assert_eq!(config.push().registry, Some(connection.clone()));
        assert_eq!(config.simulate().registry, Some(connection));

        let config = load_file(
            jail,
            "[registry]\nurl = \"http://r:8081\"\nencoding = \"single-object\"\n",
        )
        .map_err(jailed)?;
        config.validate().map_err(jailed)?;
        assert_eq!(
            config.registry_connection().map(|c| c.encoding),
            Some(strikeflow_schemas::Encoding::SingleObject)
        );
        Ok(())
    });
}
