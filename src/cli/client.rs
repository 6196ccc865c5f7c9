//! Connecting the CLI's client commands to a server.

use anyhow::Context;
use clap::Args;
use tonic::transport::{Channel, Endpoint};

use crate::api::pb::admin_client::AdminClient;
use crate::api::pb::events_client::EventsClient;
use crate::api::pb::number_check_client::NumberCheckClient;

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address of a running numguard server.
    #[arg(
        long,
        env = "NUMGUARD_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
}

impl ServerArgs {
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let url = if self.server.contains("://") {
            self.server.clone()
        } else {
            format!("http://{}", self.server)
        };
        Endpoint::from_shared(url.clone())
            .with_context(|| format!("{url:?} is not a server address"))?
            .connect()
            .await
            .with_context(|| format!("cannot reach numguard at {url}"))
    }

    pub async fn check(&self) -> anyhow::Result<NumberCheckClient<Channel>> {
        Ok(NumberCheckClient::new(self.channel().await?))
    }

    pub async fn events(&self) -> anyhow::Result<EventsClient<Channel>> {
        Ok(EventsClient::new(self.channel().await?))
    }

    pub async fn admin(&self) -> anyhow::Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel().await?))
    }
}

/// A gRPC error as a one-line message for the terminal.
pub fn status_message(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", status.code(), status.message())
}
