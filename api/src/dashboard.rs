//! The dashboard: the static files of `api/static/`, compiled into the binary and served at
//! `/` (the page) and `/dashboard/…` (its modules, style sheet and the vendored chart
//! library), so the stage needs no file system, CDN or build step at run time.
//!
//! The page itself holds no data: it signs in to push's WebSocket with a token pasted by
//! the user and reads chart history from this API's `/api/v1` when that token is accepted
//! there (`docs/dashboard.md`). These routes are public by design (the files hold no data and
//! no secret): authentication layered over the data routes must not wrap them.
//!
//! Caching: every response carries a strong `ETag` (a hash of the file, computed once) and
//! answers `If-None-Match` with 304. The page and the dashboard's own modules are
//! `Cache-Control: no-cache` (always revalidated, so a new binary's files are seen at once);
//! the vendored library lives under a versioned directory and is `immutable` for a year.

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::Path;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::Problem;

/// One served file.
#[derive(Debug)]
struct Asset {
    /// Path below `api/static/` (and below `/dashboard/` in the URL).
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";
const TEXT: &str = "text/plain; charset=utf-8";
const MARKDOWN: &str = "text/markdown; charset=utf-8";

macro_rules! assets {
    ($($path:literal => $type:expr,)*) => {
        &[$(Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../static/", $path)),
        },)*]
    };
}

/// Every file of `api/static/` (a test holds this table to the directory).
static ASSETS: &[Asset] = assets! {
    "index.html" => HTML,
    "app.js" => JS,
    "chain.js" => JS,
    "charts.js" => JS,
    "format.js" => JS,
    "push.js" => JS,
    "style.css" => CSS,
    "favicon.svg" => SVG,
    "vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.mjs" => JS,
    "vendor/lightweight-charts-5.2.1/LICENSE" => TEXT,
    "vendor/lightweight-charts-5.2.1/NOTICE" => TEXT,
    "vendor/lightweight-charts-5.2.1/VERSION.md" => MARKDOWN,
};

/// Files under this prefix have the version in their path, so they never change.
const IMMUTABLE_PREFIX: &str = "vendor/";
const INDEX: &str = "index.html";

/// The page's policy: its own scripts and styles only (the charts set inline styles), and
/// WebSockets to push, which listens on another port or host.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self' ws: wss:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `/` and `/dashboard/{*path}`. Stateless, so it merges into a router of any state.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/dashboard/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    match find(INDEX) {
        Some(i) => respond(i, &headers),
        None => Problem::no_route("/").into_response(),
    }
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match find(&path) {
        Some(i) => respond(i, &headers),
        None => Problem::no_route(&format!("/dashboard/{path}")).into_response(),
    }
}

fn find(path: &str) -> Option<usize> {
    ASSETS.iter().position(|a| a.path == path)
}

/// FNV-1a, 64 bits: a cheap content hash for the entity tag (not a security boundary).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The quoted strong entity tag of each asset, in table order.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{:016x}-{:x}\"", fnv1a(a.body), a.body.len()))
            .collect()
    })
}

/// Whether `If-None-Match` names the current entity (weak comparison, as RFC 9110 wants
/// for it; `*` matches any).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

fn respond(i: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    let cache = if asset.path.starts_with(IMMUTABLE_PREFIX) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let (status, body) = if not_modified(headers, etag) {
        (StatusCode::NOT_MODIFIED, Body::empty())
    } else {
        (StatusCode::OK, Body::from(asset.body))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    if status == StatusCode::OK {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(value) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, value);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.path == INDEX {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path as FsPath, PathBuf};

    use super::*;

    fn static_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("static")
    }

    fn files_under(dir: &FsPath, base: &FsPath, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("api/static is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                files_under(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).expect("below static/");
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    fn text(path: &str) -> &'static str {
        let asset = &ASSETS[find(path).unwrap_or_else(|| panic!("{path} is served"))];
        std::str::from_utf8(asset.body).expect("UTF-8")
    }

    #[test]
    fn every_static_file_is_served_and_nothing_else() {
        let mut on_disk = BTreeSet::new();
        files_under(&static_dir(), &static_dir(), &mut on_disk);
        let served: BTreeSet<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        assert_eq!(served, on_disk);
    }

    #[test]
    fn content_types_follow_extensions() {
        for asset in ASSETS {
            let ext = asset.path.rsplit_once('.').map_or("", |(_, e)| e);
            let want = match ext {
                "html" => HTML,
                "js" | "mjs" => JS,
                "css" => CSS,
                "svg" => SVG,
                "md" => MARKDOWN,
                _ => TEXT,
            };
            assert_eq!(asset.content_type, want, "{}", asset.path);
        }
    }

    /// Every `/dashboard/…` reference of the page and every relative import of a module
    /// names a served file, so the page cannot load with a missing piece.
    #[test]
    fn every_reference_resolves() {
        let page = text(INDEX);
        let mut refs = 0;
        for part in page.split("\"/dashboard/").skip(1) {
            let path = part.split('"').next().unwrap_or_default();
            assert!(
                find(path).is_some(),
                "index.html refers to /dashboard/{path}"
            );
            refs += 1;
        }
        assert!(
            refs >= 4,
            "the page loads its script, style, icon and notice"
        );
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let dir = asset.path.rsplit_once('/').map_or("", |(d, _)| d);
            let source = text(asset.path);
            for part in source.split("from \"./").skip(1) {
                let rel = part.split('"').next().unwrap_or_default();
                let path = if dir.is_empty() {
                    rel.to_owned()
                } else {
                    format!("{dir}/{rel}")
                };
                assert!(find(&path).is_some(), "{} imports ./{rel}", asset.path);
            }
        }
    }

    /// Nothing is loaded from another origin: the dashboard works offline.
    #[test]
    fn nothing_comes_from_a_cdn() {
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let source = text(asset.path);
            for needle in ["import(\"http", "from \"http", "from \"//", "src=\"http"] {
                assert!(!source.contains(needle), "{} has {needle}", asset.path);
            }
        }
        let page = text(INDEX);
        for needle in ["src=\"http", "src=\"//", "rel=\"stylesheet\" href=\"http"] {
            assert!(!page.contains(needle), "index.html has {needle}");
        }
    }

    async fn get(path: &str, headers: HeaderMap) -> Response {
        if path == "/" {
            index(headers).await
        } else {
            let rest = path.strip_prefix("/dashboard/").expect("a dashboard path");
            asset(Path(rest.to_owned()), headers).await
        }
    }

    #[tokio::test]
    async fn files_are_served_with_type_cache_policy_and_etag() {
        let page = get("/", HeaderMap::new()).await;
        assert_eq!(page.status(), StatusCode::OK);
        let h = page.headers();
        assert_eq!(h[header::CONTENT_TYPE], HTML);
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        assert!(h[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("connect-src 'self' ws: wss:"));
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let body = axum::body::to_bytes(page.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&body[..], text(INDEX).as_bytes());

        let lib = get(
            "/dashboard/vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.mjs",
            HeaderMap::new(),
        )
        .await;
        assert_eq!(lib.status(), StatusCode::OK);
        assert_eq!(lib.headers()[header::CONTENT_TYPE], JS);
        assert_eq!(
            lib.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert!(lib.headers().get(header::CONTENT_SECURITY_POLICY).is_none());

        let css = get("/dashboard/style.css", HeaderMap::new()).await;
        assert_eq!(css.headers()[header::CONTENT_TYPE], CSS);
        assert_eq!(css.headers()[header::CACHE_CONTROL], "no-cache");
    }

    #[tokio::test]
    async fn a_current_etag_is_answered_304_without_a_body() {
        let first = get("/dashboard/app.js", HeaderMap::new()).await;
        let etag = first.headers()[header::ETAG].clone();
        assert!(etag.to_str().unwrap().starts_with('"'));

        for presented in [
            etag.to_str().unwrap().to_owned(),
            format!("\"other\", W/{}", etag.to_str().unwrap()),
            "*".to_owned(),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, presented.parse().unwrap());
            let again = get("/dashboard/app.js", headers).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{presented}");
            assert_eq!(again.headers()[header::ETAG], etag);
            let body = axum::body::to_bytes(again.into_body(), usize::MAX)
                .await
                .unwrap();
            assert!(body.is_empty());
        }

        let mut stale = HeaderMap::new();
        stale.insert(header::IF_NONE_MATCH, "\"0-0\"".parse().unwrap());
        assert_eq!(
            get("/dashboard/app.js", stale).await.status(),
            StatusCode::OK
        );
        // Each file has its own tag.
        let tags: BTreeSet<&String> = etags().iter().collect();
        assert_eq!(tags.len(), ASSETS.len());
    }

    #[tokio::test]
    async fn an_unknown_file_is_a_json_404() {
        for path in [
            "/dashboard/nope.js",
            "/dashboard/../Cargo.toml",
            "/dashboard/vendor/",
        ] {
            let response = get(path, HeaderMap::new()).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
            assert_eq!(json["error"]["code"], "not_found", "{path}");
        }
    }
}
