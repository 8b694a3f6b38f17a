//! What every backend does alike around its SQL: the checks before a write, the secrets it makes,
//! the stored forms of values and the errors it answers with. SQLite and PostgreSQL call these, so
//! the same call gets the same answer from both (`tests/postgres.rs` runs one script against each).

use crate::accounts::{
    MAX_LINK_MIN_VISITORS, MFA_PENDING_TTL_MS, SESSION_TTL_MS, new_recovery_code, normalize_recovery_code,
    random_token, sha256_hex, totp,
};
use crate::{
    Accounts, ApiKey, Goal, GoalKind, Import, ImportState, MetaError, NewUser, Result, Role, Scope, Session,
    SharedLink, User, validate_password,
};
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use plumb_core::signature::Salt;

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The answers for situations every backend meets.
impl MetaError {
    pub(crate) fn site_taken(domain: &str) -> Self {
        Self::Invalid(format!("site `{domain}` already exists"))
    }

    pub(crate) fn no_site(id: u32) -> Self {
        Self::NotFound(format!("site {id}"))
    }

    pub(crate) fn no_site_named(domain: &str) -> Self {
        Self::NotFound(format!("site `{domain}`"))
    }

    pub(crate) fn goal_name_taken(display_name: &str) -> Self {
        Self::Invalid(format!("this site already has a goal named `{display_name}`"))
    }

    pub(crate) fn no_goal(site_id: u32, goal_id: u32) -> Self {
        Self::NotFound(format!("goal {goal_id} of site {site_id}"))
    }

    pub(crate) fn key_taken(name: &str) -> Self {
        Self::Invalid(format!("a key named `{name}` already exists"))
    }

    pub(crate) fn no_key(name: &str) -> Self {
        Self::NotFound(format!("key `{name}`"))
    }

    pub(crate) fn no_rule(site_id: u32, rule_id: u32) -> Self {
        Self::NotFound(format!("rule {rule_id} of site {site_id}"))
    }

    pub(crate) fn no_funnel(site_id: u32, id: u32) -> Self {
        Self::NotFound(format!("funnel {id} of site {site_id}"))
    }

    pub(crate) fn no_annotation(site_id: u32, id: u32) -> Self {
        Self::NotFound(format!("annotation {id} of site {site_id}"))
    }

    pub(crate) fn no_segment(site_id: u32, id: u32) -> Self {
        Self::NotFound(format!("segment {id} of site {site_id}"))
    }

    pub(crate) fn too_many(what: &str, max: u32) -> Self {
        Self::Invalid(format!("a site holds at most {max} {what}; remove some first"))
    }

    pub(crate) fn user_taken(email: &str) -> Self {
        Self::Invalid(format!("a user with e-mail `{email}` already exists"))
    }

    pub(crate) fn no_user_or_site(user_id: u32, site_id: u32) -> Self {
        Self::NotFound(format!("user {user_id} or site {site_id}"))
    }

    pub(crate) fn no_member(user_id: u32, site_id: u32) -> Self {
        Self::NotFound(format!("member {user_id} of site {site_id}"))
    }

    pub(crate) fn invite_used_up() -> Self {
        Self::NotFound("invite (it is used up or expired)".into())
    }

    pub(crate) fn invite_for_another(email: &str) -> Self {
        Self::Invalid(format!("this invite is for {email}; sign in as that account"))
    }

    pub(crate) fn no_shared_link(slug: &str) -> Self {
        Self::NotFound(format!("shared link `{slug}`"))
    }
}

impl GoalKind {
    /// The `kind` and `value` columns a goal is stored as.
    pub(crate) fn columns(&self) -> (&'static str, &str) {
        match self {
            GoalKind::Page(p) => ("page", p),
            GoalKind::Event(n) => ("event", n),
        }
    }

    pub(crate) fn from_columns(kind: &str, value: String) -> GoalKind {
        if kind == "page" { GoalKind::Page(value) } else { GoalKind::Event(value) }
    }
}

/// A funnel's row as both backends read it: id, site, name, created, starts.
pub(crate) type FunnelHead = (u32, u32, String, i64, i64);

/// Funnels from their rows and their steps' (funnel id, name, kind, value), ordered by funnel
/// and position.
pub(crate) fn assemble_funnels(
    heads: Vec<FunnelHead>,
    steps: Vec<(u32, String, String, String)>,
) -> Vec<crate::Funnel> {
    let mut funnels: Vec<crate::Funnel> = heads
        .into_iter()
        .map(|(id, site_id, name, created_ms, starts_ms)| crate::Funnel {
            id,
            site_id,
            name,
            steps: Vec::new(),
            created_ms,
            starts_ms,
        })
        .collect();
    for (funnel, name, kind, value) in steps {
        if let Some(f) = funnels.iter_mut().find(|f| f.id == funnel) {
            f.steps.push(crate::FunnelStep { name, kind: GoalKind::from_columns(&kind, value) });
        }
    }
    funnels
}

/// The name a new goal is shown under: the one given, trimmed, or its kind's default.
pub(crate) fn goal_display_name(kind: &GoalKind, display_name: Option<&str>) -> Result<String> {
    let name = display_name.map(str::trim).map_or_else(|| kind.default_name(), str::to_owned);
    if name.is_empty() || name.len() > 200 {
        return Err(MetaError::Invalid("display_name must be 1 to 200 bytes".into()));
    }
    Ok(name)
}

/// The goal with a (checked) currency, or none: revenue is for custom-event goals only.
pub(crate) fn with_currency(goal: Goal, currency: Option<String>) -> Result<Goal> {
    if currency.is_some() && matches!(goal.kind, GoalKind::Page(_)) {
        return Err(MetaError::Invalid("only custom-event goals carry revenue".into()));
    }
    Ok(Goal { currency, ..goal })
}

/// A key about to be stored. `key.id` is 0 until the backend has one.
pub(crate) struct NewKey {
    pub key: ApiKey,
    /// Shown to the caller once, never stored.
    pub secret: String,
    pub secret_sha256: String,
    pub scopes: String,
    pub sites: Option<String>,
}

/// Checks a new key's name and scopes and draws its secret. Scopes and sites are stored as
/// comma-separated lists (see [`stored_key`]).
pub(crate) fn new_key(name: &str, scopes: &[Scope], sites: Option<&[u32]>) -> Result<NewKey> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(MetaError::Invalid("key name must be 1 to 100 characters".into()));
    }
    if scopes.is_empty() {
        return Err(MetaError::Invalid("a key needs at least one scope".into()));
    }
    let secret = format!("plumb_{}", random_token::<24>());
    Ok(NewKey {
        key: ApiKey {
            id: 0,
            name: name.to_owned(),
            prefix: secret[..12].to_owned(),
            created_ms: now_ms(),
            scopes: scopes.to_vec(),
            sites: sites.map(<[u32]>::to_vec),
        },
        secret_sha256: sha256_hex(&secret),
        secret,
        scopes: scopes.iter().map(|s| s.name()).collect::<Vec<_>>().join(","),
        sites: sites.map(|s| s.iter().map(u32::to_string).collect::<Vec<_>>().join(",")),
    })
}

/// A key from its stored columns.
pub(crate) fn stored_key(
    id: u32,
    name: String,
    prefix: String,
    created_ms: i64,
    scopes: &str,
    sites: Option<&str>,
) -> Result<ApiKey> {
    Ok(ApiKey {
        id,
        name,
        prefix,
        created_ms,
        scopes: scopes.split(',').filter(|s| !s.is_empty()).map(Scope::parse).collect::<Result<_>>()?,
        sites: sites
            .map(|s| {
                s.split(',').map(|id| id.parse().map_err(|_| MetaError::Storage("bad site list".into()))).collect()
            })
            .transpose()?,
    })
}

pub(crate) fn stored_salt(bytes: Vec<u8>) -> Result<Salt> {
    bytes.try_into().map_err(|_| MetaError::Storage("stored salt is not 16 bytes".into()))
}

pub(crate) fn stored_server_key(bytes: Vec<u8>) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| MetaError::Storage("stored cookie key is not 32 bytes".into()))
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane): OWASP's recommended minimum.
pub(crate) fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| MetaError::Storage(format!("cannot hash the password: {e}")))
}

pub(crate) fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// `check_password`'s answer from the user found by e-mail and their password hash.
pub(crate) fn checked_password(found: Option<(User, String)>, password: &str) -> Option<User> {
    let Some((user, hash)) = found else {
        // Hash anyway, so an unknown address takes as long to refuse as a wrong password.
        let _ = hash_password(password);
        return None;
    };
    password_matches(&hash, password).then_some(user)
}

/// `sign_in_or_join` once the backend knows whether the (checked) address has an account.
pub(crate) fn sign_in_or_join(
    accounts: &impl Accounts,
    email: &str,
    password: &str,
    exists: bool,
) -> Result<Option<User>> {
    if exists {
        return accounts.check_password(email, password);
    }
    match accounts.add_user(email, password, NewUser::Member) {
        Ok(u) => Ok(Some(u)),
        // Made by a request racing this one: it has a password now, which is checked.
        Err(MetaError::Invalid(_)) if validate_password(password).is_ok() => accounts.check_password(email, password),
        Err(e) => Err(e),
    }
}

impl Session {
    /// Whether a session found by its token has not expired.
    pub(crate) fn is_live(&self, now_ms: i64) -> bool {
        let ttl = if self.mfa_pending { MFA_PENDING_TTL_MS } else { SESSION_TTL_MS };
        now_ms - self.created_ms < ttl
    }
}

/// The time step `code` proves for the secret being enrolled (`None`: no enrolment started).
pub(crate) fn enrolment_step(pending: Option<&[u8]>, code: &str, now_ms: i64) -> Result<i64> {
    let pending = pending.ok_or_else(|| MetaError::Invalid("start two-factor set-up first".into()))?;
    totp::matching_step(pending, code, now_ms)
        .ok_or_else(|| MetaError::Invalid("that code is not valid for this key; check the device's clock".into()))
}

/// Ten one-time recovery codes: shown once, stored as [`recovery_code_hash`]es.
pub(crate) fn recovery_codes() -> Vec<String> {
    (0..10).map(|_| new_recovery_code()).collect()
}

pub(crate) fn recovery_code_hash(code: &str) -> String {
    sha256_hex(&normalize_recovery_code(code))
}

/// A user's role on a site from whether they own the instance and their explicit role there.
pub(crate) fn effective_role(is_owner: bool, member_role: Option<&str>) -> Result<Option<Role>> {
    match (is_owner, member_role) {
        (true, _) => Ok(Some(Role::Owner)),
        (false, Some(role)) => Role::parse(role).map(Some),
        (false, None) => Ok(None),
    }
}

/// The role a user has after accepting an invite for `offered`: an invite never lowers one.
pub(crate) fn role_after_invite(current: Option<Role>, offered: Role) -> Role {
    current.map_or(offered, |c| c.max(offered))
}

/// A new shared link with its name checked and its password (if any) hashed.
pub(crate) fn new_shared_link(
    site_id: u32,
    name: &str,
    password: Option<&str>,
    min_visitors: u32,
) -> Result<SharedLink> {
    if min_visitors > MAX_LINK_MIN_VISITORS {
        return Err(MetaError::Invalid(format!(
            "a shared link hides rows of at most {MAX_LINK_MIN_VISITORS} visitors, not {min_visitors}"
        )));
    }
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(MetaError::Invalid("a shared link's name must be 1 to 100 characters".into()));
    }
    let password_hash = match password.filter(|p| !p.is_empty()) {
        Some(p) => {
            validate_password(p)?;
            Some(hash_password(p)?)
        }
        None => None,
    };
    Ok(SharedLink {
        site_id,
        slug: random_token::<16>(),
        name: name.to_owned(),
        password_hash,
        created_ms: now_ms(),
        min_visitors,
    })
}

/// An import's breakdown codes as stored: comma-separated.
pub(crate) fn dims_text(dims: &[u8]) -> String {
    dims.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
}

/// An import from its stored columns.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stored_import(
    id: u32,
    site_id: u32,
    kind: String,
    key: String,
    label: String,
    days: (i32, i32),
    dims: &str,
    rows: i64,
    state: &str,
    created_ms: i64,
) -> Result<Import> {
    let dims = dims
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().map_err(|_| MetaError::Storage(format!("a stored import breakdown `{d}`"))))
        .collect::<Result<_>>()?;
    Ok(Import {
        id,
        site_id,
        kind,
        key,
        label,
        first_day: days.0,
        last_day: days.1,
        dims,
        rows: rows.max(0) as u64,
        state: ImportState::parse(state)?,
        created_ms,
    })
}
