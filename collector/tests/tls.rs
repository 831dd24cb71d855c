//! TLS on the gRPC listeners when given a certificate. The certificate is
//! made with the `openssl` command; the test skips without it.

// Test helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use clt_collector::server;
use clt_proto::ioam_api::IoamTrace;
use clt_proto::ioam_api::ioam_service_client::IoamServiceClient;
use common::loopback_config;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_listeners_speak_tls_with_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match made {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return eprintln!(
                "skipped: openssl failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Err(e) => return eprintln!("skipped: needs the openssl command: {e}"),
    }
    let mut cfg = loopback_config(None, Some(&dir.path().join("s.redb")));
    cfg.tls_cert = Some(cert.clone());
    cfg.tls_key = Some(key);
    let collector = server::start(cfg).await.unwrap();

    let ca = Certificate::from_pem(std::fs::read(&cert).unwrap());
    let ch = Endpoint::from_shared(format!("https://localhost:{}", collector.ioam.port()))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(ca)
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = IoamServiceClient::new(ch);
    c.report(tokio_stream::iter(vec![IoamTrace {
        namespace_id: 1,
        ..IoamTrace::default()
    }]))
    .await
    .unwrap();
    assert_eq!(collector.core.join_stats().traces_received, 1);

    // Plain text is refused on the same port.
    let plain = IoamServiceClient::connect(format!("http://{}", collector.ioam)).await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut c) => c
            .report(tokio_stream::iter(vec![IoamTrace::default()]))
            .await
            .is_err(),
    };
    assert!(refused, "a plain-text client must not get through");
    assert_eq!(collector.core.join_stats().traces_received, 1);
    collector.shutdown(Duration::from_secs(1)).await;
}
