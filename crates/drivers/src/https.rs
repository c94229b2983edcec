//! How Keel trusts a server it talks HTTPS to (a Proxmox VE node, or a
//! `keel serve` daemon for `keel agent`): the system's CA store (default),
//! a CA file, a pinned SHA-256 fingerprint of the server's own certificate
//! (self-signed servers), or nothing at all (`insecure`). Handshake
//! signatures are verified in every case, so a pinned or insecure
//! connection still proves the peer holds the certificate's key.
//!
//! [`Trust`] and [`parse_fingerprint`] are always built; the TLS client
//! itself needs the cargo feature `https` (rustls with the ring provider).

use std::path::PathBuf;

/// Which server certificates to trust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// SHA-256 fingerprint of the server's certificate (hex, colons
    /// allowed): that certificate and no other.
    pub fingerprint: Option<String>,
    /// PEM file of CA certificates (instead of the system's).
    pub ca_file: Option<PathBuf>,
    /// Trust any certificate (testing only).
    pub insecure: bool,
}

/// The 32 bytes of a SHA-256 fingerprint written as hex (colons, spaces
/// and case ignored); `None` if it is not one.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = text.bytes().filter(|b| !matches!(b, b':' | b' ')).collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// An error and its causes on one line, each cause once (reqwest's
/// Display hides the cause, which is where TLS and connection failures
/// say what happened).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(feature = "https")]
pub use tls::{blocking_client, client_config, colon_hex};

/// The blocking HTTP client [`blocking_client`] returns (reqwest's).
#[cfg(feature = "https")]
pub use reqwest::blocking::Client as BlockingClient;

#[cfg(feature = "https")]
mod tls {
    use super::{parse_fingerprint, Trust};
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
    use std::sync::Arc;
    use std::time::Duration;

    /// The TLS client config for `trust` (ring provider, TLS 1.2 and 1.3);
    /// `section` names the config section in messages (`proxmox`, `daemon`).
    pub fn client_config(trust: &Trust, section: &str) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let verifier: Arc<dyn ServerCertVerifier> = if let Some(text) = &trust.fingerprint {
            let sha256 = parse_fingerprint(text)
                .ok_or_else(|| format!("{section}.fingerprint = {text}: expected 64 hex digits"))?;
            Arc::new(Pinned {
                sha256: Some(sha256),
                provider,
                section: section.to_string(),
            })
        } else if let Some(path) = &trust.ca_file {
            let bad =
                |e: &dyn std::fmt::Display| format!("{section}.ca_file = {}: {e}", path.display());
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
            for cert in certs {
                let cert = cert.map_err(|e| bad(&e))?;
                roots.add(cert).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(bad(&"no PEM certificate in it"));
            }
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(&e))?
        } else if trust.insecure {
            Arc::new(Pinned {
                sha256: None,
                provider,
                section: section.to_string(),
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

    /// A blocking HTTP(S) client trusting as `trust` says, with `timeout` per
    /// request (10 s at most to connect).
    pub fn blocking_client(
        trust: &Trust,
        section: &str,
        timeout: Duration,
    ) -> Result<reqwest::blocking::Client, String> {
        let tls = client_config(trust, section)?;
        reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| super::error_chain(&e))
    }

    /// Hex with colons, as `pvenode cert info` prints fingerprints.
    pub fn colon_hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The server certificate's SHA-256 differs from the pinned one.
    #[derive(thiserror::Error)]
    #[error("certificate fingerprint mismatch: the server presented SHA-256 {got}, {section}.fingerprint pins {expected}")]
    struct FingerprintMismatch {
        got: String,
        expected: String,
        section: String,
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
        section: String,
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
                    section: self.section.clone(),
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
}
