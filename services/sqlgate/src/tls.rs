//! TLS for both services: the server side (certificate and key files) and the trust a client
//! side places in one private CA, both with rustls and the `ring` provider.

use crate::config::{ConfigError, Env};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

/// Makes `ring` the process's rustls provider (once; later calls change nothing). Every TLS
/// user in the services (actix, reqwest, the MySQL driver) then agrees on it.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Reads the server identity from `cert_var` and `key_var`. Serving plain HTTP must be asked
/// for (`plain_var=true`, for a listener behind a TLS-terminating load balancer); without it,
/// both files are required.
pub fn identity_from_env(
    env: &dyn Env,
    cert_var: &str,
    key_var: &str,
    plain_var: &str,
) -> Result<Option<Identity>, ConfigError> {
    let plain = match env.get(plain_var).as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(ConfigError(format!(
                "{plain_var}={other:?} is not one of true, false"
            )))
        }
    };
    match (env.get(cert_var), env.get(key_var), plain) {
        (Some(_), Some(_), true) => Err(ConfigError(format!(
            "{plain_var}=true and {cert_var}/{key_var} are both set: choose one"
        ))),
        (None, None, true) => Ok(None),
        (Some(cert), Some(key), false) => Ok(Some(Identity {
            cert: cert.into(),
            key: key.into(),
        })),
        _ => Err(ConfigError(format!(
            "{cert_var} and {key_var} are required (PEM files), or {plain_var}=true to serve \
             plain HTTP behind a TLS-terminating load balancer"
        ))),
    }
}

/// A rustls server configuration for `identity`: TLS 1.2 and 1.3 only, the provider's modern
/// cipher suites, no client certificates.
pub fn server_config(identity: &Identity) -> Result<rustls::ServerConfig, String> {
    install_provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&identity.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| {
            format!(
                "cannot read the certificate {}: {e}",
                identity.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", identity.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&identity.key).map_err(|e| {
        format!(
            "cannot read the private key {}: {e}",
            identity.key.display()
        )
    })?;
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not form an identity: {e}"))
}

/// The PEM bytes of a CA file, checked to hold at least one certificate.
pub fn read_ca(path: &Path) -> Result<Vec<u8>, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("cannot read the CA {}: {e}", path.display()))?;
    let n = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad CA {}: {e}", path.display()))?
        .len();
    if n == 0 {
        return Err(format!("no certificate in the CA {}", path.display()));
    }
    Ok(pem)
}
