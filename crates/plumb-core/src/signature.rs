//! The visitor signature: a keyed hash of site, IP and User-Agent under a daily random salt.

use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use std::net::IpAddr;

/// A 128-bit secret salt. Fresh for every date, deleted when the date has ended everywhere.
pub type Salt = [u8; 16];

/// SipHash-2-4 keyed by the salt. The day is part of the input so that a salt reused for
/// back-dated events (see `plumb-meta`) still yields different visitors on different days.
pub fn visitor_signature(salt: &Salt, site_id: u32, day: i32, ip: IpAddr, user_agent: &str) -> u64 {
    let mut h = SipHasher24::new_with_key(salt);
    h.write_u32(site_id);
    h.write_i32(day);
    // Map IPv4-mapped IPv6 to IPv4 so a dual-stack proxy cannot split one visitor into two.
    match ip.to_canonical() {
        IpAddr::V4(v4) => h.write(&v4.octets()),
        IpAddr::V6(v6) => h.write(&v6.octets()),
    }
    h.write(user_agent.as_bytes());
    h.finish()
}

pub fn random_salt() -> Salt {
    let mut s = [0u8; 16];
    getrandom::fill(&mut s).expect("the OS random source is available");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_depends_on_every_input() {
        let salt = [7u8; 16];
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let base = visitor_signature(&salt, 1, 100, ip, "UA");
        assert_eq!(base, visitor_signature(&salt, 1, 100, ip, "UA"));
        assert_ne!(base, visitor_signature(&[8u8; 16], 1, 100, ip, "UA"));
        assert_ne!(base, visitor_signature(&salt, 2, 100, ip, "UA"));
        assert_ne!(base, visitor_signature(&salt, 1, 101, ip, "UA"));
        assert_ne!(base, visitor_signature(&salt, 1, 100, "203.0.113.10".parse().unwrap(), "UA"));
        assert_ne!(base, visitor_signature(&salt, 1, 100, ip, "UA2"));
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(base, visitor_signature(&salt, 1, 100, mapped, "UA"));
    }
}
