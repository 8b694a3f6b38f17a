use super::{SqliteMeta, storage};
use crate::accounts::{
    INVITE_TTL_MS, Invite, MFA_PENDING_TTL_MS, NewUser, SESSION_TTL_MS, random_bytes, random_token, sha256_hex, totp,
};
use crate::backend::{
    checked_password, effective_role, enrolment_step, hash_password, new_shared_link, now_ms, password_matches,
    recovery_code_hash, recovery_codes, role_after_invite, stored_server_key,
};
use crate::{Accounts, MetaError, Result, Role, Session, SharedLink, Site, User, validate_email, validate_password};
use rusqlite::{OptionalExtension, params};

const USER_COLUMNS: &str = "users.id, users.email, users.created_ms, users.is_owner, users.totp_secret IS NOT NULL";

fn user_row(r: &rusqlite::Row) -> rusqlite::Result<User> {
    Ok(User { id: r.get(0)?, email: r.get(1)?, created_ms: r.get(2)?, is_owner: r.get(3)?, totp_enabled: r.get(4)? })
}

fn site_row(id: u32, domain: String, tz: String) -> Result<Site> {
    Ok(Site { id, domain, timezone: crate::parse_timezone(&tz)? })
}

impl Accounts for SqliteMeta {
    fn add_user(&self, email: &str, password: &str, new: NewUser) -> Result<User> {
        let email = validate_email(email)?;
        validate_password(password)?;
        let hash = hash_password(password)?;
        let conn = self.conn.lock().unwrap();
        let inserted = conn
            .execute(
                "INSERT OR IGNORE INTO users (email, password_hash, created_ms, is_owner)
                 VALUES (?1, ?2, ?3, ?4 AND NOT EXISTS (SELECT 1 FROM users WHERE is_owner))",
                params![email, hash, now_ms(), new == NewUser::OwnerIfNone],
            )
            .map_err(storage)?;
        if inserted == 0 {
            return Err(MetaError::user_taken(&email));
        }
        let id = conn.last_insert_rowid();
        conn.query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"), [id], user_row).map_err(storage)
    }

    fn list_users(&self) -> Result<Vec<User>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY email")).map_err(storage)?;
        stmt.query_map([], user_row).map_err(storage)?.collect::<rusqlite::Result<_>>().map_err(storage)
    }

    fn check_password(&self, email: &str, password: &str) -> Result<Option<User>> {
        let Ok(email) = validate_email(email) else { return Ok(None) };
        let found: Option<(User, String)> = {
            let conn = self.conn.lock().unwrap();
            conn.query_row(
                &format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = ?1"),
                [&email],
                |r| Ok((user_row(r)?, r.get(5)?)),
            )
            .optional()
            .map_err(storage)?
        };
        Ok(checked_password(found, password))
    }

    fn sign_in_or_join(&self, email: &str, password: &str) -> Result<Option<User>> {
        let email = validate_email(email)?;
        let exists: bool = {
            let conn = self.conn.lock().unwrap();
            conn.query_row("SELECT EXISTS (SELECT 1 FROM users WHERE email = ?1)", [&email], |r| r.get(0))
                .map_err(storage)?
        };
        crate::backend::sign_in_or_join(self, &email, password, exists)
    }

    fn create_session(&self, user_id: u32, mfa_pending: bool) -> Result<String> {
        let token = random_token::<32>();
        let now = now_ms();
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "DELETE FROM sessions WHERE created_ms < ?1 OR (mfa_pending AND created_ms < ?2)",
            params![now - SESSION_TTL_MS, now - MFA_PENDING_TTL_MS],
        )
        .map_err(storage)?;
        conn.execute(
            "INSERT INTO sessions (token_sha256, user_id, mfa_pending, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![sha256_hex(&token), user_id, mfa_pending, now],
        )
        .map_err(storage)?;
        Ok(token)
    }

    fn session(&self, token: &str) -> Result<Option<Session>> {
        let conn = self.conn.lock().unwrap();
        let found = conn
            .query_row(
                &format!(
                    "SELECT {USER_COLUMNS}, sessions.mfa_pending, sessions.created_ms
                     FROM sessions JOIN users ON users.id = sessions.user_id WHERE token_sha256 = ?1"
                ),
                [sha256_hex(token)],
                |r| Ok(Session { user: user_row(r)?, mfa_pending: r.get(5)?, created_ms: r.get(6)? }),
            )
            .optional()
            .map_err(storage)?;
        Ok(found.filter(|s| s.is_live(now_ms())))
    }

    fn complete_mfa(&self, token: &str) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        conn.execute("UPDATE sessions SET mfa_pending = 0 WHERE token_sha256 = ?1", [sha256_hex(token)])
            .map_err(storage)?;
        Ok(())
    }

    fn end_session(&self, token: &str) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        conn.execute("DELETE FROM sessions WHERE token_sha256 = ?1", [sha256_hex(token)]).map_err(storage)?;
        Ok(())
    }

    fn end_all_sessions(&self, user_id: u32) -> Result<usize> {
        let conn = self.conn.lock().unwrap();
        conn.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id]).map_err(storage)
    }

    fn begin_totp(&self, user_id: u32) -> Result<Vec<u8>> {
        // 160 bits, the HMAC-SHA1 block RFC 4226 recommends.
        let secret = random_bytes::<20>().to_vec();
        let conn = self.conn.lock().unwrap();
        conn.execute("UPDATE users SET totp_pending = ?1 WHERE id = ?2", params![secret, user_id]).map_err(storage)?;
        Ok(secret)
    }

    fn enable_totp(&self, user_id: u32, code: &str, now_ms: i64) -> Result<Vec<String>> {
        let mut conn = self.conn.lock().unwrap();
        let pending: Option<Vec<u8>> = conn
            .query_row("SELECT totp_pending FROM users WHERE id = ?1", [user_id], |r| r.get(0))
            .optional()
            .map_err(storage)?
            .flatten();
        let step = enrolment_step(pending.as_deref(), code, now_ms)?;
        let codes = recovery_codes();
        let tx = conn.transaction().map_err(storage)?;
        tx.execute(
            "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = ?1 WHERE id = ?2",
            params![step, user_id],
        )
        .map_err(storage)?;
        tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user_id]).map_err(storage)?;
        for c in &codes {
            tx.execute(
                "INSERT INTO recovery_codes (user_id, code_sha256) VALUES (?1, ?2)",
                params![user_id, recovery_code_hash(c)],
            )
            .map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        Ok(codes)
    }

    fn pending_totp(&self, user_id: u32) -> Result<Option<Vec<u8>>> {
        let conn = self.conn.lock().unwrap();
        let pending: Option<Option<Vec<u8>>> = conn
            .query_row("SELECT totp_pending FROM users WHERE id = ?1", [user_id], |r| r.get(0))
            .optional()
            .map_err(storage)?;
        Ok(pending.flatten())
    }

    fn disable_totp(&self, user_id: u32) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        conn.execute("UPDATE users SET totp_secret = NULL, totp_pending = NULL WHERE id = ?1", [user_id])
            .map_err(storage)?;
        conn.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user_id]).map_err(storage)?;
        Ok(())
    }

    fn check_second_factor(&self, user_id: u32, code: &str, now_ms: i64) -> Result<bool> {
        let conn = self.conn.lock().unwrap();
        let row: Option<(Option<Vec<u8>>, i64)> = conn
            .query_row("SELECT totp_secret, totp_last_step FROM users WHERE id = ?1", [user_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(storage)?;
        let Some((Some(secret), last_step)) = row else { return Ok(false) };
        if let Some(step) = totp::matching_step(&secret, code, now_ms) {
            // A code seen once (or an older one) is refused: no replay within its 90-second window.
            if step <= last_step {
                return Ok(false);
            }
            conn.execute("UPDATE users SET totp_last_step = ?1 WHERE id = ?2", params![step, user_id])
                .map_err(storage)?;
            return Ok(true);
        }
        let used = conn
            .execute(
                "DELETE FROM recovery_codes WHERE user_id = ?1 AND code_sha256 = ?2",
                params![user_id, recovery_code_hash(code)],
            )
            .map_err(storage)?;
        Ok(used == 1)
    }

    fn role(&self, user_id: u32, site_id: u32) -> Result<Option<Role>> {
        let conn = self.conn.lock().unwrap();
        let row: Option<(bool, Option<String>)> = conn
            .query_row(
                "SELECT users.is_owner, (SELECT role FROM members WHERE site_id = ?2 AND user_id = users.id)
                 FROM users WHERE users.id = ?1 AND EXISTS (SELECT 1 FROM sites WHERE id = ?2)",
                params![user_id, site_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(storage)?;
        row.map_or(Ok(None), |(is_owner, role)| effective_role(is_owner, role.as_deref()))
    }

    fn set_role(&self, user_id: u32, site_id: u32, role: Role) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "INSERT INTO members (site_id, user_id, role) VALUES (?1, ?2, ?3)
             ON CONFLICT (site_id, user_id) DO UPDATE SET role = excluded.role",
            params![site_id, user_id, role.name()],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                MetaError::no_user_or_site(user_id, site_id)
            }
            e => storage(e),
        })?;
        Ok(())
    }

    fn remove_member(&self, user_id: u32, site_id: u32) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        let n = conn
            .execute("DELETE FROM members WHERE site_id = ?1 AND user_id = ?2", params![site_id, user_id])
            .map_err(storage)?;
        // Their own segments of the site go with their role.
        conn.execute("DELETE FROM segments WHERE site_id = ?1 AND owner_id = ?2", params![site_id, user_id])
            .map_err(storage)?;
        if n == 0 { Err(MetaError::no_member(user_id, site_id)) } else { Ok(()) }
    }

    fn members(&self, site_id: u32) -> Result<Vec<(User, Role)>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {USER_COLUMNS}, members.role FROM members JOIN users ON users.id = members.user_id
                 WHERE members.site_id = ?1 ORDER BY users.email"
            ))
            .map_err(storage)?;
        let rows = stmt.query_map([site_id], |r| Ok((user_row(r)?, r.get::<_, String>(5)?))).map_err(storage)?;
        rows.map(|r| {
            let (u, role) = r.map_err(storage)?;
            Ok((u, Role::parse(&role)?))
        })
        .collect()
    }

    fn user_sites(&self, user_id: u32) -> Result<Vec<(Site, Role)>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT sites.id, sites.domain, sites.timezone,
                        CASE WHEN users.is_owner THEN 'owner' ELSE members.role END AS role
                 FROM sites JOIN users ON users.id = ?1
                 LEFT JOIN members ON members.site_id = sites.id AND members.user_id = users.id
                 WHERE users.is_owner OR members.role IS NOT NULL
                 ORDER BY sites.domain",
            )
            .map_err(storage)?;
        let rows = stmt
            .query_map([user_id], |r| {
                Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
            })
            .map_err(storage)?;
        rows.map(|r| {
            let (id, domain, tz, role) = r.map_err(storage)?;
            Ok((site_row(id, domain, tz)?, Role::parse(&role)?))
        })
        .collect()
    }

    fn create_invite(&self, site_id: u32, role: Role, email: &str) -> Result<String> {
        let email = validate_email(email)?;
        let token = random_token::<24>();
        let conn = self.conn.lock().unwrap();
        conn.execute("DELETE FROM invites WHERE expires_ms < ?1", [now_ms()]).map_err(storage)?;
        conn.execute(
            "INSERT INTO invites (token_sha256, site_id, role, expires_ms, email) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![sha256_hex(&token), site_id, role.name(), now_ms() + INVITE_TTL_MS, email],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                MetaError::no_site(site_id)
            }
            e => storage(e),
        })?;
        Ok(token)
    }

    fn invite(&self, token: &str) -> Result<Option<Invite>> {
        let conn = self.conn.lock().unwrap();
        let row: Option<(u32, String, String, String, String)> = conn
            .query_row(
                "SELECT sites.id, sites.domain, sites.timezone, invites.role, invites.email
                 FROM invites JOIN sites ON sites.id = invites.site_id
                 WHERE invites.token_sha256 = ?1 AND invites.expires_ms > ?2 AND invites.email IS NOT NULL",
                params![sha256_hex(token), now_ms()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(storage)?;
        row.map(|(id, domain, tz, role, email)| {
            Ok(Invite { site: site_row(id, domain, tz)?, role: Role::parse(&role)?, email })
        })
        .transpose()
    }

    fn accept_invite(&self, token: &str, user_id: u32) -> Result<(Site, Role)> {
        let Invite { site, role, email } = self.invite(token)?.ok_or_else(MetaError::invite_used_up)?;
        let for_them: bool = {
            let conn = self.conn.lock().unwrap();
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1 AND email = ?2)",
                params![user_id, email],
                |r| r.get(0),
            )
            .map_err(storage)?
        };
        if !for_them {
            return Err(MetaError::invite_for_another(&email));
        }
        let used = {
            let conn = self.conn.lock().unwrap();
            conn.execute("DELETE FROM invites WHERE token_sha256 = ?1", [sha256_hex(token)]).map_err(storage)?
        };
        // Two browsers racing for one invite: only the one that deleted it gets in.
        if used == 0 {
            return Err(MetaError::invite_used_up());
        }
        let current = self.role(user_id, site.id)?;
        let role = role_after_invite(current, role);
        if current != Some(role) {
            self.set_role(user_id, site.id, role)?;
        }
        Ok((site, role))
    }

    fn create_shared_link(
        &self,
        site_id: u32,
        name: &str,
        password: Option<&str>,
        min_visitors: u32,
    ) -> Result<SharedLink> {
        let link = new_shared_link(site_id, name, password, min_visitors)?;
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "INSERT INTO shared_links (slug, site_id, name, password_hash, created_ms, min_visitors)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![link.slug, site_id, link.name, link.password_hash, link.created_ms, min_visitors],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                MetaError::no_site(site_id)
            }
            e => storage(e),
        })?;
        Ok(link)
    }

    fn shared_links(&self, site_id: u32) -> Result<Vec<SharedLink>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT site_id, slug, name, password_hash, created_ms, min_visitors FROM shared_links
                 WHERE site_id = ?1 ORDER BY created_ms, slug",
            )
            .map_err(storage)?;
        stmt.query_map([site_id], link_row).map_err(storage)?.collect::<rusqlite::Result<_>>().map_err(storage)
    }

    fn shared_link(&self, slug: &str) -> Result<Option<SharedLink>> {
        let conn = self.conn.lock().unwrap();
        conn.query_row(
            "SELECT site_id, slug, name, password_hash, created_ms, min_visitors FROM shared_links WHERE slug = ?1",
            [slug],
            link_row,
        )
        .optional()
        .map_err(storage)
    }

    fn check_shared_password(&self, link: &SharedLink, password: &str) -> bool {
        link.password_hash.as_deref().is_none_or(|h| password_matches(h, password))
    }

    fn remove_shared_link(&self, site_id: u32, slug: &str) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        let n = conn
            .execute("DELETE FROM shared_links WHERE site_id = ?1 AND slug = ?2", params![site_id, slug])
            .map_err(storage)?;
        if n == 0 { Err(MetaError::no_shared_link(slug)) } else { Ok(()) }
    }

    fn server_key(&self) -> Result<[u8; 32]> {
        let conn = self.conn.lock().unwrap();
        let fresh = random_bytes::<32>();
        conn.execute("INSERT OR IGNORE INTO server_keys (name, value) VALUES ('cookies', ?1)", [fresh.as_slice()])
            .map_err(storage)?;
        let key: Vec<u8> = conn
            .query_row("SELECT value FROM server_keys WHERE name = 'cookies'", [], |r| r.get(0))
            .map_err(storage)?;
        stored_server_key(key)
    }
}

fn link_row(r: &rusqlite::Row) -> rusqlite::Result<SharedLink> {
    Ok(SharedLink {
        site_id: r.get(0)?,
        slug: r.get(1)?,
        name: r.get(2)?,
        password_hash: r.get(3)?,
        created_ms: r.get(4)?,
        min_visitors: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::meta;
    use super::*;
    use crate::MetaStore;

    #[test]
    fn users_sign_in_with_their_password_only() {
        let m = meta("users");
        let u = m.add_user(" Owner@Example.com ", "correct horse battery", NewUser::OwnerIfNone).unwrap();
        assert_eq!(u.email, "owner@example.com");
        assert!(u.is_owner, "the first user owns the instance");
        let stored: String =
            m.conn.lock().unwrap().query_row("SELECT password_hash FROM users", [], |r| r.get(0)).unwrap();
        assert!(stored.starts_with("$argon2id$") && !stored.contains("horse"), "{stored}");
        assert_eq!(m.check_password("OWNER@example.com", "correct horse battery").unwrap(), Some(u.clone()));
        assert_eq!(m.check_password("owner@example.com", "correct horse batterY").unwrap(), None);
        assert_eq!(m.check_password("nobody@example.com", "correct horse battery").unwrap(), None);
        assert!(matches!(
            m.add_user("owner@example.com", "another long one", NewUser::OwnerIfNone),
            Err(MetaError::Invalid(_))
        ));
        assert!(matches!(
            m.add_user("not-an-address", "long enough pw", NewUser::OwnerIfNone),
            Err(MetaError::Invalid(_))
        ));
        assert!(matches!(m.add_user("b@example.com", "short", NewUser::OwnerIfNone), Err(MetaError::Invalid(_))));
        let second = m.add_user("b@example.com", "long enough pw", NewUser::OwnerIfNone).unwrap();
        assert!(!second.is_owner);
        assert_eq!(m.list_users().unwrap(), vec![second, u]);
    }

    #[test]
    fn invited_people_never_own_the_instance() {
        let m = meta("owner-rules");
        let site = m.add_site("a.example", "UTC").unwrap();
        // An invite made before anyone signed up (from the CLI), taken by a stranger.
        let token = m.create_invite(site.id, Role::Viewer, "stranger@example.com").unwrap();
        let stranger = m.sign_in_or_join("stranger@example.com", "stranger password").unwrap().unwrap();
        assert!(!stranger.is_owner);
        m.accept_invite(&token, stranger.id).unwrap();
        assert_eq!(m.user_sites(stranger.id).unwrap().len(), 1, "only the invited site");
        // The first owner still comes from set-up (or `plumb user add`).
        let owner = m.add_user("owner@example.com", "owner password", NewUser::OwnerIfNone).unwrap();
        assert!(owner.is_owner);
        assert!(!m.add_user("late@example.com", "late password", NewUser::OwnerIfNone).unwrap().is_owner);
        // Joining again is signing in: the right password gives the account, a wrong one nothing.
        assert_eq!(m.sign_in_or_join("stranger@example.com", "stranger password").unwrap(), Some(stranger));
        assert_eq!(m.sign_in_or_join("stranger@example.com", "wrong password").unwrap(), None);
        assert!(m.sign_in_or_join("new@example.com", "short").is_err());
    }

    #[test]
    fn session_tokens_are_stored_hashed() {
        // Their lifecycle is checked for both backends alike in tests/postgres.rs.
        let m = meta("sessions");
        let u = m.add_user("a@example.com", "long enough pw", NewUser::OwnerIfNone).unwrap();
        let t1 = m.create_session(u.id, false).unwrap();
        let t2 = m.create_session(u.id, true).unwrap();
        let stored: i64 = m
            .conn
            .lock()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM sessions WHERE token_sha256 IN (?1, ?2)", [&t1, &t2], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, 0, "tokens are not stored in the clear");
        assert!(m.session(&t2).unwrap().unwrap().mfa_pending, "found by the token");
    }

    #[test]
    fn totp_enrols_with_a_valid_code_and_refuses_replays_and_used_recovery_codes() {
        let m = meta("totp");
        let u = m.add_user("a@example.com", "long enough pw", NewUser::OwnerIfNone).unwrap();
        let now = 1_800_000_000_000;
        assert!(!m.check_second_factor(u.id, "123456", now).unwrap(), "no second factor yet");
        let secret = m.begin_totp(u.id).unwrap();
        assert_eq!(m.pending_totp(u.id).unwrap(), Some(secret.clone()));
        let code = |t: i64| format!("{:06}", totp::code_at(&secret, t / 1000 / totp::STEP_SECS));
        assert!(m.enable_totp(u.id, "000000x", now).is_err());
        let codes = m.enable_totp(u.id, &code(now), now).unwrap();
        assert_eq!(codes.len(), 10);
        assert_eq!(m.pending_totp(u.id).unwrap(), None);
        assert!(m.list_users().unwrap()[0].totp_enabled);
        assert!(!m.check_second_factor(u.id, &code(now), now).unwrap(), "the enrolment code is spent");
        let later = now + 60_000;
        assert!(m.check_second_factor(u.id, &code(later), later).unwrap());
        assert!(!m.check_second_factor(u.id, &code(later), later).unwrap(), "replay");
        assert!(m.check_second_factor(u.id, &codes[3].to_uppercase(), later).unwrap());
        assert!(!m.check_second_factor(u.id, &codes[3], later).unwrap(), "recovery codes work once");
        m.disable_totp(u.id).unwrap();
        assert!(!m.check_second_factor(u.id, &codes[4], later).unwrap());
    }

    #[test]
    fn roles_invites_and_shared_links() {
        let m = meta("roles");
        let owner = m.add_user("owner@example.com", "long enough pw", NewUser::OwnerIfNone).unwrap();
        let viewer = m.add_user("viewer@example.com", "long enough pw", NewUser::OwnerIfNone).unwrap();
        let a = m.add_site("a.example", "UTC").unwrap();
        let b = m.add_site("b.example", "UTC").unwrap();
        assert_eq!(m.role(owner.id, b.id).unwrap(), Some(Role::Owner));
        assert_eq!(m.role(viewer.id, a.id).unwrap(), None);
        let token = m.create_invite(a.id, Role::Viewer, "Viewer@example.com").unwrap();
        let offer = Invite { site: a.clone(), role: Role::Viewer, email: "viewer@example.com".into() };
        assert_eq!(m.invite(&token).unwrap(), Some(offer));
        assert!(matches!(m.accept_invite(&token, owner.id), Err(MetaError::Invalid(_))), "for someone else");
        assert_eq!(m.accept_invite(&token, viewer.id).unwrap(), (a.clone(), Role::Viewer));
        assert!(matches!(m.accept_invite(&token, viewer.id), Err(MetaError::NotFound(_))), "one-time");
        assert_eq!(m.role(viewer.id, a.id).unwrap(), Some(Role::Viewer));
        assert_eq!(m.user_sites(viewer.id).unwrap(), vec![(a.clone(), Role::Viewer)]);
        assert_eq!(m.user_sites(owner.id).unwrap().len(), 2);
        assert_eq!(m.members(a.id).unwrap(), vec![(viewer.clone(), Role::Viewer)]);
        // An invite never lowers a role.
        m.set_role(viewer.id, a.id, Role::Admin).unwrap();
        let t2 = m.create_invite(a.id, Role::Viewer, "viewer@example.com").unwrap();
        assert_eq!(m.accept_invite(&t2, viewer.id).unwrap().1, Role::Admin);
        assert!(Role::parse("root").is_err());

        let public = m.create_shared_link(a.id, "Public", None, 0).unwrap();
        let private = m.create_shared_link(a.id, "Board", Some("board password"), 0).unwrap();
        assert!(m.create_shared_link(a.id, "Short", Some("pw"), 0).is_err());
        assert!(m.check_shared_password(&public, ""));
        assert!(m.check_shared_password(&private, "board password"));
        assert!(!m.check_shared_password(&private, "board passworD"));
        assert_eq!(m.shared_links(a.id).unwrap().len(), 2);
        m.remove_shared_link(a.id, &public.slug).unwrap();
        assert_eq!(m.shared_link(&public.slug).unwrap(), None);
        assert_eq!(m.server_key().unwrap(), m.server_key().unwrap());

        m.remove_site("a.example").unwrap();
        assert_eq!(m.shared_link(&private.slug).unwrap(), None, "links go with their site");
        assert_eq!(m.role(viewer.id, a.id).unwrap(), None);
    }
}
