//! PostgreSQL connection strings with libpq's TLS parameters, and the rustls connector they
//! need.
//!
//! tokio-postgres itself understands `sslmode=disable|prefer|require` and no CA file; the
//! modes that make TLS worth having, `verify-ca` and `verify-full`, and `sslrootcert` are
//! taken out of the string here and become the connector's settings, so the same URL works
//! with `psql` and with every stage.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::Socket;

use crate::{roots, TlsError};

/// What a connection string's `sslmode` asks for, with libpq's names.
///
/// Unlike libpq, a string without `sslmode` means [`PgSslMode::Disable`] (libpq's default is
/// `prefer`): TLS is asked for explicitly, and when it is asked for, the server's chain is
/// always verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgSslMode {
    /// Plain TCP (also when `sslmode` is absent).
    Disable,
    /// TLS if the server offers it, its chain verified (not its name); plain otherwise.
    Prefer,
    /// TLS, the chain verified but not the name (libpq verifies nothing here unless it
    /// has a root certificate; strikeflow always has one: `sslrootcert` or the system's).
    Require,
    /// TLS, the chain verified against `sslrootcert`, the host name not checked.
    VerifyCa,
    /// TLS, the chain verified and the certificate issued for the host connected to.
    VerifyFull,
}

impl PgSslMode {
    fn parse(value: &str) -> Result<Self, TlsError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(TlsError::Unsupported {
                    param: "sslmode",
                    value: other.to_owned(),
                    expected: "disable, prefer, require, verify-ca or verify-full",
                })
            }
        })
    }
}

/// A parsed connection string: tokio-postgres's settings and the TLS connector to connect
/// with (`config.connect(tls)`, or a pool's manager).
#[derive(Clone)]
pub struct PgTarget {
    /// Everything but the TLS parameters; `ssl_mode` is set from [`PgTarget::ssl_mode`].
    pub config: tokio_postgres::Config,
    /// The connector; never used when `ssl_mode` is [`PgSslMode::Disable`].
    pub tls: PgTls,
    /// What the string asked for.
    pub ssl_mode: PgSslMode,
}

impl PgTarget {
    /// Connects with these settings (over TLS when `sslmode` asks for it); the caller
    /// spawns the returned connection, as with `tokio_postgres::connect`.
    pub async fn connect(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<Socket, PgTlsStream>,
        ),
        tokio_postgres::Error,
    > {
        self.config.connect(self.tls.clone()).await
    }
}

/// Parses a connection string (URL or libpq's `key=value` form) with its `sslmode` and
/// `sslrootcert` (a PEM file, or `system` for the system's trust store; the system's is also
/// used when none is given), reading the CA file now so a missing or empty one is an error
/// before anything connects.
pub fn postgres(url: &str) -> Result<PgTarget, TlsError> {
    let (rest, ssl_mode, root_cert) = take_tls_params(url)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(TlsError::Postgres)?;
    detect_dead_peers(&mut config, &rest);
    let ssl_mode = ssl_mode.unwrap_or(PgSslMode::Disable);
    config.ssl_mode(match ssl_mode {
        PgSslMode::Disable => SslMode::Disable,
        PgSslMode::Prefer => SslMode::Prefer,
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => SslMode::Require,
    });
    let tls = match ssl_mode {
        PgSslMode::Disable => PgTls { config: None },
        mode => {
            let roots = match root_cert.as_deref() {
                None | Some("system") => roots::system()?,
                Some(path) => roots::ca_file(Path::new(path))?,
            };
            PgTls {
                config: Some(client_config(roots, mode == PgSslMode::VerifyFull)?),
            }
        }
    };
    Ok(PgTarget {
        config,
        tls,
        ssl_mode,
    })
}

/// TCP keepalive idle time, probe interval and probes, and the TCP user timeout, for
/// connection strings that do not set their own. The defaults (2 hours of idle, the
/// kernel's ~15 minutes of retransmissions) let a connection whose server vanished without
/// a reset — a network partition, a black-holed route, a VM that froze — hang a stage that
/// long; with these a dead peer is noticed within about a minute whether the stage was
/// waiting for an answer (keepalives) or sending (user timeout), and the stage reconnects.
/// A server that is merely slow is not affected: its kernel still acknowledges. (In the
/// connection string, tokio-postgres reads `tcp_user_timeout` in seconds; libpq in
/// milliseconds.)
const KEEPALIVES_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVES_RETRIES: u32 = 3;
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// Applies the dead-peer defaults above to what `url` leaves unset.
fn detect_dead_peers(config: &mut tokio_postgres::Config, url: &str) {
    if !url.contains("keepalives_idle") {
        config.keepalives_idle(KEEPALIVES_IDLE);
    }
    if !url.contains("keepalives_interval") {
        config.keepalives_interval(KEEPALIVES_INTERVAL);
    }
    if !url.contains("keepalives_retries") {
        config.keepalives_retries(KEEPALIVES_RETRIES);
    }
    if !url.contains("tcp_user_timeout") {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
}

/// The string without `sslmode` and `sslrootcert`, and their values.
type Split = (String, Option<PgSslMode>, Option<String>);

fn take_tls_params(url: &str) -> Result<Split, TlsError> {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: String| -> Result<bool, TlsError> {
        match key {
            "sslmode" => mode = Some(PgSslMode::parse(&value)?),
            "sslrootcert" => root = Some(value),
            _ => return Ok(false),
        }
        Ok(true)
    };
    if url.contains("://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), None, None));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key, percent_decode(value))? {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, mode, root));
    }
    // libpq's key=value form; TLS values never need quoting.
    let mut kept = Vec::new();
    for word in url.split_whitespace() {
        let taken = match word.split_once('=') {
            Some((key, value)) => take(key, value.to_owned())?,
            None => false,
        };
        if !taken {
            kept.push(word);
        }
    }
    Ok((kept.join(" "), mode, root))
}

/// `%XX` escapes of a URL query value (a path may be escaped, `/` as `%2F`).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// rustls with ring (named, not left to a process-wide default), TLS 1.2 and 1.3, no client
/// certificate, verifying the chain against `roots` and, if `check_name`, the host name.
fn client_config(roots: RootCertStore, check_name: bool) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let config = if check_name {
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// `verify-ca`: the full WebPKI verification, except that a certificate issued for another
/// name is accepted. rustls checks the name only after the chain, so every other failure
/// (unknown issuer, expired, bad signature) still fails.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The connector tokio-postgres (and deadpool) calls when the server agrees to TLS.
#[derive(Clone)]
pub struct PgTls {
    config: Option<Arc<ClientConfig>>,
}

impl MakeTlsConnect<Socket> for PgTls {
    type Stream = PgTlsStream;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    /// tokio-postgres asks for a connector before every connection, whatever `sslmode`
    /// says, and uses it only if TLS is negotiated; so a connection without TLS must not
    /// fail here, only a handshake that was never configured (see [`PgTlsConnect`]).
    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, io::Error> {
        let handshake = match self.config.clone() {
            None => Err("TLS was not asked for (sslmode is disable or absent)".to_owned()),
            Some(config) => ServerName::try_from(domain.to_owned())
                .map(|name| (tokio_rustls::TlsConnector::from(config), name))
                .map_err(|e| format!("{domain:?} is not a TLS server name: {e}")),
        };
        Ok(PgTlsConnect { handshake })
    }
}

/// One handshake with one server (see [`PgTls`]), or why there can be none, reported only
/// if the server is asked for TLS.
pub struct PgTlsConnect {
    handshake: Result<(tokio_rustls::TlsConnector, ServerName<'static>), String>,
}

impl TlsConnect<Socket> for PgTlsConnect {
    type Stream = PgTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let (connector, name) = self.handshake.map_err(io::Error::other)?;
            let stream = connector.connect(name, stream).await?;
            Ok(PgTlsStream(Box::new(stream)))
        })
    }
}

/// An established TLS session to PostgreSQL.
pub struct PgTlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl TlsStream for PgTlsStream {
    /// No channel binding: SCRAM then runs without `-PLUS`, which every server accepts
    /// (unless it is told to require binding), while a binding computed with the wrong hash
    /// for the server's certificate would fail the login.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for PgTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PgTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_urls_and_key_value_strings() {
        let (rest, mode, root) = take_tls_params(
            "postgres://u:p@h:5432/db?application_name=x&sslmode=verify-full&sslrootcert=%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@h:5432/db?application_name=x");
        assert_eq!(mode, Some(PgSslMode::VerifyFull));
        assert_eq!(root.as_deref(), Some("/ca.pem"));

        let (rest, mode, root) = take_tls_params("host=h sslmode=verify-ca user=u").unwrap();
        assert_eq!(rest, "host=h user=u");
        assert_eq!(mode, Some(PgSslMode::VerifyCa));
        assert_eq!(root, None);
    }

    #[test]
    fn dead_peers_are_noticed_within_a_minute_unless_the_string_says_otherwise() {
        let target = postgres("postgres://u@h/db").unwrap();
        assert_eq!(target.config.get_keepalives_idle(), KEEPALIVES_IDLE);
        assert_eq!(
            target.config.get_keepalives_interval(),
            Some(KEEPALIVES_INTERVAL)
        );
        assert_eq!(
            target.config.get_keepalives_retries(),
            Some(KEEPALIVES_RETRIES)
        );
        assert_eq!(
            target.config.get_tcp_user_timeout(),
            Some(&TCP_USER_TIMEOUT)
        );
        let own = postgres("postgres://u@h/db?keepalives_idle=600&tcp_user_timeout=5").unwrap();
        assert_eq!(own.config.get_keepalives_idle(), Duration::from_secs(600));
        assert_eq!(
            own.config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(5))
        );
        assert_eq!(
            own.config.get_keepalives_retries(),
            Some(KEEPALIVES_RETRIES)
        );
    }

    #[test]
    fn no_sslmode_means_plain_and_an_unknown_one_is_named() {
        let target = postgres("postgres://u@h/db").unwrap();
        assert_eq!(target.ssl_mode, PgSslMode::Disable);
        assert_eq!(target.config.get_ssl_mode(), SslMode::Disable);
        let err = postgres("postgres://u@h/db?sslmode=verify").err().unwrap();
        assert!(err.to_string().contains("sslmode=verify"), "{err}");
    }

    #[test]
    fn a_missing_ca_file_is_an_error_before_connecting() {
        let err = postgres("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
