//! Channels to P4Runtime servers, in clear text or with TLS / mutual TLS.

use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::{Error, Result};

/// TLS to the switch. With `cert` and `key` the controller authenticates
/// itself too (mutual TLS).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// PEM CA bundle that signed the switch's certificate.
    pub ca: PathBuf,
    /// PEM client certificate, for mutual TLS.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM client private key, for mutual TLS.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name to check the switch's certificate against (default: the
    /// address's host).
    #[serde(default)]
    pub domain: Option<String>,
}

fn read_pem(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })
}

impl TlsOptions {
    fn client_config(&self) -> Result<ClientTlsConfig> {
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(&self.ca)?));
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(read_pem(cert)?, read_pem(key)?));
            }
            (None, None) => {}
            _ => {
                return Err(Error::Tls(
                    "cert and key must be given together".to_string(),
                ));
            }
        }
        if let Some(domain) = &self.domain {
            tls = tls.domain_name(domain.clone());
        }
        Ok(tls)
    }
}

/// Connects to `address` (`host:port`, or a URI), with TLS when given.
pub async fn connect(
    address: &str,
    tls: Option<&TlsOptions>,
    timeout: Duration,
) -> Result<Channel> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("{scheme}://{address}")
    };
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|e| Error::Address {
            address: address.to_string(),
            reason: e.to_string(),
        })?
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        // TCP keepalive, not HTTP/2 pings: gRPC C++ servers (bmv2, Stratum)
        // answer pings more frequent than every 5 minutes on an idle stream
        // with GOAWAY "too_many_pings", which would break the StreamChannel.
        .tcp_keepalive(Some(Duration::from_secs(30)))
        // Whole-table reads stream megabytes: a window larger than HTTP/2's
        // 64 KiB default. (hyper's adaptive window measured 4x slower on a
        // 10,000-entry read; see benches/write_routes.rs.)
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20));
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.client_config()?)
            .map_err(|e| Error::Tls(e.to_string()))?;
    }
    endpoint.connect().await.map_err(|e| Error::Connect {
        address: uri,
        reason: error_chain(&e),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
