//! TLS and mutual TLS to the switch, against the in-process P4Runtime server
//! with certificates made for the test (rcgen).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use clt_controller::connect::{TlsOptions, connect};
use clt_controller::{Mastership, Session, SessionOptions};
use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    server: (String, String),
}

fn issue(names: &[&str], ca: &CertifiedIssuer<'_, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A CA, a switch certificate for `switch.test` and a controller client
/// certificate, written as PEM files.
fn pki() -> Pki {
    let ca = ca();
    let server = issue(&["switch.test"], &ca);
    let client = issue(&["controller.test"], &ca);
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    w("ca.pem", &ca.pem());
    w("client.pem", &client.0);
    w("client.key", &client.1);
    // A CA that signed nothing here.
    w("other-ca.pem", &self::ca().pem());
    Pki {
        ca_pem: ca.pem(),
        server,
        dir,
    }
}

fn server_tls(pki: &Pki, require_client: bool) -> ServerTlsConfig {
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(&pki.server.0, &pki.server.1));
    if require_client {
        tls.client_ca_root(Certificate::from_pem(&pki.ca_pem))
    } else {
        tls
    }
}

fn opts(dir: &Path, ca: &str, client: bool) -> TlsOptions {
    TlsOptions {
        ca: dir.join(ca),
        cert: client.then(|| dir.join("client.pem")),
        key: client.then(|| dir.join("client.key")),
        domain: Some("switch.test".into()),
    }
}

async fn open(addr: std::net::SocketAddr, tls: &TlsOptions) -> clt_controller::Result<Session> {
    let channel = connect(&addr.to_string(), Some(tls), Duration::from_secs(5)).await?;
    let mut o = SessionOptions::new(1, 1);
    o.arbitration_timeout = Duration::from_secs(5);
    Session::open(channel, o).await
}

#[tokio::test]
async fn mutual_tls_session_arbitrates_and_writes() {
    let pki = pki();
    let (sw, addr) = FakeSwitch::start_with(Some(server_tls(&pki, true))).await;
    let mut s = open(addr, &opts(pki.dir.path(), "ca.pem", true))
        .await
        .unwrap();
    assert_eq!(s.mastership(), Mastership::Primary);
    assert_eq!(s.capabilities().await.unwrap(), "1.4.0");
    s.write(vec![]).await.unwrap();
    assert_eq!(sw.state().write_calls, 1);
}

#[tokio::test]
async fn a_switch_requiring_client_certificates_refuses_a_controller_without_one() {
    let pki = pki();
    let (sw, addr) = FakeSwitch::start_with(Some(server_tls(&pki, true))).await;
    assert!(
        open(addr, &opts(pki.dir.path(), "ca.pem", false))
            .await
            .is_err()
    );
    assert_eq!(sw.state().primary, None, "no session was established");
}

#[tokio::test]
async fn a_switch_certificate_from_another_ca_is_refused() {
    let pki = pki();
    let (_sw, addr) = FakeSwitch::start_with(Some(server_tls(&pki, false))).await;
    let err = open(addr, &opts(pki.dir.path(), "other-ca.pem", false))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
    // Server-only TLS with the right CA works without a client certificate.
    let s = open(addr, &opts(pki.dir.path(), "ca.pem", false))
        .await
        .unwrap();
    assert_eq!(s.mastership(), Mastership::Primary);
}

#[tokio::test]
async fn half_a_client_identity_is_a_configuration_error() {
    let pki = pki();
    let mut o = opts(pki.dir.path(), "ca.pem", true);
    o.key = None;
    let err = connect("127.0.0.1:1", Some(&o), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cert and key must be given together"),
        "{err}"
    );
}
