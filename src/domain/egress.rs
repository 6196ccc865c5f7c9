//! Where numguard may send data (webhook sinks, CAMARA sinks, operator APIs): the egress
//! policy. Pure: a URL's shape and an address in, allowed or refused (with why) out. The
//! HTTP client that applies it to every resolved address at connect time is
//! `crate::egress`.
//!
//! By default only public addresses are reached: loopback, private, shared (CGNAT),
//! link-local, unique-local, multicast, unspecified and reserved addresses are refused,
//! in every spelling (`127.1`, `0x7f000001`, `[::ffff:127.0.0.1]`, NAT64, 6to4), because a
//! tenant who registers a sink chooses where the server POSTs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::FieldError;
use crate::domain::Field;

/// What the operator allows beyond public addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Loopback addresses (and the name `localhost`), with plain `http` to them: local
    /// receivers, tests and the README tour.
    pub allow_loopback: bool,
    /// Networks reached although special-use, e.g. an internal `10.1.0.0/16`.
    pub allow_networks: Vec<IpNet>,
    /// Host names whose addresses are reached whatever they are (lower case).
    pub allow_hosts: Vec<String>,
}

/// Why an address is not reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{addr} is {class}")]
pub struct Refused {
    /// The address refused.
    pub addr: IpAddr,
    /// What kind of address it is, e.g. "a private address".
    pub class: &'static str,
}

impl EgressPolicy {
    /// The policy of a test or a local tour: loopback allowed, nothing else special.
    pub fn allowing_loopback() -> EgressPolicy {
        EgressPolicy {
            allow_loopback: true,
            ..EgressPolicy::default()
        }
    }

    /// Every address, loopback too: for the providers file the CLI edits, whose URLs the
    /// server checks against its own policy when it loads them.
    pub fn unrestricted() -> EgressPolicy {
        EgressPolicy {
            allow_loopback: true,
            allow_networks: vec![IpNet::V4(Default::default()), IpNet::V6(Default::default())],
            allow_hosts: Vec::new(),
        }
    }

    /// Whether `host` (a name, as written in a URL) is one the operator allows whatever
    /// it resolves to.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.allow_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host))
    }

    /// Whether the server may connect to `addr`.
    pub fn check_addr(&self, addr: IpAddr) -> Result<(), Refused> {
        if self.allow_networks.iter().any(|net| net.contains(&addr)) {
            return Ok(());
        }
        match special_use(addr) {
            None => Ok(()),
            Some(LOOPBACK) if self.allow_loopback => Ok(()),
            Some(class) => Err(Refused { addr, class }),
        }
    }

    /// The URL, normalised, if the server may send to it as far as can be told without
    /// resolving its name: `https` with a host (plain `http` only to loopback, when
    /// loopback is allowed), no user or password, and a literal address the policy
    /// allows. A name is checked again, address by address, at every connection.
    pub fn check_url(&self, field: Field, url: &str) -> Result<String, FieldError> {
        let parsed = url::Url::parse(url.trim())
            .map_err(|e| FieldError::new(field, format!("{url:?} is not a URL: {e}")))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(FieldError::new(
                field,
                "must not carry a user name or password (send a token instead)",
            ));
        }
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) | None => None,
        };
        let loopback = match parsed.host() {
            Some(url::Host::Domain(d)) => is_localhost(d),
            _ => literal.is_some_and(|ip| special_use(ip) == Some(LOOPBACK)),
        };
        if let Some(ip) = literal {
            self.check_addr(ip).map_err(|r| refusal(field, r))?;
        } else if loopback && !self.allow_loopback {
            return Err(FieldError::new(
                field,
                "is refused by the egress policy: localhost is a loopback address \
                 (the server allows loopback only with --allow-loopback-sinks)",
            ));
        }
        match parsed.scheme() {
            "https" if parsed.host().is_some() => Ok(parsed.to_string()),
            "http" if loopback => Ok(parsed.to_string()),
            "http" => Err(FieldError::new(
                field,
                "must be https (plain http only to a loopback address)",
            )),
            _ => Err(FieldError::new(field, "must be an https URL")),
        }
    }
}

/// The message for an address the policy refuses, naming the setting that would allow it.
pub fn refusal(field: Field, refused: Refused) -> FieldError {
    let allow = if refused.class == LOOPBACK {
        "--allow-loopback-sinks"
    } else {
        "--allow-sink-network"
    };
    FieldError::new(
        field,
        format!(
            "is refused by the egress policy: {refused} (the server allows it only with {allow})"
        ),
    )
}

const LOOPBACK: &str = "a loopback address";

fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// What kind of special-use address `addr` is (IANA's special-purpose registries), or
/// `None` for a public one. IPv6 forms that carry an IPv4 address are judged by it.
fn special_use(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => special_use_v4(v4),
        IpAddr::V6(v6) => special_use_v6(v6),
    }
}

fn special_use_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => Some("an unspecified address"),
        (127, _, _) => Some(LOOPBACK),
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => Some("a private address"),
        (100, 64..=127, _) => Some("a shared (carrier-grade NAT) address"),
        (169, 254, _) => Some("a link-local address"),
        (192, 0, 0) | (198, 18..=19, _) => Some("a reserved address"),
        (224..=239, _, _) => Some("a multicast address"),
        (240..=255, _, _) => Some("a reserved address"),
        _ => None,
    }
}

fn special_use_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some(LOOPBACK);
    }
    if let Some(v4) = embedded_v4(ip) {
        return special_use_v4(v4);
    }
    let s = ip.segments();
    match s[0] {
        0xfc00..=0xfdff => Some("a unique-local address"),
        0xfe80..=0xfebf => Some("a link-local address"),
        0xfec0..=0xfeff => Some("a site-local address"),
        0xff00..=0xffff => Some("a multicast address"),
        0x0064 if s[1] == 0xff9b && s[2] == 1 => Some("a private address"),
        0x0100 if s[1..4] == [0, 0, 0] => Some("a reserved address"),
        0x0000 => Some("a reserved address"),
        _ => None,
    }
}

/// The IPv4 address inside an IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96) or 6to4
/// (2002::/16) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x2002, ..] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> EgressPolicy {
        EgressPolicy::default()
    }

    #[test]
    fn public_https_is_allowed() {
        for url in [
            "https://hooks.example.com/numguard",
            "https://93.184.215.14/x",
            "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/x",
        ] {
            assert!(policy().check_url(Field::Sink, url).is_ok(), "{url}");
        }
    }

    #[test]
    fn every_spelling_of_a_special_address_is_refused() {
        for url in [
            "https://127.0.0.1/x",
            "https://127.1/x",
            "https://2130706433/x",
            "https://0x7f000001/x",
            "https://0177.0.0.1/x",
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[::ffff:7f00:1]/x",
            "https://[64:ff9b::7f00:1]/x",
            "https://[2002:7f00:1::]/x",
            "https://0.0.0.0/x",
            "https://[::]/x",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/x",
            "https://172.16.5.4/x",
            "https://192.168.1.1/x",
            "https://100.64.0.1/x",
            "https://[fd00::1]/x",
            "https://[fe80::1]/x",
            "https://224.0.0.1/x",
            "https://255.255.255.255/x",
            "https://[ff02::1]/x",
            "https://localhost/x",
            "https://api.localhost./x",
            "http://127.0.0.1:8080/x",
        ] {
            let e = policy().check_url(Field::Sink, url).unwrap_err();
            assert_eq!(e.field, Field::Sink);
            assert!(e.message.contains("egress policy"), "{url}: {}", e.message);
        }
    }

    #[test]
    fn credentials_in_the_url_are_refused() {
        let e = policy()
            .check_url(Field::Sink, "https://user:pw@hooks.example.com/x")
            .unwrap_err();
        assert!(e.message.contains("user name or password"), "{}", e.message);
    }

    #[test]
    fn loopback_only_when_allowed_and_plain_http_only_there() {
        let p = EgressPolicy::allowing_loopback();
        for url in [
            "http://127.0.0.1:8080/x",
            "http://localhost/x",
            "http://[::1]:9/x",
            "https://127.1/x",
        ] {
            assert!(p.check_url(Field::Sink, url).is_ok(), "{url}");
        }
        for bad in [
            "http://hooks.example.com/x",
            "ftp://127.0.0.1/",
            "not a url",
            "",
            "http://10.0.0.1/x",
        ] {
            assert_eq!(
                p.check_url(Field::Sink, bad).unwrap_err().field,
                Field::Sink,
                "{bad}"
            );
        }
    }

    #[test]
    fn allowed_networks_and_hosts() {
        let p = EgressPolicy {
            allow_networks: vec!["10.1.0.0/16".parse().unwrap(), "fd00::/8".parse().unwrap()],
            allow_hosts: vec!["hooks.internal".into()],
            ..EgressPolicy::default()
        };
        assert!(p.check_url(Field::Sink, "https://10.1.2.3/x").is_ok());
        assert!(p.check_url(Field::Sink, "https://[fd00::5]/x").is_ok());
        assert!(p.check_url(Field::Sink, "https://10.2.0.1/x").is_err());
        assert!(p.check_url(Field::Sink, "https://127.0.0.1/x").is_err());
        assert!(p.allows_host("HOOKS.internal."));
        assert!(!p.allows_host("other.internal"));
    }

    #[test]
    fn the_refusal_names_the_address_and_the_setting() {
        let e = policy()
            .check_url(Field::Sink, "https://169.254.169.254/x")
            .unwrap_err();
        assert!(
            e.message
                .contains("169.254.169.254 is a link-local address")
                && e.message.contains("--allow-sink-network"),
            "{}",
            e.message
        );
        let e = policy()
            .check_url(Field::Sink, "https://127.1/x")
            .unwrap_err();
        assert!(
            e.message.contains("--allow-loopback-sinks"),
            "{}",
            e.message
        );
    }

    #[test]
    fn public_addresses_are_not_special() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2001:4860:4860::8888",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            assert_eq!(special_use(ip.parse().unwrap()), None, "{ip}");
        }
    }
}
