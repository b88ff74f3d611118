//! Redis clients from a URL, `rediss://` verified against a CA file of the URL's own.

use std::path::Path;

use redis::{Client, TlsCertificates};

use crate::TlsError;

/// A Redis client for `url`. `rediss://` connects over TLS (rustls), verifying the server
/// against the PEM file of the URL's `sslrootcert` parameter (the same name as in
/// PostgreSQL URLs), or the system's trust store without it. Does not connect; fails when
/// the URL or the CA file is unusable, and when `sslrootcert` is given to a plain
/// `redis://` URL, where it would be ignored.
pub fn redis_client(url: &str) -> Result<Client, TlsError> {
    let (rest, root_cert) = take_root_cert(url);
    let Some(path) = root_cert else {
        return Client::open(rest).map_err(TlsError::Redis);
    };
    if !rest.starts_with("rediss://") {
        return Err(TlsError::Unsupported {
            param: "sslrootcert",
            value: path,
            expected: "a rediss:// URL (TLS); plain redis:// never uses a CA",
        });
    }
    let pem = std::fs::read(Path::new(&path)).map_err(|source| TlsError::ReadCa {
        path: path.clone().into(),
        source,
    })?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(TlsError::EmptyCa { path: path.into() });
    }
    Client::build_with_tls(
        rest,
        TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        },
    )
    .map_err(TlsError::Redis)
}

/// The URL without its `sslrootcert` query parameter, and that parameter.
fn take_root_cert(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut root = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("sslrootcert=") {
            Some(path) => {
                root = Some(path.to_owned());
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_parameter_is_taken_out_and_refused_on_plain_urls() {
        assert_eq!(
            take_root_cert("rediss://h:1/?sslrootcert=/ca.pem&protocol=resp3"),
            (
                "rediss://h:1/?protocol=resp3".to_owned(),
                Some("/ca.pem".to_owned())
            )
        );
        assert_eq!(
            take_root_cert("redis://h:1"),
            ("redis://h:1".to_owned(), None)
        );
        let err = redis_client("redis://h:1/?sslrootcert=/ca.pem")
            .err()
            .unwrap();
        assert!(err.to_string().contains("rediss://"), "{err}");
        let err = redis_client("rediss://h:1/?sslrootcert=/nonexistent.pem")
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent.pem"), "{err}");
    }
}
