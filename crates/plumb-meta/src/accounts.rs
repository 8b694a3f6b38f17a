//! People and what they may see: users, sign-in sessions, second factors, per-site roles,
//! invites and shared links. Every secret handed out (session, invite, link) is random and stored
//! only as a SHA-256 hash, except shared-link slugs, which are addresses, not credentials.

use crate::{MetaError, Result, Site};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A person who signs in to the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: u32,
    pub email: String,
    pub created_ms: i64,
    /// The first account of this Plumb: owner of every site.
    pub is_owner: bool,
    pub totp_enabled: bool,
}

/// What a user may do on a site; each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads the dashboard and exports CSV.
    Viewer,
    /// Also changes goals, shared links and invites.
    Admin,
    /// Also deletes the site and changes roles.
    Owner,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Admin, Role::Owner];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Result<Role> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == s.trim())
            .ok_or_else(|| MetaError::Invalid(format!("`{s}` is not a role (owner, admin or viewer)")))
    }
}

/// A signed-in browser. `mfa_pending`: the password was right but the second factor is still due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    pub mfa_pending: bool,
    pub created_ms: i64,
}

/// A read-only dashboard anyone with the address (and the password, if set) can open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedLink {
    pub site_id: u32,
    pub slug: String,
    pub name: String,
    /// Argon2id hash of the link's password; `None`: public.
    pub password_hash: Option<String>,
    pub created_ms: i64,
    /// Rows (of breakdowns and filtered answers) with fewer visitors are not shown through the
    /// link; 0 shows every row.
    pub min_visitors: u32,
}

/// The largest `min_visitors` a shared link may ask for.
pub const MAX_LINK_MIN_VISITORS: u32 = 1_000;

/// Whether a new user may become the instance owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewUser {
    /// First-run set-up and `plumb user add`: the owner, if this Plumb has none yet.
    OwnerIfNone,
    /// Someone who accepted an invite: never the owner.
    Member,
}

/// An unused, unexpired invite: for one e-mail address, to one site, with one role.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite {
    pub site: Site,
    pub role: Role,
    pub email: String,
}

/// Sessions last 30 days; a session waiting for its second factor, 10 minutes.
pub const SESSION_TTL_MS: i64 = 30 * 86_400_000;
pub const MFA_PENDING_TTL_MS: i64 = 10 * 60_000;
/// Invite links work once, within 7 days.
pub const INVITE_TTL_MS: i64 = 7 * 86_400_000;

pub trait Accounts: Send + Sync {
    /// Adds a user; the password is stored only as an Argon2id hash.
    fn add_user(&self, email: &str, password: &str, new: NewUser) -> Result<User>;
    fn list_users(&self) -> Result<Vec<User>>;
    /// The user, if the e-mail is known and the password is theirs.
    fn check_password(&self, email: &str, password: &str) -> Result<Option<User>>;
    /// The account of `email` if the password is its (`None` if not), or a new account (never
    /// the owner) with that password when there is none: how an invited person joins.
    fn sign_in_or_join(&self, email: &str, password: &str) -> Result<Option<User>>;

    /// Starts a session and returns its secret token (for the cookie).
    fn create_session(&self, user_id: u32, mfa_pending: bool) -> Result<String>;
    /// The live session a token belongs to.
    fn session(&self, token: &str) -> Result<Option<Session>>;
    /// Marks the second factor as given.
    fn complete_mfa(&self, token: &str) -> Result<()>;
    fn end_session(&self, token: &str) -> Result<()>;
    /// Ends every session of the user (logout everywhere). Returns how many ended.
    fn end_all_sessions(&self, user_id: u32) -> Result<usize>;

    /// Draws a new TOTP secret for the user to enrol (not yet required at sign-in).
    fn begin_totp(&self, user_id: u32) -> Result<Vec<u8>>;
    /// Requires TOTP from now on if `code` is valid for the enrolling secret; returns ten
    /// one-time recovery codes (shown once, stored hashed).
    fn enable_totp(&self, user_id: u32, code: &str, now_ms: i64) -> Result<Vec<String>>;
    /// The secret being enrolled, if any.
    fn pending_totp(&self, user_id: u32) -> Result<Option<Vec<u8>>>;
    fn disable_totp(&self, user_id: u32) -> Result<()>;
    /// Checks a TOTP code (each time step accepted once) or a recovery code (used up).
    fn check_second_factor(&self, user_id: u32, code: &str, now_ms: i64) -> Result<bool>;

    /// The user's role on the site, if any (the instance owner owns every site).
    fn role(&self, user_id: u32, site_id: u32) -> Result<Option<Role>>;
    fn set_role(&self, user_id: u32, site_id: u32, role: Role) -> Result<()>;
    fn remove_member(&self, user_id: u32, site_id: u32) -> Result<()>;
    /// Everyone with an explicit role on the site.
    fn members(&self, site_id: u32) -> Result<Vec<(User, Role)>>;
    /// The sites the user can see, with their role, by domain.
    fn user_sites(&self, user_id: u32) -> Result<Vec<(Site, Role)>>;

    /// A one-time invite for `email` to the site with that role; returns its secret token.
    fn create_invite(&self, site_id: u32, role: Role, email: &str) -> Result<String>;
    /// What an unused, unexpired invite offers.
    fn invite(&self, token: &str) -> Result<Option<Invite>>;
    /// Uses the invite up and gives the user its role (never lowering a higher one); the user
    /// must be the one it is for.
    fn accept_invite(&self, token: &str, user_id: u32) -> Result<(Site, Role)>;

    /// A read-only link to a site's dashboard, with a password or none, hiding rows of fewer than
    /// `min_visitors` visitors (0 to [`MAX_LINK_MIN_VISITORS`]).
    fn create_shared_link(
        &self,
        site_id: u32,
        name: &str,
        password: Option<&str>,
        min_visitors: u32,
    ) -> Result<SharedLink>;
    fn shared_links(&self, site_id: u32) -> Result<Vec<SharedLink>>;
    fn shared_link(&self, slug: &str) -> Result<Option<SharedLink>>;
    fn check_shared_password(&self, link: &SharedLink, password: &str) -> bool;
    fn remove_shared_link(&self, site_id: u32, slug: &str) -> Result<()>;

    /// A random 32-byte key made on first use, for signing cookies.
    fn server_key(&self) -> Result<[u8; 32]>;
}

/// Bytes from the OS's random source: every secret this crate makes (tokens, keys, codes).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut raw = [0u8; N];
    getrandom::fill(&mut raw).expect("the OS random source is available");
    raw
}

/// `N` random bytes as lower-case hex: API keys, session, invite and link tokens.
pub fn random_token<const N: usize>() -> String {
    hex(&random_bytes::<N>())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// HMAC-SHA256 of `message`, hex; used for cookies the server signs.
pub fn sign(key: &[u8; 32], message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Compares without leaking where two strings differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 6238 time-based one-time passwords: HMAC-SHA1, 30-second steps, 6 digits, the form every
/// authenticator app speaks.
pub mod totp {
    use super::*;

    pub const STEP_SECS: i64 = 30;

    /// The code for one time step (RFC 4226 dynamic truncation).
    pub fn code_at(secret: &[u8], step: i64) -> u32 {
        let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(&(step as u64).to_be_bytes());
        let h = mac.finalize().into_bytes();
        let at = (h[19] & 0x0f) as usize;
        let n = u32::from_be_bytes([h[at] & 0x7f, h[at + 1], h[at + 2], h[at + 3]]);
        n % 1_000_000
    }

    /// The time step `code` is valid for, allowing one step of clock drift either way.
    pub fn matching_step(secret: &[u8], code: &str, now_ms: i64) -> Option<i64> {
        let code = code.trim().replace(' ', "");
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let wanted: u32 = code.parse().ok()?;
        let now = now_ms.div_euclid(1000) / STEP_SECS;
        (now - 1..=now + 1).find(|&s| code_at(secret, s) == wanted)
    }

    pub fn base32(secret: &[u8]) -> String {
        data_encoding::BASE32_NOPAD.encode(secret)
    }

    /// The `otpauth://` address authenticator apps import.
    pub fn uri(secret: &[u8], account: &str) -> String {
        let account: String = url_escape(account);
        format!("otpauth://totp/Plumb:{account}?secret={}&issuer=Plumb&digits=6&period=30", base32(secret))
    }

    fn url_escape(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
}

/// Recovery codes look like `k3p9x-2mq7d`; case and dashes do not matter when typed.
pub fn normalize_recovery_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

pub fn new_recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let chars: String = random_bytes::<10>().iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_the_rfc_6238_vectors() {
        // RFC 6238 appendix B, SHA-1 seed; the RFC prints 8 digits, the last 6 are ours.
        let seed = b"12345678901234567890";
        for (t, eight) in
            [(59, "94287082"), (1111111109, "07081804"), (1234567890, "89005924"), (2000000000, "69279037")]
        {
            assert_eq!(format!("{:06}", totp::code_at(seed, t / totp::STEP_SECS)), eight[2..], "t = {t}");
        }
        let now_ms = 1_111_111_109_000;
        assert_eq!(totp::matching_step(seed, "081804", now_ms), Some(1111111109 / 30));
        assert_eq!(totp::matching_step(seed, "081804", now_ms + 20_000), Some(1111111109 / 30), "one step late");
        assert_eq!(totp::matching_step(seed, "081804", now_ms + 31_000), None, "two steps late");
        assert_eq!(totp::matching_step(seed, "081804", now_ms + 95_000), None, "three steps late");
        assert_eq!(totp::matching_step(seed, "08180", now_ms), None);
        assert_eq!(totp::matching_step(seed, "abcdef", now_ms), None);
        assert_eq!(totp::base32(seed), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(totp::uri(seed, "a+b@x.org").starts_with("otpauth://totp/Plumb:a%2Bb%40x.org?secret=GEZD"));
    }

    #[test]
    fn recovery_codes_normalise() {
        let c = new_recovery_code();
        assert_eq!(c.len(), 11);
        assert_eq!(normalize_recovery_code(&c.to_uppercase()), c.replace('-', ""));
        assert!(constant_time_eq("abc", "abc") && !constant_time_eq("abc", "abd") && !constant_time_eq("ab", "abc"));
    }
}
