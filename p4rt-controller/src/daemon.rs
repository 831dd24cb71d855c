//! The daemon: every configured device managed concurrently, one forwarder
//! to the collector, one metrics endpoint.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::config::Config;
use crate::device::{Device, DeviceSpec};
use crate::error::Result;
use crate::forward::Forwarder;
use crate::inputs::DeviceInputs;
use crate::metrics::Metrics;

/// A running daemon; dropping it does not stop it, [`Daemon::shutdown`] does.
#[derive(Debug)]
pub struct Daemon {
    pub devices: Vec<Arc<Device>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl Daemon {
    /// Loads every device's inputs (failing before touching any device when
    /// one is invalid), then starts managing them.
    pub async fn start(config: &Config) -> Result<Daemon> {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut tasks = Vec::new();
        let forwarder = match &config.collector {
            Some(c) => {
                let (f, task) = Forwarder::spawn(&c.address, c.buffer, metrics.clone())?;
                tasks.push(task);
                Some(f)
            }
            None => None,
        };
        let mut devices = Vec::new();
        for d in &config.devices {
            let inputs = DeviceInputs::load(&d.inputs)?;
            let device = Device::new(
                DeviceSpec::from_config(d),
                inputs,
                forwarder.clone(),
                metrics.clone(),
            )?;
            devices.push(Arc::new(device));
        }
        let metrics_addr = match &config.metrics {
            Some(m) => {
                let (addr, task) = crate::metrics::serve(m.listen, registry).await?;
                tracing::info!(%addr, "metrics at http://{addr}/metrics");
                tasks.push(task);
                Some(addr)
            }
            None => None,
        };
        let (shutdown, rx) = watch::channel(false);
        for device in &devices {
            let device = device.clone();
            let rx = rx.clone();
            tasks.push(tokio::spawn(async move { device.run(rx).await }));
        }
        Ok(Daemon {
            devices,
            shutdown,
            tasks,
            metrics_addr,
        })
    }

    /// Stops every device manager and waits for them.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}
