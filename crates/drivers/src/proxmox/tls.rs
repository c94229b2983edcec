//! How the driver trusts a Proxmox VE node's certificate: the system's CA
//! store (default), a CA file, a pinned SHA-256 fingerprint of the node's
//! own certificate (self-signed clusters), or nothing at all (`insecure`).
//! Handshake signatures are verified in every case, so a pinned or
//! insecure connection still proves the peer holds the certificate's key.

use super::config::{parse_fingerprint, ProxmoxConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use std::sync::Arc;

/// The TLS client config for `config` (ring provider, TLS 1.2 and 1.3).
pub(crate) fn client_config(config: &ProxmoxConfig) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if let Some(text) = &config.fingerprint {
        let sha256 = parse_fingerprint(text)
            .ok_or_else(|| format!("proxmox.fingerprint = {text}: expected 64 hex digits"))?;
        Arc::new(Pinned {
            sha256: Some(sha256),
            provider,
        })
    } else if let Some(path) = &config.ca_file {
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("proxmox.ca_file = {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("proxmox.ca_file = {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("proxmox.ca_file = {}: {e}", path.display()))?;
        }
        if roots.is_empty() {
            return Err(format!(
                "proxmox.ca_file = {}: no PEM certificate in it",
                path.display()
            ));
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("proxmox.ca_file = {}: {e}", path.display()))?
    } else if config.insecure {
        Arc::new(Pinned {
            sha256: None,
            provider,
        })
    } else {
        Arc::new(
            rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| format!("loading the system's CA certificates: {e}"))?,
        )
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Hex with colons, as `pvenode cert info` prints fingerprints.
pub(crate) fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The server certificate's SHA-256 differs from the pinned one.
#[derive(thiserror::Error)]
#[error("certificate fingerprint mismatch: the server presented SHA-256 {got}, proxmox.fingerprint pins {expected}")]
struct FingerprintMismatch {
    got: String,
    expected: String,
}

// rustls prints the cause of an invalid certificate with `Debug`: make
// that the readable message too.
impl std::fmt::Debug for FingerprintMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Trusts exactly one certificate (by SHA-256), or any (`sha256: None`,
/// the insecure switch). Host names are not checked: a pinned certificate
/// is the identity.
#[derive(Debug)]
struct Pinned {
    sha256: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(expected) = self.sha256 else {
            return Ok(ServerCertVerified::assertion());
        };
        let got = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        if got.as_ref() == expected {
            Ok(ServerCertVerified::assertion())
        } else {
            let mismatch = FingerprintMismatch {
                got: colon_hex(got.as_ref()),
                expected: colon_hex(&expected),
            };
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(mismatch)),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
