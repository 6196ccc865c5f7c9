//! Outbound HTTP endpoints numguard sends data to (webhook sinks, operator APIs): `https`,
//! or plain `http` only to a loopback address (local receivers, tests).

use std::net::IpAddr;

use super::FieldError;
use crate::domain::Field;

/// The URL, normalised, if it is `https` or loopback `http`; else why not, naming `field`.
pub fn https_or_loopback(field: Field, url: &str) -> Result<String, FieldError> {
    let parsed = url::Url::parse(url.trim())
        .map_err(|e| FieldError::new(field, format!("{url:?} is not a URL: {e}")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_or_loopback_http_only() {
        assert!(https_or_loopback(Field::Sink, "https://hooks.example.com/numguard").is_ok());
        assert!(https_or_loopback(Field::Sink, "http://127.0.0.1:8080/x").is_ok());
        assert!(https_or_loopback(Field::Sink, "http://localhost/x").is_ok());
        assert!(https_or_loopback(Field::Sink, "http://[::1]:9/x").is_ok());
        for bad in [
            "http://hooks.example.com/x",
            "ftp://127.0.0.1/",
            "not a url",
            "",
        ] {
            assert_eq!(
                https_or_loopback(Field::Sink, bad).unwrap_err().field,
                Field::Sink,
                "{bad}"
            );
        }
    }
}
