//! SMPP over TLS on its own port (`smpp_server.tls_listen`): the server's
//! certificate and key read once at start into a rustls acceptor, and the
//! handshake, bounded in time, before a connection becomes an ordinary
//! session. A peer that speaks plain SMPP to this port, or nothing, fails
//! the handshake and is dropped alone.

use super::ServerError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;

/// How long a connection may take to finish its handshake.
pub(super) const HANDSHAKE: Duration = Duration::from_secs(10);

/// The acceptor for `cert` (PEM chain, leaf first) and `key` (PEM).
pub(super) fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    let file_error = |path: &Path, e: &dyn std::fmt::Display| ServerError::Tls(format!("{}: {e}", path.display()));
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(cert, &e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| ServerError::Tls(format!("{} with {}: {e}", cert.display(), key.display())))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
