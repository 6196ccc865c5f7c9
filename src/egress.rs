//! The HTTP clients of every outbound request (webhook and CAMARA sinks, operator APIs),
//! held to the egress policy (`crate::domain::egress`): redirects are never followed,
//! proxies are not used (the policy must see the real target), and every address a name
//! resolves to is checked when the connection is made, so a name that points elsewhere
//! after it was registered (DNS rebinding) is refused then. Literal addresses never reach
//! the resolver; callers check URLs with [`Egress::check_url`] before each send.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::egress::{EgressPolicy, refusal};
use crate::domain::{Field, FieldError};

/// The longest a registration waits for its name to resolve before accepting it unchecked.
const REGISTRATION_LOOKUP: Duration = Duration::from_secs(2);

/// The egress policy and the clients that follow it.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    policy: Arc<EgressPolicy>,
}

impl Egress {
    /// Outbound requests held to `policy`.
    pub fn new(policy: EgressPolicy) -> Egress {
        Egress {
            policy: Arc::new(policy),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }

    /// A client built from `builder`, with no redirects, no proxies and the policy's
    /// resolver.
    pub fn client(&self, builder: reqwest::ClientBuilder) -> reqwest::Result<reqwest::Client> {
        builder
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(PolicyResolver {
                policy: self.policy.clone(),
            })
            .build()
    }

    /// The URL's shape and literal address (see [`EgressPolicy::check_url`]); pure, for
    /// every send.
    pub fn check_url(&self, field: Field, url: &str) -> Result<String, FieldError> {
        self.policy.check_url(field, url)
    }

    /// A URL a tenant or operator registers: its shape, and every address its name
    /// resolves to now. A name that does not resolve now is accepted (it is checked again
    /// at every connection).
    pub async fn check_registration(&self, field: Field, url: &str) -> Result<String, FieldError> {
        let checked = self.check_url(field, url)?;
        let Some(name) = url::Url::parse(&checked)
            .ok()
            .and_then(|u| u.domain().map(str::to_string))
        else {
            return Ok(checked);
        };
        if self.policy.allows_host(&name) {
            return Ok(checked);
        }
        let lookup = tokio::net::lookup_host((name.as_str(), 0));
        if let Ok(Ok(addrs)) = tokio::time::timeout(REGISTRATION_LOOKUP, lookup).await {
            for addr in addrs {
                self.policy
                    .check_addr(addr.ip())
                    .map_err(|r| refusal(field, r))?;
            }
        }
        Ok(checked)
    }
}

/// Resolves with the system resolver and keeps only the addresses the policy allows.
struct PolicyResolver {
    policy: Arc<EgressPolicy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let name = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if policy.allows_host(&name) {
                return Ok(Box::new(resolved.into_iter()) as Addrs);
            }
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match policy.check_addr(a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        refused = Some(r);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(r)) => Err(format!("refused by the egress policy: {r}").into()),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}
