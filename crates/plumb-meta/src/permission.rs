//! Who may do what: one table, consulted by every API endpoint, every dashboard page and form,
//! the collector's trusted-sender check, and rendered into the README (a test keeps the two
//! equal). A caller is the set of [`Holder`]s it is on a site; an action is allowed when one of
//! them is listed for it.

use crate::{ApiKey, Role, Scope};

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Needs no credential: signing in, first-run set-up, assets, the API document, the health
    /// check, browser events. Invite and shared pages carry their own secret in the address.
    Public,
    /// A signed-in user's own things: account, two-factor set-up, sessions, the sites list.
    Account,
    /// Read a site's numbers: Stats API, realtime, dashboard, exports, goals, security counts.
    Read,
    /// A site's saved views: list its segments, keep one's own (shared ones need `Manage`).
    Personal,
    /// Change a site's settings: timezone, goals, shared links, invites, firewall rules,
    /// annotations, shared segments, reports, alerts, webhooks; see its settings and snippet.
    Manage,
    /// Rename or delete a site (with its data), remove its people, read its audit log.
    Own,
    /// Add a site to this Plumb.
    CreateSite,
    /// Send events as a trusted server: set `timestamp`, `ip` and `user_agent`, skip the
    /// browser checks, under the key's own rate limit.
    SendAsServer,
}

/// What a caller is, on the site it asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Everyone, with or without a credential.
    Anyone,
    /// Any signed-in user (second factor given).
    SignedIn,
    /// A shared link of the site (with its password's cookie, if it has one).
    Link,
    /// A user with at least this role on the site.
    Role(Role),
    /// The first account of this Plumb (owner of every site).
    InstanceOwner,
    /// An API key with this scope on the site.
    Key(Scope),
    /// An API key with this scope, limited to no sites.
    UnlimitedKey(Scope),
}

/// The table. Roles include the ones below them: an owner is also an admin and a viewer.
pub const PERMISSIONS: [(Action, &[Holder]); 8] = [
    (Action::Public, &[Holder::Anyone]),
    (Action::Account, &[Holder::SignedIn]),
    (Action::Read, &[Holder::Link, Holder::Role(Role::Viewer), Holder::Key(Scope::StatsRead)]),
    (Action::Personal, &[Holder::Role(Role::Viewer), Holder::Key(Scope::SitesAdmin)]),
    (Action::Manage, &[Holder::Role(Role::Admin), Holder::Key(Scope::SitesAdmin)]),
    (Action::Own, &[Holder::Role(Role::Owner), Holder::Key(Scope::SitesAdmin)]),
    (Action::CreateSite, &[Holder::InstanceOwner, Holder::UnlimitedKey(Scope::SitesAdmin)]),
    (Action::SendAsServer, &[Holder::Key(Scope::EventsWrite)]),
];

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Public => "public",
            Action::Account => "account",
            Action::Read => "read",
            Action::Personal => "personal",
            Action::Manage => "manage",
            Action::Own => "own",
            Action::CreateSite => "create site",
            Action::SendAsServer => "send as server",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Action::Public => "sign in, set up, assets, API document, health, browser events",
            Action::Account => "own account, two-factor set-up, sessions, sites list",
            Action::Read => "Stats API, realtime, dashboard, exports, goals, security counts, annotations, funnels",
            Action::Personal => "list segments, save and delete one's own (a key's are shared ones)",
            Action::Manage => {
                "timezone, goals, shared links, invites, firewall rules, annotations, funnels, shared segments, reports, alerts, webhooks, settings page"
            }
            Action::Own => "rename or delete the site and its data, remove people, read the audit log",
            Action::CreateSite => "add a site",
            Action::SendAsServer => "events with `timestamp`, `ip`, `user_agent`; own rate limit",
        }
    }

    pub fn holders(self) -> &'static [Holder] {
        PERMISSIONS.iter().find(|(a, _)| *a == self).map(|(_, h)| *h).unwrap_or(&[])
    }
}

/// Whether any of `holders` may do `action`.
pub fn allowed(action: Action, holders: &[Holder]) -> bool {
    action.holders().iter().any(|h| holders.contains(h))
}

/// What a signed-in user is on a site: their role and every role below it.
pub fn user_holders(role: Option<Role>, instance_owner: bool) -> Vec<Holder> {
    let mut out = vec![Holder::Anyone, Holder::SignedIn];
    out.extend(Role::ALL.iter().filter(|r| role.is_some_and(|have| have >= **r)).map(|r| Holder::Role(*r)));
    if instance_owner {
        out.push(Holder::InstanceOwner);
    }
    out
}

/// What an API key is on a site (`None`: a question about no site, such as adding one).
pub fn key_holders(key: &ApiKey, site_id: Option<u32>) -> Vec<Holder> {
    let mut out = vec![Holder::Anyone];
    let on_site = match site_id {
        Some(id) => key.sites.as_ref().is_none_or(|s| s.contains(&id)),
        None => false,
    };
    for scope in &key.scopes {
        if on_site {
            out.push(Holder::Key(*scope));
        }
        if key.sites.is_none() {
            out.push(Holder::UnlimitedKey(*scope));
        }
    }
    out
}

/// The table as Markdown, for the README: one row per action, one column per kind of caller.
/// Key columns are keys limited to no sites; a key limited to some sites has the same rights on
/// those, none elsewhere, and cannot add sites.
pub fn markdown_table() -> String {
    let key = |scope| ApiKey {
        id: 0,
        name: String::new(),
        prefix: String::new(),
        created_ms: 0,
        scopes: vec![scope],
        sites: None,
    };
    let columns: Vec<(&str, Vec<Holder>)> = vec![
        ("anyone", vec![Holder::Anyone]),
        ("shared link", vec![Holder::Anyone, Holder::Link]),
        ("signed in, no role", user_holders(None, false)),
        ("viewer", user_holders(Some(Role::Viewer), false)),
        ("admin", user_holders(Some(Role::Admin), false)),
        ("owner", user_holders(Some(Role::Owner), false)),
        ("instance owner", user_holders(Some(Role::Owner), true)),
        ("key `stats:read`", key_holders(&key(Scope::StatsRead), Some(0))),
        ("key `sites:admin`", key_holders(&key(Scope::SitesAdmin), Some(0))),
        ("key `events:write`", key_holders(&key(Scope::EventsWrite), Some(0))),
    ];
    let mut out = String::from("| action | what it covers |");
    for (c, _) in &columns {
        out.push_str(&format!(" {c} |"));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(columns.len()));
    for (action, _) in PERMISSIONS {
        out.push_str(&format!("\n| {} | {} |", action.name(), action.describe()));
        for (_, holders) in &columns {
            out.push_str(if allowed(action, holders) { " yes |" } else { " — |" });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_below_them() {
        let admin = user_holders(Some(Role::Admin), false);
        assert!(allowed(Action::Read, &admin) && allowed(Action::Manage, &admin));
        assert!(!allowed(Action::Own, &admin), "deleting or renaming a site is the owner's");
        assert!(!allowed(Action::CreateSite, &user_holders(Some(Role::Owner), false)));
        assert!(allowed(Action::CreateSite, &user_holders(None, true)));
        assert!(!allowed(Action::Read, &user_holders(None, false)), "no role, nothing to read");
        assert!(allowed(Action::Account, &user_holders(None, false)));
    }

    #[test]
    fn keys_act_on_their_sites_with_their_scopes() {
        let key = |scopes: Vec<Scope>, sites: Option<Vec<u32>>| ApiKey {
            id: 1,
            name: "k".into(),
            prefix: "p".into(),
            created_ms: 0,
            scopes,
            sites,
        };
        let limited = key(vec![Scope::StatsRead, Scope::SitesAdmin, Scope::EventsWrite], Some(vec![7]));
        assert!(allowed(Action::Own, &key_holders(&limited, Some(7))));
        assert!(allowed(Action::SendAsServer, &key_holders(&limited, Some(7))));
        for a in [Action::Read, Action::Manage, Action::Own, Action::SendAsServer, Action::CreateSite] {
            assert!(!allowed(a, &key_holders(&limited, Some(8))), "{a:?} on another site");
        }
        let reader = key(vec![Scope::StatsRead], None);
        assert!(allowed(Action::Read, &key_holders(&reader, Some(8))));
        assert!(!allowed(Action::SendAsServer, &key_holders(&reader, Some(8))), "stats:read sends as a browser");
        assert!(!allowed(Action::CreateSite, &key_holders(&reader, None)));
        assert!(allowed(Action::CreateSite, &key_holders(&key(vec![Scope::SitesAdmin], None), None)));
        assert!(!allowed(Action::Account, &key_holders(&reader, Some(8))), "keys have no account pages");
    }

    #[test]
    fn the_readme_shows_the_table() {
        let readme = include_str!("../../../README.md");
        let table = markdown_table();
        assert!(readme.contains(&table), "README.md must contain the permission table:\n{table}");
    }
}
