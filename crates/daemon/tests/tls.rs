//! HTTPS end to end: a self-signed certificate made here (rcgen), the
//! daemon serving it on 127.0.0.1, a rustls client that trusts exactly that
//! certificate, one that trusts another, and a plain-HTTP client.

use keel_daemon::tls::{TlsConfig, TlsError};
use keel_daemon::{start_with, Automation, DaemonConfig, FakeClock, ServeOptions};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const TOKEN: &str = "tls-test-token-0123456789";

struct Pem {
    cert_der: CertificateDer<'static>,
    config: TlsConfig,
}

fn self_signed(dir: &Path, stem: &str) -> Pem {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("rcgen makes a certificate");
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    Pem {
        cert_der: made.cert.der().clone(),
        config: TlsConfig { cert, key },
    }
}

fn client_trusting(cert: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// GET `path` over TLS; the status code, or the handshake's error.
async fn https_get(
    connector: &TlsConnector,
    addr: SocketAddr,
    path: &str,
) -> Result<u16, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await?;
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply).await;
    let text = String::from_utf8_lossy(&reply);
    Ok(text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let served = self_signed(dir.path(), "served");
    let other = self_signed(dir.path(), "other");
    let config = DaemonConfig {
        automation: Automation::Manual,
        ..DaemonConfig::default()
    };
    let clock = FakeClock::at(1_700_000_000_000);
    let service = config.build_service(Arc::new(clock)).unwrap();
    service.warm_up().unwrap();
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: TOKEN.into(),
        interval: None,
        tls: Some(served.config.server_config().unwrap()),
    };
    let running = start_with(Arc::new(service), options).await.unwrap();
    let addr = running.local_addr;

    // A client that never speaks does not hold up the others.
    let _silent = TcpStream::connect(addr).await.unwrap();

    let trusting = client_trusting(&served.cert_der);
    assert_eq!(https_get(&trusting, addr, "/healthz").await.unwrap(), 200);
    assert_eq!(
        https_get(&trusting, addr, "/api/v1/cluster").await.unwrap(),
        200
    );

    let wrong_ca = client_trusting(&other.cert_der);
    let refused = https_get(&wrong_ca, addr, "/healthz").await;
    assert!(refused.is_err(), "a client trusting another CA must fail");

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the server closes a non-TLS connection");
    assert!(!String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));

    running.shutdown().await;
}

#[test]
fn bad_pem_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = self_signed(dir.path(), "good");
    let other = self_signed(dir.path(), "other");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a pem file\n").unwrap();
    let missing = dir.path().join("missing.pem");

    let cases = [
        (
            missing.clone(),
            good.config.key.clone(),
            "tls.cert",
            "missing.pem",
        ),
        (
            empty.clone(),
            good.config.key.clone(),
            "tls.cert",
            "no CERTIFICATE",
        ),
        (
            good.config.cert.clone(),
            empty.clone(),
            "tls.key",
            "empty.pem",
        ),
    ];
    for (cert, key, field, text) in cases {
        let err = TlsConfig { cert, key }.server_config().unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, TlsError::Pem { .. }), "{message}");
        assert!(message.starts_with(field), "{message}");
        assert!(message.contains(text), "{message}");
    }
    let mismatched = TlsConfig {
        cert: good.config.cert.clone(),
        key: other.config.key.clone(),
    };
    let err = mismatched.server_config().unwrap_err();
    assert!(matches!(err, TlsError::Config { .. }), "{err}");
    assert!(err.to_string().contains("good.crt"), "{err}");
}
