//! The trust anchors a TLS connection verifies its server against.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use crate::TlsError;

/// The CA certificates (PEM) in `path`; a file without any is an error rather than a store
/// that trusts nothing and fails at the first handshake with a vaguer message.
pub(crate) fn ca_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::ReadCa {
        path: path.to_owned(),
        source,
    })?;
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| TlsError::BadCa {
            path: path.to_owned(),
            source: rustls::Error::General(e.to_string()),
        })?;
        store.add(cert).map_err(|source| TlsError::BadCa {
            path: path.to_owned(),
            source,
        })?;
    }
    if store.is_empty() {
        return Err(TlsError::EmptyCa {
            path: path.to_owned(),
        });
    }
    Ok(store)
}

/// The system's trust store (`SSL_CERT_FILE` / `SSL_CERT_DIR` or the distribution's bundle),
/// for servers with publicly trusted certificates (managed databases).
pub(crate) fn system() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(TlsError::SystemRoots(why));
    }
    Ok(store)
}
