//! The authentication server (HTTPS, `POST /login`) and the entry point's
//! one kept-open connection to it.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

/// The server's name in its certificate.
pub const SERVER_NAME: &str = "auth.login.example";

/// A self-signed certificate made at start: the server's identity and the
/// client's only trust anchor.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cert: CertificateDer<'static>,
    key: Arc<PrivatePkcs8KeyDer<'static>>,
}

impl Identity {
    pub fn generate() -> Result<Identity> {
        let ck = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
            .context("generating the server certificate")?;
        Ok(Identity {
            cert: ck.cert.der().clone(),
            key: Arc::new(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der())),
        })
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    pub fn server_config(&self) -> Result<rustls::ServerConfig> {
        let cfg = rustls::ServerConfig::builder_with_provider(Self::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.as_ref().clone_key()),
            )
            .context("server tls config")?;
        Ok(cfg)
    }

    pub fn client_config(&self) -> Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).context("trust anchor")?;
        Ok(
            rustls::ClientConfig::builder_with_provider(Self::provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

async fn login(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let ok = req.method() == hyper::Method::POST && req.uri().path() == "/login";
    let body = req.into_body().collect().await?.to_bytes();
    let resp = if ok && body.starts_with(b"{") {
        Response::new(Full::new(Bytes::from_static(
            br#"{"token":"7c1f0e2d9a5b4c3e","expires_in":3600}"#,
        )))
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"not found")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    };
    Ok(resp)
}

/// Serves `POST /login` over HTTPS on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, identity: Identity) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(identity.server_config()?));
    loop {
        let (tcp, _) = listener.accept().await.context("accept")?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tls), hyper::service::service_fn(login))
                .await;
        });
    }
}

/// A sink for the bulk transfer that congests the router: reads and drops.
pub async fn discard(listener: TcpListener) -> Result<()> {
    loop {
        let (mut tcp, _) = listener.accept().await.context("accept")?;
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut tcp, &mut tokio::io::sink()).await;
        });
    }
}

/// The entry point's kept-open connection: HTTP/1.1 over TLS, and a
/// duplicate of the socket's descriptor for the CLT socket API (the same
/// kernel socket, so `IPV6_HOPOPTS` set on it applies to the connection).
#[derive(Debug)]
pub struct Connection {
    pub sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    pub fd: OwnedFd,
    pub driver: tokio::task::JoinHandle<()>,
}

impl Connection {
    pub async fn open(addr: SocketAddr, identity: &Identity) -> Result<Connection> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let fd = tcp.as_fd().try_clone_to_owned()?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(identity.client_config()?));
        let tls = connector
            .connect(ServerName::try_from(SERVER_NAME)?, tcp)
            .await
            .context("tls handshake")?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("http handshake")?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection { sender, fd, driver })
    }

    /// One login: the request, the whole response; the status code.
    pub async fn login(&mut self, user: u64, traceparent: &str) -> Result<u16> {
        let body = format!(r#"{{"user":"user{user}","password":"correct horse battery staple"}}"#);
        let req = Request::post("/login")
            .header(hyper::header::HOST, SERVER_NAME)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header("traceparent", traceparent)
            .body(Full::new(Bytes::from(body)))?;
        self.sender.ready().await.context("connection closed")?;
        let resp = self.sender.send_request(req).await.context("request")?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.context("response body")?;
        Ok(status)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
