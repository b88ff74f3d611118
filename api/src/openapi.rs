//! The endpoints, each with the query parameters it takes, in one table that the router, the
//! parameter checks and the OpenAPI document (`api/openapi.json`, served at
//! `/api/v1/openapi.json`) are all held to.
//!
//! The document is written by hand rather than generated (e.g. by `utoipa`): the handlers
//! read raw query pairs to name a bad parameter in their own errors, so derived parameter
//! schemas would describe a second, unused parsing path, and the proc-macro stack would
//! double this crate's build on a 2-core machine for one static file. The test below keeps
//! the document honest: every path, and every query parameter of every path, equals this
//! table.

use axum::http::header;
use axum::response::IntoResponse;

/// One route and the query parameters it takes.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The path as routed and as documented (`{token}` marks a path parameter).
    pub(crate) path: &'static str,
    /// Query parameter names; REST endpoints refuse others.
    pub(crate) params: &'static [&'static str],
}

macro_rules! endpoints {
    ($($name:ident = $path:literal [$($param:literal),*];)*) => {
        $(pub(crate) const $name: Endpoint = Endpoint { path: $path, params: &[$($param),*] };)*
        /// Every endpoint served.
        #[cfg(test)]
        pub(crate) const ALL: &[Endpoint] = &[$($name),*];
    };
}

endpoints! {
    UNDERLYINGS = "/api/v1/underlyings" [];
    EXPIRIES = "/api/v1/expiries" ["underlying"];
    INSTRUMENTS = "/api/v1/instruments" ["q", "type", "expiry", "strike", "underlying", "limit", "cursor"];
    INSTRUMENT = "/api/v1/instruments/{token}" [];
    CHAIN = "/api/v1/chain" ["underlying", "expiry", "at"];
    CHAINS = "/api/v1/chains" ["underlying", "expiries", "at"];
    STRIKES = "/api/v1/strikes" ["underlying", "expiry", "from", "to", "tf", "strike", "limit"];
    MONEYNESS = "/api/v1/moneyness" ["underlying", "expiry", "bucket", "side", "from", "to", "limit"];
    BARS = "/api/v1/bars" ["symbol", "tf", "from", "to", "limit"];
    INDICATORS = "/api/v1/indicators" [];
    INDICATOR = "/api/v1/indicators/{name}" ["symbol", "tf", "params", "from", "to", "limit"];
    OPENAPI = "/api/v1/openapi.json" [];
    UDF_CONFIG = "/udf/config" [];
    UDF_SYMBOLS = "/udf/symbols" ["symbol"];
    UDF_SEARCH = "/udf/search" ["query", "type", "exchange", "limit"];
    UDF_HISTORY = "/udf/history" ["symbol", "resolution", "from", "to", "countback"];
    UDF_TIME = "/udf/time" [];
    HEALTHZ = "/healthz" [];
    READYZ = "/readyz" [];
}

/// The OpenAPI 3.1 document.
pub(crate) const DOCUMENT: &str = include_str!("../openapi.json");

/// `GET /api/v1/openapi.json`.
pub(crate) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    /// A parameter object, following a `$ref` into `components/parameters`.
    fn resolve<'a>(doc: &'a Value, param: &'a Value) -> &'a Value {
        match param.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference
                    .strip_prefix("#/components/parameters/")
                    .expect("parameter refs point into components/parameters");
                &doc["components"]["parameters"][name]
            }
            None => param,
        }
    }

    #[test]
    fn it_is_openapi_3_1() {
        let doc = document();
        assert!(doc["openapi"]
            .as_str()
            .expect("openapi")
            .starts_with("3.1."));
        assert!(doc["info"]["title"].is_string());
    }

    #[test]
    fn it_documents_exactly_the_endpoints_served() {
        let doc = document();
        let documented: BTreeSet<&str> = doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .map(String::as_str)
            .collect();
        let served: BTreeSet<&str> = ALL.iter().map(|e| e.path).collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn every_operation_documents_exactly_its_parameters_and_errors() {
        let doc = document();
        for endpoint in ALL {
            let operation = &doc["paths"][endpoint.path]["get"];
            assert!(operation.is_object(), "{}: no GET", endpoint.path);
            assert_eq!(
                doc["paths"][endpoint.path].as_object().map(|o| o.len()),
                Some(1),
                "{}: only GET is served",
                endpoint.path
            );
            let params: Vec<&Value> = operation["parameters"]
                .as_array()
                .map(|a| a.iter().map(|p| resolve(&doc, p)).collect())
                .unwrap_or_default();
            let query: BTreeSet<&str> = params
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().expect("name"))
                .collect();
            let expected: BTreeSet<&str> = endpoint.params.iter().copied().collect();
            assert_eq!(query, expected, "{}: query parameters", endpoint.path);
            let path: BTreeSet<&str> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().expect("name"))
                .collect();
            let in_template: BTreeSet<&str> = endpoint
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(path, in_template, "{}: path parameters", endpoint.path);
            for p in &params {
                assert!(
                    p["schema"].is_object(),
                    "{}: {p} has no schema",
                    endpoint.path
                );
                assert!(
                    p["description"].is_string(),
                    "{}: {p} has no description",
                    endpoint.path
                );
            }
            let responses = &operation["responses"];
            assert!(responses["200"].is_object(), "{}: no 200", endpoint.path);
            if !params.is_empty() && endpoint.path.starts_with("/api/") {
                assert!(responses["400"].is_object(), "{}: no 400", endpoint.path);
            }
            assert!(
                operation["operationId"].is_string(),
                "{}: no operationId",
                endpoint.path
            );
        }
    }

    #[test]
    fn data_operations_document_their_token_and_limits() {
        let doc = document();
        let open = [OPENAPI.path, HEALTHZ.path, READYZ.path];
        for endpoint in ALL {
            let operation = &doc["paths"][endpoint.path]["get"];
            let security = operation["security"].as_array().expect("security");
            let responses = &operation["responses"];
            if open.contains(&endpoint.path) {
                assert!(security.is_empty(), "{}: open", endpoint.path);
                continue;
            }
            let schemes: BTreeSet<&str> = security
                .iter()
                .filter_map(|s| s.as_object()?.keys().next().map(String::as_str))
                .collect();
            let expected: BTreeSet<&str> = if endpoint.path.starts_with("/udf/") {
                ["bearer", "queryToken"].into()
            } else {
                ["bearer"].into()
            };
            assert_eq!(schemes, expected, "{}: security", endpoint.path);
            for status in ["401", "403", "429"] {
                assert!(
                    responses[status].is_object(),
                    "{}: no {status}",
                    endpoint.path
                );
            }
        }
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["queryToken"]["name"], "token");
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        fn walk<'a>(value: &'a Value, refs: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        refs.push(r);
                    }
                    map.values().for_each(|v| walk(v, refs));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, refs)),
                _ => {}
            }
        }
        let mut refs = Vec::new();
        walk(&doc, &mut refs);
        assert!(!refs.is_empty());
        for reference in refs {
            let pointer = reference.strip_prefix('#').expect("local reference");
            assert!(
                doc.pointer(pointer).is_some(),
                "{reference} does not resolve"
            );
        }
    }
}
