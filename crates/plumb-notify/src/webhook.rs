//! Webhook deliveries: signed over the timestamp and the body, sent only to public addresses
//! (unless the operator allows private ones), never following redirects.
//!
//! The signature recipe: `Plumb-Signature: t=<unix seconds>,v1=<hex>` where `<hex>` is
//! HMAC-SHA256, keyed with the webhook's secret, of `<unix seconds>.<body>`. A receiver recomputes
//! it, compares in constant time and refuses timestamps older than a few minutes (replays).
//! `Plumb-Delivery` is the same for every attempt of one message, so receivers can drop repeats.

use hmac::{Hmac, Mac};
use plumb_meta::accounts::hex;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sha2::Sha256;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How long one delivery may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The `Plumb-Signature` value of `body` sent at `unix_seconds`.
pub fn signature(secret: &str, unix_seconds: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{unix_seconds}.{body}").as_bytes());
    format!("t={unix_seconds},v1={}", hex(&mac.finalize().into_bytes()))
}

/// An address a webhook may not reach unless private targets are allowed: loopback, private,
/// link-local (cloud metadata), shared, multicast, unspecified, documentation and the like.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            // An IPv4 address inside (IPv4-compatible, 6to4) is judged as that address.
            let embedded =
                |hi: u16, lo: u16| is_private(IpAddr::from([(hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8]));
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[..6] == [0; 6] && embedded(s[6], s[7]))
                || (s[0] == 0x2002 && embedded(s[1], s[2]))
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x2001 && (s[1] == 0x0db8 || s[1] == 0))
                || (s[0] == 0x0064 && s[1] == 0xff9b)
        }
    }
}

/// Resolves names and keeps only the addresses a webhook may reach, so a name that points inside
/// the network is refused however it was written.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| !is_private(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address (private targets are not allowed)").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Why a delivery did not go through.
pub enum HookError {
    /// Trying again will not help: the address is not allowed, or the receiver refused (4xx).
    Refused(String),
    /// A network failure, a timeout or a server error (5xx, 408, 429): try again later.
    Failed(String),
}

/// Sends webhook deliveries.
#[derive(Clone)]
pub struct Hooks {
    client: reqwest::Client,
    allow_private: bool,
}

impl Hooks {
    pub fn new(allow_private: bool) -> Hooks {
        let mut builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, past the address check below.
            .no_proxy()
            .user_agent(concat!("Plumb-Webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Hooks { client: builder.build().expect("the HTTP client's settings are valid"), allow_private }
    }

    /// Whether `url` may be called, before any name is resolved (an address written as a
    /// literal never reaches the resolver).
    pub fn check_target(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") => {
                Some(IpAddr::from([127, 0, 0, 1]))
            }
            _ => None,
        };
        match literal {
            Some(ip) if !self.allow_private && is_private(ip) => Err(format!(
                "{ip} is a private address; webhooks go to public ones (the operator can allow private ones)"
            )),
            _ => Ok(()),
        }
    }

    /// POSTs `body` to `url`, signed; `Ok` on a 2xx answer, else what went wrong.
    pub async fn send(&self, url: &str, secret: &str, delivery: u64, event: &str, body: &str) -> Result<(), HookError> {
        self.check_target(url).map_err(HookError::Refused)?;
        let now = chrono::Utc::now().timestamp();
        let answer = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("plumb-signature", signature(secret, now, body))
            .header("plumb-delivery", delivery.to_string())
            .header("plumb-event", event)
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| HookError::Failed(describe(e)))?;
        let status = answer.status();
        let refused = status.is_client_error() && !matches!(status.as_u16(), 408 | 429);
        match status {
            s if s.is_success() => Ok(()),
            s if refused => Err(HookError::Refused(format!("the webhook refused the delivery: {s}"))),
            s => Err(HookError::Failed(format!("the webhook answered {s}"))),
        }
    }
}

/// The error with its causes (reqwest's own text is only the kind), without the URL: a
/// webhook's address may carry its own secret (Slack's do), and errors are logged and shown.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let _ = write!(text, ": {c}");
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_timestamp_and_body() {
        // Against a value computed independently, with Python's hmac module:
        // hmac.new(b"whsec_test", b"1700000000.{\"a\":1}", "sha256").hexdigest()
        assert_eq!(
            signature("whsec_test", 1_700_000_000, "{\"a\":1}"),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }

    #[test]
    fn inside_addresses_are_private() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
            "::127.0.0.1",
            "2002:a00:1::",
            "fec0::1",
            "2001::1",
            "64:ff9b:1::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
        let hooks = Hooks::new(false);
        assert!(hooks.check_target("http://127.0.0.1:8080/x").is_err());
        assert!(hooks.check_target("http://[::1]/x").is_err());
        assert!(hooks.check_target("http://localhost/x").is_err());
        assert!(hooks.check_target("https://hooks.example.com/x").is_ok());
        assert!(Hooks::new(true).check_target("http://127.0.0.1:8080/x").is_ok());
    }
}
