//! The MCP role: wiring only. Binds `mcpAdapter.port` (TLS and client certificates as the
//! gateway's listener, from `gateway.tls`), reads each connection's client identity, and hands
//! every request to `crate::mcp`, which owns the protocol.

use std::sync::Arc;

use tokio::net::TcpListener;

use super::gateway::{client_identity, tls};
use super::ServeError;
use crate::admission::Admission;
use crate::config::Config;
use crate::http::{self, Shutdown};
use crate::mcp::McpAdapter;

pub struct McpServer {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    client_trust: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    adapter: Arc<McpAdapter>,
}

impl McpServer {
    pub async fn prepare(
        config: &Config,
        admission: Arc<Admission>,
    ) -> Result<McpServer, ServeError> {
        let adapter = McpAdapter::new(&config.mcp_adapter, &config.data_dir, admission)
            .map_err(|e| ServeError::Config(e.to_string()))?;
        let (tls, client_trust) =
            match tls::acceptor(&config.gateway).map_err(|e| ServeError::Config(e.to_string()))? {
                Some(t) => (Some(t.acceptor), t.client_trust),
                None => (None, None),
            };
        let addr = config.mcp_addr();
        let listener = http::bind(addr).await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut servers = adapter.server_names();
        servers.sort_unstable();
        tracing::info!(address = %addr, scheme, servers = ?servers, "mcp adapter listening (/mcp/{{server}}, /health, /ready, /metrics)");
        Ok(McpServer {
            listener,
            tls,
            client_trust,
            adapter: Arc::new(adapter),
        })
    }

    pub async fn run(self, shutdown: Shutdown) -> Result<(), std::io::Error> {
        let (adapter, trust) = (self.adapter, self.client_trust);
        http::serve(
            self.listener,
            self.tls,
            move |req, conn| {
                let adapter = Arc::clone(&adapter);
                let identity = client_identity(trust.as_deref(), &conn);
                async move { crate::mcp::handle(adapter, req, identity).await }
            },
            shutdown,
        )
        .await;
        Ok(())
    }
}
