//! Connecting the CLI's client commands to a server.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::api::pb::admin_client::AdminClient;
use crate::api::pb::alerts_client::AlertsClient;
use crate::api::pb::events_client::EventsClient;
use crate::api::pb::number_check_client::NumberCheckClient;

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address of a running numguard server (https://... for TLS).
    #[arg(
        long,
        env = "NUMGUARD_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// API key, sent as `authorization: Bearer <key>`.
    #[arg(long, env = "NUMGUARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM certificate of the CA that signed the server's TLS certificate (for https://
    /// servers whose certificate is not signed by a public CA).
    #[arg(long, env = "NUMGUARD_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// Adds the bearer key to every request.
#[derive(Clone)]
pub struct BearerKey(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, BearerKey>;

impl ServerArgs {
    pub fn local(addr: std::net::SocketAddr, api_key: Option<String>) -> ServerArgs {
        ServerArgs {
            server: format!("http://{addr}"),
            api_key,
            ca_cert: None,
        }
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let url = if self.server.contains("://") {
            self.server.clone()
        } else {
            format!("http://{}", self.server)
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .with_context(|| format!("{url:?} is not a server address"))?;
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.ca_cert {
                let pem =
                    std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(tls)?;
        }
        endpoint.connect().await.map_err(|e| connect_error(&url, e))
    }

    fn bearer(&self) -> anyhow::Result<BearerKey> {
        let value = match &self.api_key {
            Some(key) => Some(
                format!("Bearer {}", key.trim())
                    .parse()
                    .context("the API key has characters that cannot be sent")?,
            ),
            None => None,
        };
        Ok(BearerKey(value))
    }

    pub async fn check(&self) -> anyhow::Result<NumberCheckClient<Authed>> {
        Ok(NumberCheckClient::with_interceptor(
            self.channel().await?,
            self.bearer()?,
        ))
    }

    pub async fn events(&self) -> anyhow::Result<EventsClient<Authed>> {
        Ok(EventsClient::with_interceptor(
            self.channel().await?,
            self.bearer()?,
        ))
    }

    pub async fn alerts(&self) -> anyhow::Result<AlertsClient<Authed>> {
        Ok(AlertsClient::with_interceptor(
            self.channel().await?,
            self.bearer()?,
        ))
    }

    pub async fn admin(&self) -> anyhow::Result<AdminClient<Authed>> {
        Ok(AdminClient::with_interceptor(
            self.channel().await?,
            self.bearer()?,
        ))
    }
}

/// A gRPC error as a one-line message for the terminal.
pub fn status_message(status: tonic::Status) -> anyhow::Error {
    // A plaintext client talking to a TLS port sees the connection break in one of these
    // ways, depending on timing.
    let broken = [
        "h2 protocol error",
        "transport error",
        "operation was canceled",
    ]
    .iter()
    .any(|m| status.message().contains(m));
    let hint = if broken {
        "; the connection broke: if the server serves TLS, use an https:// address (with \
         --ca-cert for a private CA)"
    } else {
        ""
    };
    anyhow::anyhow!("{}: {}{hint}", status.code(), status.message())
}

/// Why a connection failed, with a hint where the cause is a known mix-up.
fn connect_error(url: &str, error: tonic::transport::Error) -> anyhow::Error {
    let text = format!("{error:?}");
    let hint = if url.starts_with("https:") && text.contains("InvalidContentType") {
        " (the server does not speak TLS there: use an http:// address)"
    } else {
        ""
    };
    anyhow::Error::new(error).context(format!("cannot reach numguard at {url}{hint}"))
}
