use super::{OWNER_LOCK, PgMeta, id, or_missing, site_row, storage};
use crate::accounts::{
    INVITE_TTL_MS, Invite, MFA_PENDING_TTL_MS, SESSION_TTL_MS, random_bytes, random_token, sha256_hex, totp,
};
use crate::backend::{
    checked_password, effective_role, enrolment_step, hash_password, new_shared_link, now_ms, password_matches,
    recovery_code_hash, recovery_codes, role_after_invite, stored_server_key,
};
use crate::{
    Accounts, MetaError, NewUser, Result, Role, Session, SharedLink, Site, User, validate_email, validate_password,
};
use postgres::{GenericClient, Row};

const USER_COLUMNS: &str = "users.id, users.email, users.created_ms, users.is_owner, users.totp_secret IS NOT NULL";

fn user_row(r: &Row) -> Result<User> {
    Ok(User { id: id(r, 0)?, email: r.get(1), created_ms: r.get(2), is_owner: r.get(3), totp_enabled: r.get(4) })
}

const LINK_COLUMNS: &str = "SELECT site_id, slug, name, password_hash, created_ms, min_visitors FROM shared_links";

fn link_row(r: &Row) -> Result<SharedLink> {
    let min_visitors: i32 = r.get(5);
    Ok(SharedLink {
        site_id: id(r, 0)?,
        slug: r.get(1),
        name: r.get(2),
        password_hash: r.get(3),
        created_ms: r.get(4),
        min_visitors: min_visitors.max(0) as u32,
    })
}

/// [`Accounts::role`] within a transaction or without.
fn role_in(c: &mut impl GenericClient, user_id: u32, site_id: u32) -> Result<Option<Role>> {
    let row = c
        .query_opt(
            "SELECT users.is_owner, (SELECT role FROM members WHERE site_id = $2 AND user_id = users.id)
             FROM users WHERE users.id = $1 AND EXISTS (SELECT 1 FROM sites WHERE id = $2)",
            &[&i64::from(user_id), &i64::from(site_id)],
        )
        .map_err(storage)?;
    row.map_or(Ok(None), |r| effective_role(r.get(0), r.get(1)))
}

/// [`Accounts::set_role`] within a transaction or without.
fn store_role(c: &mut impl GenericClient, user_id: u32, site_id: u32, role: Role) -> Result<()> {
    c.execute(
        "INSERT INTO members (site_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (site_id, user_id) DO UPDATE SET role = excluded.role",
        &[&i64::from(site_id), &i64::from(user_id), &role.name()],
    )
    .map_err(or_missing(|| MetaError::no_user_or_site(user_id, site_id)))?;
    Ok(())
}

impl Accounts for PgMeta {
    fn add_user(&self, email: &str, password: &str, new: NewUser) -> Result<User> {
        let email = validate_email(email)?;
        validate_password(password)?;
        // Hashing is the slow part: done on the caller's thread, not holding a connection.
        let hash = hash_password(password)?;
        let may_own = new == NewUser::OwnerIfNone;
        self.pool.run(move |c| {
            let mut tx = c.transaction().map_err(storage)?;
            if may_own {
                // Two first users at once: the second waits, then sees the first one's ownership.
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&OWNER_LOCK]).map_err(storage)?;
            }
            let row = tx
                .query_opt(
                    &format!(
                        "INSERT INTO users (email, password_hash, created_ms, is_owner)
                         VALUES ($1, $2, $3, $4 AND NOT EXISTS (SELECT 1 FROM users WHERE is_owner))
                         ON CONFLICT (email) DO NOTHING RETURNING {USER_COLUMNS}"
                    ),
                    &[&email, &hash, &now_ms(), &may_own],
                )
                .map_err(storage)?;
            let user = user_row(&row.ok_or_else(|| MetaError::user_taken(&email))?)?;
            tx.commit().map_err(storage)?;
            Ok(user)
        })
    }

    fn list_users(&self) -> Result<Vec<User>> {
        self.pool.run(|c| {
            let rows = c.query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY email"), &[]).map_err(storage)?;
            rows.iter().map(user_row).collect()
        })
    }

    fn check_password(&self, email: &str, password: &str) -> Result<Option<User>> {
        let Ok(email) = validate_email(email) else { return Ok(None) };
        let found = self.pool.run(move |c| {
            let row = c
                .query_opt(&format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = $1"), &[&email])
                .map_err(storage)?;
            row.map(|r| Ok((user_row(&r)?, r.get(5)))).transpose()
        })?;
        Ok(checked_password(found, password))
    }

    fn sign_in_or_join(&self, email: &str, password: &str) -> Result<Option<User>> {
        let email = validate_email(email)?;
        let exists = {
            let email = email.clone();
            self.pool.run(move |c| {
                let row =
                    c.query_one("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)", &[&email]).map_err(storage)?;
                Ok(row.get(0))
            })?
        };
        crate::backend::sign_in_or_join(self, &email, password, exists)
    }

    fn create_session(&self, user_id: u32, mfa_pending: bool) -> Result<String> {
        let token = random_token::<32>();
        let hash = sha256_hex(&token);
        self.pool.run(move |c| {
            let now = now_ms();
            c.execute(
                "DELETE FROM sessions WHERE created_ms < $1 OR (mfa_pending AND created_ms < $2)",
                &[&(now - SESSION_TTL_MS), &(now - MFA_PENDING_TTL_MS)],
            )
            .map_err(storage)?;
            c.execute(
                "INSERT INTO sessions (token_sha256, user_id, mfa_pending, created_ms) VALUES ($1, $2, $3, $4)",
                &[&hash, &i64::from(user_id), &mfa_pending, &now],
            )
            .map_err(storage)?;
            Ok(())
        })?;
        Ok(token)
    }

    fn session(&self, token: &str) -> Result<Option<Session>> {
        let hash = sha256_hex(token);
        let found = self.pool.run(move |c| {
            let row = c
                .query_opt(
                    &format!(
                        "SELECT {USER_COLUMNS}, sessions.mfa_pending, sessions.created_ms
                         FROM sessions JOIN users ON users.id = sessions.user_id WHERE token_sha256 = $1"
                    ),
                    &[&hash],
                )
                .map_err(storage)?;
            row.map(|r| Ok(Session { user: user_row(&r)?, mfa_pending: r.get(5), created_ms: r.get(6) })).transpose()
        })?;
        Ok(found.filter(|s| s.is_live(now_ms())))
    }

    fn complete_mfa(&self, token: &str) -> Result<()> {
        let hash = sha256_hex(token);
        self.pool.run(move |c| {
            c.execute("UPDATE sessions SET mfa_pending = FALSE WHERE token_sha256 = $1", &[&hash]).map_err(storage)?;
            Ok(())
        })
    }

    fn end_session(&self, token: &str) -> Result<()> {
        let hash = sha256_hex(token);
        self.pool.run(move |c| {
            c.execute("DELETE FROM sessions WHERE token_sha256 = $1", &[&hash]).map_err(storage)?;
            Ok(())
        })
    }

    fn end_all_sessions(&self, user_id: u32) -> Result<usize> {
        self.pool.run(move |c| {
            let n = c.execute("DELETE FROM sessions WHERE user_id = $1", &[&i64::from(user_id)]).map_err(storage)?;
            Ok(n as usize)
        })
    }

    fn begin_totp(&self, user_id: u32) -> Result<Vec<u8>> {
        // 160 bits, the HMAC-SHA1 block RFC 4226 recommends.
        let secret = random_bytes::<20>().to_vec();
        let stored = secret.clone();
        self.pool.run(move |c| {
            c.execute("UPDATE users SET totp_pending = $1 WHERE id = $2", &[&stored, &i64::from(user_id)])
                .map_err(storage)?;
            Ok(())
        })?;
        Ok(secret)
    }

    fn enable_totp(&self, user_id: u32, code: &str, now_ms: i64) -> Result<Vec<String>> {
        let code = code.to_owned();
        self.pool.run(move |c| {
            let uid = i64::from(user_id);
            let mut tx = c.transaction().map_err(storage)?;
            let pending: Option<Vec<u8>> = tx
                .query_opt("SELECT totp_pending FROM users WHERE id = $1 FOR UPDATE", &[&uid])
                .map_err(storage)?
                .and_then(|r| r.get(0));
            let step = enrolment_step(pending.as_deref(), &code, now_ms)?;
            let codes = recovery_codes();
            tx.execute(
                "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = $1 WHERE id = $2",
                &[&step, &uid],
            )
            .map_err(storage)?;
            tx.execute("DELETE FROM recovery_codes WHERE user_id = $1", &[&uid]).map_err(storage)?;
            for c in &codes {
                tx.execute(
                    "INSERT INTO recovery_codes (user_id, code_sha256) VALUES ($1, $2)",
                    &[&uid, &recovery_code_hash(c)],
                )
                .map_err(storage)?;
            }
            tx.commit().map_err(storage)?;
            Ok(codes)
        })
    }

    fn pending_totp(&self, user_id: u32) -> Result<Option<Vec<u8>>> {
        self.pool.run(move |c| {
            let row = c.query_opt("SELECT totp_pending FROM users WHERE id = $1", &[&i64::from(user_id)]);
            Ok(row.map_err(storage)?.and_then(|r| r.get(0)))
        })
    }

    fn disable_totp(&self, user_id: u32) -> Result<()> {
        self.pool.run(move |c| {
            let uid = i64::from(user_id);
            let mut tx = c.transaction().map_err(storage)?;
            tx.execute("UPDATE users SET totp_secret = NULL, totp_pending = NULL WHERE id = $1", &[&uid])
                .map_err(storage)?;
            tx.execute("DELETE FROM recovery_codes WHERE user_id = $1", &[&uid]).map_err(storage)?;
            tx.commit().map_err(storage)
        })
    }

    fn check_second_factor(&self, user_id: u32, code: &str, now_ms: i64) -> Result<bool> {
        let code = code.to_owned();
        self.pool.run(move |c| {
            let uid = i64::from(user_id);
            let row = c.query_opt("SELECT totp_secret FROM users WHERE id = $1", &[&uid]).map_err(storage)?;
            let Some(secret) = row.and_then(|r| r.get::<_, Option<Vec<u8>>>(0)) else { return Ok(false) };
            if let Some(step) = totp::matching_step(&secret, &code, now_ms) {
                // A code seen once (or an older one) is refused: no replay within its 90-second
                // window, even by two requests at once, as only one of them moves the step on.
                let n = c
                    .execute(
                        "UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1",
                        &[&step, &uid],
                    )
                    .map_err(storage)?;
                return Ok(n == 1);
            }
            let used = c
                .execute(
                    "DELETE FROM recovery_codes WHERE user_id = $1 AND code_sha256 = $2",
                    &[&uid, &recovery_code_hash(&code)],
                )
                .map_err(storage)?;
            Ok(used == 1)
        })
    }

    fn role(&self, user_id: u32, site_id: u32) -> Result<Option<Role>> {
        self.pool.run(move |c| role_in(c, user_id, site_id))
    }

    fn set_role(&self, user_id: u32, site_id: u32, role: Role) -> Result<()> {
        self.pool.run(move |c| store_role(c, user_id, site_id, role))
    }

    fn remove_member(&self, user_id: u32, site_id: u32) -> Result<()> {
        let n = self.pool.run(move |c| {
            // Their own segments of the site go with their role.
            c.execute(
                "DELETE FROM segments WHERE site_id = $1 AND owner_id = $2",
                &[&i64::from(site_id), &i64::from(user_id)],
            )
            .map_err(storage)?;
            c.execute(
                "DELETE FROM members WHERE site_id = $1 AND user_id = $2",
                &[&i64::from(site_id), &i64::from(user_id)],
            )
            .map_err(storage)
        })?;
        if n == 0 { Err(MetaError::no_member(user_id, site_id)) } else { Ok(()) }
    }

    fn members(&self, site_id: u32) -> Result<Vec<(User, Role)>> {
        self.pool.run(move |c| {
            let rows = c
                .query(
                    &format!(
                        "SELECT {USER_COLUMNS}, members.role FROM members JOIN users ON users.id = members.user_id
                         WHERE members.site_id = $1 ORDER BY users.email"
                    ),
                    &[&i64::from(site_id)],
                )
                .map_err(storage)?;
            rows.iter().map(|r| Ok((user_row(r)?, Role::parse(r.get(5))?))).collect()
        })
    }

    fn user_sites(&self, user_id: u32) -> Result<Vec<(Site, Role)>> {
        self.pool.run(move |c| {
            let rows = c
                .query(
                    "SELECT sites.id, sites.domain, sites.timezone,
                            CASE WHEN users.is_owner THEN 'owner' ELSE members.role END AS role
                     FROM sites JOIN users ON users.id = $1
                     LEFT JOIN members ON members.site_id = sites.id AND members.user_id = users.id
                     WHERE users.is_owner OR members.role IS NOT NULL
                     ORDER BY sites.domain",
                    &[&i64::from(user_id)],
                )
                .map_err(storage)?;
            rows.iter().map(|r| Ok((site_row(r)?, Role::parse(r.get(3))?))).collect()
        })
    }

    fn create_invite(&self, site_id: u32, role: Role, email: &str) -> Result<String> {
        let email = validate_email(email)?;
        let token = random_token::<24>();
        let hash = sha256_hex(&token);
        self.pool.run(move |c| {
            let now = now_ms();
            c.execute("DELETE FROM invites WHERE expires_ms < $1", &[&now]).map_err(storage)?;
            c.execute(
                "INSERT INTO invites (token_sha256, site_id, role, expires_ms, email) VALUES ($1, $2, $3, $4, $5)",
                &[&hash, &i64::from(site_id), &role.name(), &(now + INVITE_TTL_MS), &email],
            )
            .map_err(or_missing(|| MetaError::no_site(site_id)))?;
            Ok(())
        })?;
        Ok(token)
    }

    fn invite(&self, token: &str) -> Result<Option<Invite>> {
        let hash = sha256_hex(token);
        self.pool.run(move |c| {
            let row = c
                .query_opt(
                    "SELECT sites.id, sites.domain, sites.timezone, invites.role, invites.email
                     FROM invites JOIN sites ON sites.id = invites.site_id
                     WHERE invites.token_sha256 = $1 AND invites.expires_ms > $2",
                    &[&hash, &now_ms()],
                )
                .map_err(storage)?;
            row.map(|r| Ok(Invite { site: site_row(&r)?, role: Role::parse(r.get(3))?, email: r.get(4) })).transpose()
        })
    }

    fn accept_invite(&self, token: &str, user_id: u32) -> Result<(Site, Role)> {
        let hash = sha256_hex(token);
        self.pool.run(move |c| {
            let mut tx = c.transaction().map_err(storage)?;
            // The invite stays locked until this transaction ends: of two browsers racing for it,
            // the second finds it gone.
            let row = tx
                .query_opt(
                    "SELECT sites.id, sites.domain, sites.timezone, invites.role, invites.email
                     FROM invites JOIN sites ON sites.id = invites.site_id
                     WHERE invites.token_sha256 = $1 AND invites.expires_ms > $2 FOR UPDATE OF invites",
                    &[&hash, &now_ms()],
                )
                .map_err(storage)?
                .ok_or_else(MetaError::invite_used_up)?;
            let (site, offered, email): (Site, Role, String) = (site_row(&row)?, Role::parse(row.get(3))?, row.get(4));
            let for_them: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1 AND email = $2)",
                    &[&i64::from(user_id), &email],
                )
                .map_err(storage)?
                .get(0);
            if !for_them {
                return Err(MetaError::invite_for_another(&email));
            }
            tx.execute("DELETE FROM invites WHERE token_sha256 = $1", &[&hash]).map_err(storage)?;
            let current = role_in(&mut tx, user_id, site.id)?;
            let role = role_after_invite(current, offered);
            if current != Some(role) {
                store_role(&mut tx, user_id, site.id, role)?;
            }
            tx.commit().map_err(storage)?;
            Ok((site, role))
        })
    }

    fn create_shared_link(
        &self,
        site_id: u32,
        name: &str,
        password: Option<&str>,
        min_visitors: u32,
    ) -> Result<SharedLink> {
        let link = new_shared_link(site_id, name, password, min_visitors)?;
        self.pool.run(move |c| {
            c.execute(
                "INSERT INTO shared_links (slug, site_id, name, password_hash, created_ms, min_visitors)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &link.slug,
                    &i64::from(site_id),
                    &link.name,
                    &link.password_hash,
                    &link.created_ms,
                    &(link.min_visitors as i32),
                ],
            )
            .map_err(or_missing(|| MetaError::no_site(site_id)))?;
            Ok(link)
        })
    }

    fn shared_links(&self, site_id: u32) -> Result<Vec<SharedLink>> {
        self.pool.run(move |c| {
            let rows = c
                .query(&format!("{LINK_COLUMNS} WHERE site_id = $1 ORDER BY created_ms, slug"), &[&i64::from(site_id)])
                .map_err(storage)?;
            rows.iter().map(link_row).collect()
        })
    }

    fn shared_link(&self, slug: &str) -> Result<Option<SharedLink>> {
        let slug = slug.to_owned();
        self.pool.run(move |c| {
            let row = c.query_opt(&format!("{LINK_COLUMNS} WHERE slug = $1"), &[&slug]).map_err(storage)?;
            row.as_ref().map(link_row).transpose()
        })
    }

    fn check_shared_password(&self, link: &SharedLink, password: &str) -> bool {
        link.password_hash.as_deref().is_none_or(|h| password_matches(h, password))
    }

    fn remove_shared_link(&self, site_id: u32, slug: &str) -> Result<()> {
        let owned = slug.to_owned();
        let n = self.pool.run(move |c| {
            c.execute("DELETE FROM shared_links WHERE site_id = $1 AND slug = $2", &[&i64::from(site_id), &owned])
                .map_err(storage)
        })?;
        if n == 0 { Err(MetaError::no_shared_link(slug)) } else { Ok(()) }
    }

    fn server_key(&self) -> Result<[u8; 32]> {
        let fresh = random_bytes::<32>();
        self.pool.run(move |c| {
            // As with salts: the first insert wins and everyone reads the winner's key.
            c.execute(
                "INSERT INTO server_keys (name, value) VALUES ('cookies', $1) ON CONFLICT (name) DO NOTHING",
                &[&fresh.as_slice()],
            )
            .map_err(storage)?;
            let row = c.query_one("SELECT value FROM server_keys WHERE name = 'cookies'", &[]).map_err(storage)?;
            stored_server_key(row.get(0))
        })
    }
}
