//! The PostgreSQL backend against the machine's PostgreSQL (127.0.0.1:5432, user `postgres`, trust
//! authentication). Each test makes a database of its own, with an English collation so that
//! sorting by locale instead of by bytes would show, and drops it when it ends, passed or failed.

use plumb_meta::accounts::{sha256_hex, totp};
use plumb_meta::notices::{
    AlertKind, AuditEntry, Channel, DeliveryState, LEASE_MS, MAX_LOG, MAX_REPORTS, MAX_SITE_MAILS_PER_DAY, Message,
    NewMessage, ReportPeriod, WebhookEvent,
};
use plumb_meta::testing::{PgServer, SERVER, TestDb, admin};
use plumb_meta::{
    Accounts, BACKDATED_SALT_IDLE_MS, FUNNEL_START_DELAY_MS, FunnelStep, GoalKind, ImportState, Invite, MetaError,
    MetaStore, NewUser, PgMeta, Role, RuleKind, Scope, SecurityCount, SqliteMeta,
};
use std::fmt::Debug;
use std::sync::Barrier;
use std::time::{Duration, Instant};

const DAY_MS: i64 = 86_400_000;

fn sqlite(name: &str) -> (SqliteMeta, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("plumb-meta-pg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (SqliteMeta::open(&dir.join("meta.db")).unwrap(), dir)
}

/// What a backend answered, without what differs from run to run (ids, times, secrets).
#[derive(Default)]
struct Log(Vec<String>);

impl Log {
    fn note(&mut self, what: &str, value: impl Debug) {
        self.0.push(format!("{what}: {value:?}"));
    }

    /// Records whether a call succeeded and, if not, its error word for word.
    fn outcome<T>(&mut self, what: &str, answer: plumb_meta::Result<T>) -> Option<T> {
        match answer {
            Ok(v) => {
                self.0.push(format!("{what}: ok"));
                Some(v)
            }
            Err(e) => {
                self.0.push(format!("{what}: {e:?}"));
                None
            }
        }
    }
}

/// Every call of both traits, with what it must answer; returns the answers that must be the same
/// from every backend.
fn script(m: &dyn MetaStore) -> Vec<String> {
    let mut log = Log::default();
    let domains = |sites: Vec<plumb_meta::Site>| sites.into_iter().map(|s| s.domain).collect::<Vec<_>>();

    // Sites.
    let s = m.add_site("Example.com", "Europe/Berlin").unwrap();
    assert_eq!((s.domain.as_str(), s.timezone.name()), ("example.com", "Europe/Berlin"));
    assert_eq!(m.site_by_domain("example.com").unwrap(), Some(s.clone()));
    assert_eq!(m.site_by_id(s.id).unwrap(), Some(s.clone()));
    assert_eq!(m.site_by_id(s.id + 1000).unwrap(), None);
    assert_eq!(m.site_by_domain("nowhere.example").unwrap(), None);
    log.outcome("the same domain again", m.add_site("example.com", "UTC"));
    log.outcome("an unknown timezone", m.add_site("b.example", "Nowhere/Land"));
    log.outcome("a bad domain", m.add_site("exa mple.com", "UTC"));
    let b = m.add_site("b.example", "UTC").unwrap();
    let moved = m.update_site(b.id, Some("A-b.example"), Some("Asia/Tokyo")).unwrap();
    assert_eq!((moved.id, moved.domain.as_str(), moved.timezone.name()), (b.id, "a-b.example", "Asia/Tokyo"));
    assert_eq!(m.site_by_domain("a-b.example").unwrap(), Some(moved.clone()));
    assert_eq!(m.update_site(b.id, None, None).unwrap(), moved, "nothing to change");
    log.outcome("rename onto a taken domain", m.update_site(b.id, Some("example.com"), None));
    log.outcome("move to an unknown timezone", m.update_site(b.id, None, Some("Mars/Base")));
    log.outcome("change a missing site", m.update_site(999_999, Some("not a domain"), None));
    m.add_site("ab.example", "UTC").unwrap();
    let sites = domains(m.list_sites().unwrap());
    assert_eq!(sites, ["a-b.example", "ab.example", "example.com"]);
    log.note("sites", sites);

    // Retention: months kept, or forever.
    assert_eq!(m.retention(s.id).unwrap(), None);
    m.set_retention(s.id, Some(12)).unwrap();
    m.set_retention(b.id, Some(3)).unwrap();
    m.set_retention(b.id, Some(1200)).unwrap();
    assert_eq!((m.retention(s.id).unwrap(), m.retention(b.id).unwrap()), (Some(12), Some(1200)));
    log.outcome("keep 0 months", m.set_retention(s.id, Some(0)));
    log.outcome("keep 1201 months", m.set_retention(s.id, Some(1201)));
    log.outcome("a missing site's retention", m.set_retention(999_999, Some(3)));
    m.set_retention(b.id, None).unwrap();
    assert_eq!(m.retentions().unwrap(), [(s.id, 12)]);

    // Imports: a run is read once finished; a later run of the same key replaces it.
    let first = m.begin_import(s.id, "plausible", "2024-01-01..2024-01-31", "export.zip").unwrap();
    assert_eq!((first.state, first.rows, first.dims.len()), (ImportState::Loading, 0, 0));
    log.outcome("an import of a missing site", m.begin_import(999_999, "plausible", "k", "x"));
    assert_eq!(m.finish_import(first.id, 19_700, 19_730, &[0, 1, 250], 42).unwrap(), []);
    let done = m.imports(Some(s.id)).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].state, done[0].first_day, done[0].last_day, done[0].rows),
        (ImportState::Done, 19_700, 19_730, 42)
    );
    assert_eq!(done[0].dims, [0, 1, 250]);
    let other = m.begin_import(b.id, "plausible", "2024-01-01..2024-01-31", "export.zip").unwrap();
    let again = m.begin_import(s.id, "plausible", "2024-01-01..2024-01-31", "export.zip").unwrap();
    let replaced = m.finish_import(again.id, 19_700, 19_731, &[0], 7).unwrap();
    assert_eq!(replaced.iter().map(|i| (i.id, i.state)).collect::<Vec<_>>(), [(first.id, ImportState::Removing)]);
    log.outcome("finishing a finished import", m.finish_import(again.id, 0, 0, &[], 0));
    m.delete_import(first.id).unwrap();
    let all = m.imports(None).unwrap();
    assert_eq!(
        all.iter().map(|i| (i.id, i.state)).collect::<Vec<_>>(),
        [(other.id, ImportState::Loading), (again.id, ImportState::Done)]
    );
    assert_eq!(m.mark_import_removing(other.id).unwrap().state, ImportState::Removing);
    log.outcome("removing a missing import", m.mark_import_removing(999_999));
    // Aliases: an older tracker's site id counts into a site.
    m.set_alias("ABCDE", b.id).unwrap();
    m.set_alias("ABCDE", s.id).unwrap();
    assert_eq!(m.site_by_alias("ABCDE").unwrap().map(|x| x.id), Some(s.id));
    assert_eq!(m.site_by_alias("ZZZZZ").unwrap(), None);
    log.outcome("an alias with a space", m.set_alias("AB CDE", s.id));
    log.outcome("an alias of a missing site", m.set_alias("QWERT", 999_999));

    // Goals, in byte order of their names (upper case first).
    let signup = m.add_goal(s.id, GoalKind::Event(" Signup ".into()), None).unwrap();
    assert_eq!((signup.display_name.as_str(), signup.currency.as_deref()), ("Signup", None));
    let blog = m.add_goal(s.id, GoalKind::Page("/blog/**".into()), None).unwrap();
    assert_eq!(blog.display_name, "Visit /blog/**");
    let same = m.add_goal(s.id, GoalKind::Event("Signup".into()), Some("Other")).unwrap();
    assert_eq!(same, signup, "the same definition is the same goal");
    log.outcome("another goal under a taken name", m.add_goal(s.id, GoalKind::Event("Buy".into()), Some("Signup")));
    log.outcome("a page goal without /", m.add_goal(s.id, GoalKind::Page("blog".into()), None));
    log.outcome("a pageview goal", m.add_goal(s.id, GoalKind::Event("pageview".into()), None));
    log.outcome("an empty goal name", m.add_goal(s.id, GoalKind::Event("x".into()), Some("  ")));
    log.outcome("a goal of a missing site", m.add_goal(999_999, GoalKind::Event("x".into()), None));
    m.add_goal(s.id, GoalKind::Event("zeta".into()), Some("Zeta")).unwrap();
    m.add_goal(s.id, GoalKind::Event("alpha".into()), Some("alpha")).unwrap();
    let names: Vec<String> = m.list_goals(s.id).unwrap().into_iter().map(|g| g.display_name).collect();
    assert_eq!(names, ["Signup", "Visit /blog/**", "Zeta", "alpha"]);
    log.note("goals", names);
    let paid = m.set_goal_currency(s.id, signup.id, Some("eur")).unwrap();
    assert_eq!(paid.currency.as_deref(), Some("EUR"));
    assert_eq!(m.list_goals(s.id).unwrap()[0], paid);
    log.outcome("revenue on a page goal", m.set_goal_currency(s.id, blog.id, Some("EUR")));
    log.outcome("not a currency", m.set_goal_currency(s.id, signup.id, Some("euro")));
    log.outcome("the currency of a missing goal", m.set_goal_currency(s.id, 999_999, None));
    assert_eq!(m.set_goal_currency(s.id, signup.id, None).unwrap(), signup, "a plain goal again");
    let sale = m.add_goal_with_currency(s.id, GoalKind::Event("Sale".into()), None, Some("usd")).unwrap();
    assert_eq!(m.list_goals(s.id).unwrap().iter().find(|g| g.id == sale.id).unwrap().currency.as_deref(), Some("USD"));
    log.outcome("a revenue page goal", m.add_goal_with_currency(s.id, GoalKind::Page("/x".into()), None, Some("USD")));
    m.remove_goal(s.id, blog.id).unwrap();
    log.outcome("remove a removed goal", m.remove_goal(s.id, blog.id));

    // API keys.
    let (key, secret) = m.create_key(" ci ", &[Scope::StatsRead, Scope::SitesAdmin], Some(&[s.id, 7])).unwrap();
    assert_eq!((key.name.as_str(), key.sites.as_deref()), ("ci", Some(&[s.id, 7][..])));
    assert!(secret.starts_with("plumb_") && secret.starts_with(&key.prefix), "{secret}");
    assert_eq!(m.verify_key(&secret).unwrap(), Some(key.clone()));
    assert!(key.allows(Scope::StatsRead, s.id) && !key.allows(Scope::StatsRead, 8));
    assert!(!key.allows(Scope::EventsWrite, s.id));
    let (all, _) = m.create_key("all sites", &[Scope::EventsWrite], None).unwrap();
    assert_eq!(all.sites, None);
    log.outcome("the same key name", m.create_key("ci", &[Scope::StatsRead], None));
    log.outcome("a key without scopes", m.create_key("none", &[], None));
    log.outcome("a key without a name", m.create_key(" ", &[Scope::StatsRead], None));
    assert_eq!(m.list_keys().unwrap(), [all, key]);
    assert_eq!(m.verify_key("plumb_wrong").unwrap(), None);
    m.revoke_key("ci").unwrap();
    assert_eq!(m.verify_key(&secret).unwrap(), None);
    log.outcome("revoke a revoked key", m.revoke_key("ci"));

    // Firewall rules.
    let ip = m.add_rule(s.id, RuleKind::parse("ip", "203.0.113.7/24").unwrap()).unwrap();
    assert_eq!(ip.kind.value(), "203.0.113.0/24");
    assert_eq!(m.add_rule(s.id, RuleKind::parse("ip", "203.0.113.0/24").unwrap()).unwrap(), ip, "kept once");
    m.add_rule(s.id, RuleKind::parse("country", "de").unwrap()).unwrap();
    m.add_rule(s.id, RuleKind::parse("allow_host", "*.Example.com").unwrap()).unwrap();
    m.add_rule(s.id, RuleKind::parse("path", "/admin/**").unwrap()).unwrap();
    log.outcome("a rule of a missing site", m.add_rule(999_999, RuleKind::parse("country", "FR").unwrap()));
    let kinds: Vec<String> =
        m.rules(s.id).unwrap().iter().map(|r| format!("{} {}", r.kind.name(), r.kind.value())).collect();
    assert_eq!(kinds, ["ip 203.0.113.0/24", "country DE", "allow_host *.example.com", "path /admin/**"]);
    log.note("rules", kinds);
    m.remove_rule(s.id, ip.id).unwrap();
    log.outcome("remove a removed rule", m.remove_rule(s.id, ip.id));
    assert_eq!(m.rules(s.id).unwrap().len(), 3);

    // Annotations and segments: bounded text, per site, removed by id.
    let deploy = m.add_annotation(s.id, 19_800, "  Deployed v2  ").unwrap();
    assert_eq!((deploy.day, deploy.text.as_str()), (19_800, "Deployed v2"));
    m.add_annotation(s.id, 19_790, "Campaign").unwrap();
    m.add_annotation(s.id, 19_900, "Later").unwrap();
    let shown: Vec<String> = m.annotations(s.id, 19_700, 19_850).unwrap().into_iter().map(|a| a.text).collect();
    assert_eq!(shown, ["Campaign", "Deployed v2"]);
    log.outcome("an empty annotation", m.add_annotation(s.id, 1, " "));
    log.outcome("a two-line annotation", m.add_annotation(s.id, 1, "a\nb"));
    log.outcome("an annotation of a missing site", m.add_annotation(999_999, 1, "x"));
    m.remove_annotation(s.id, deploy.id).unwrap();
    log.outcome("remove a removed annotation", m.remove_annotation(s.id, deploy.id));

    // Security counts.
    let c = |hour, reason: &str, count| SecurityCount { site_id: s.id, hour, reason: reason.into(), count };
    m.add_security_counts(&[c(10, "crawler", 2), c(11, "crawler", 1)]).unwrap();
    m.add_security_counts(&[
        c(10, "headless", 1),
        c(11, "Referrer", 4),
        c(10, "crawler", 3),
        SecurityCount { site_id: 999_999, ..c(10, "x", 1) },
    ])
    .unwrap();
    m.add_security_counts(&[]).unwrap();
    let counts = m.security_counts(s.id, 10).unwrap();
    assert_eq!(counts, [c(10, "crawler", 5), c(10, "headless", 1), c(11, "Referrer", 4), c(11, "crawler", 1)]);
    assert_eq!(m.security_counts(s.id, 11).unwrap(), [c(11, "Referrer", 4), c(11, "crawler", 1)]);
    assert!(m.security_counts(999_999, 0).unwrap().is_empty(), "counts of missing sites are dropped");

    // Salts.
    let day = 20_000;
    let noon = day as i64 * DAY_MS + DAY_MS / 2;
    let salt = m.salt_for_day(day, noon).unwrap();
    assert!(salt.is_some());
    assert_eq!(m.salt_for_day(day, noon).unwrap(), salt);
    let tomorrow = m.salt_for_day(day + 1, noon).unwrap();
    assert!(tomorrow.is_some() && tomorrow != salt);
    assert_eq!(m.salt_for_day(day + 3, noon).unwrap(), None, "not begun anywhere");
    assert_eq!(m.salt_for_day(day - 2, noon).unwrap(), None, "over everywhere");
    assert_eq!(m.purge_salts(noon).unwrap(), 0);
    let later = noon + 2 * DAY_MS;
    assert_eq!(m.purge_salts(later).unwrap(), 2);
    assert_eq!(m.salt_for_day(day, later).unwrap(), None);
    assert_eq!(m.purge_salts(later).unwrap(), 0);

    // Users.
    let owner = m.add_user(" Owner@Example.com ", "correct horse battery", NewUser::OwnerIfNone).unwrap();
    assert_eq!(owner.email, "owner@example.com");
    assert!(owner.is_owner && !owner.totp_enabled, "the first user owns the instance");
    assert_eq!(m.check_password("OWNER@example.com", "correct horse battery").unwrap(), Some(owner.clone()));
    assert_eq!(m.check_password("owner@example.com", "correct horse batterY").unwrap(), None);
    assert_eq!(m.check_password("nobody@example.com", "correct horse battery").unwrap(), None);
    assert_eq!(m.check_password("not an address", "correct horse battery").unwrap(), None);
    log.outcome("the same e-mail again", m.add_user("owner@example.com", "another long one", NewUser::OwnerIfNone));
    log.outcome("not an e-mail address", m.add_user("not-an-address", "long enough pw", NewUser::OwnerIfNone));
    log.outcome("a short password", m.add_user("b@example.com", "short", NewUser::OwnerIfNone));
    let viewer = m.add_user("viewer@example.com", "long enough pw", NewUser::OwnerIfNone).unwrap();
    // Funnels: copies of goals, counted from a little after they are made; bounded.
    let step = |name: &str, kind: GoalKind| FunnelStep { name: name.into(), kind };
    let steps =
        [step("Visit /pricing", GoalKind::Page("/pricing".into())), step("Signup", GoalKind::Event("Signup".into()))];
    let funnel = m.add_funnel(s.id, " Sign-ups ", &steps).unwrap();
    assert_eq!((funnel.name.as_str(), funnel.steps.as_slice()), ("Sign-ups", &steps[..]));
    assert_eq!(funnel.starts_ms - funnel.created_ms, FUNNEL_START_DELAY_MS);
    assert_eq!(m.funnels(Some(s.id)).unwrap(), std::slice::from_ref(&funnel));
    assert_eq!(m.funnels(None).unwrap(), std::slice::from_ref(&funnel));
    assert_eq!(m.funnels(Some(s.id + 1000)).unwrap(), []);
    log.outcome("a funnel of one step", m.add_funnel(s.id, "x", &steps[..1]));
    log.outcome("a funnel of nine steps", m.add_funnel(s.id, "x", &vec![steps[0].clone(); 9]));
    log.outcome(
        "a funnel with a bad step",
        m.add_funnel(s.id, "x", &[step("x", GoalKind::Page("no-slash".into())), steps[1].clone()]),
    );
    log.outcome("a funnel without a name", m.add_funnel(s.id, " ", &steps));
    log.outcome("a funnel of a missing site", m.add_funnel(999_999, "x", &steps));
    for i in 1..plumb_meta::MAX_FUNNELS {
        m.add_funnel(s.id, &format!("f{i}"), &steps).unwrap();
    }
    log.outcome("one funnel too many", m.add_funnel(s.id, "x", &steps));
    for f in m.funnels(Some(s.id)).unwrap().into_iter().filter(|f| f.id != funnel.id) {
        m.remove_funnel(s.id, f.id).unwrap();
    }
    log.outcome("remove a removed funnel", m.remove_funnel(s.id, funnel.id + 1));
    assert_eq!(m.funnels(None).unwrap(), std::slice::from_ref(&funnel));

    // Segments: a shared one and the viewer's own.
    let shared = m.add_segment(s.id, "Germany", r#"[["is","visit:country",["DE"]]]"#, None).unwrap();
    let mine = m.add_segment(s.id, "Blog", r#"[["contains","event:page",["/blog"]]]"#, Some(viewer.id)).unwrap();
    assert_eq!(m.segments(s.id).unwrap(), [mine.clone(), shared.clone()], "by name");
    log.outcome("a segment without a name", m.add_segment(s.id, "", "[]", None));
    log.outcome("a segment of a missing site", m.add_segment(999_999, "x", "[]", None));
    m.remove_segment(s.id, mine.id).unwrap();
    log.outcome("remove a removed segment", m.remove_segment(s.id, mine.id));
    assert!(!viewer.is_owner, "one owner");
    let joined = m.sign_in_or_join("Joiner@example.com", "joiner password").unwrap().unwrap();
    assert!(!joined.is_owner);
    assert_eq!(m.sign_in_or_join("joiner@example.com", "joiner password").unwrap(), Some(joined.clone()));
    assert_eq!(m.sign_in_or_join("joiner@example.com", "wrong password").unwrap(), None);
    log.outcome("join with a short password", m.sign_in_or_join("new@example.com", "short"));
    log.outcome("join with a bad address", m.sign_in_or_join("new", "long enough pw"));
    assert_eq!(m.list_users().unwrap(), [joined.clone(), owner.clone(), viewer.clone()]);

    // Sessions.
    let t1 = m.create_session(owner.id, false).unwrap();
    let t2 = m.create_session(owner.id, true).unwrap();
    assert_ne!(t1, t2);
    let one = m.session(&t1).unwrap().unwrap();
    assert_eq!((&one.user, one.mfa_pending), (&owner, false));
    assert!(m.session(&t2).unwrap().unwrap().mfa_pending);
    m.complete_mfa(&t2).unwrap();
    assert!(!m.session(&t2).unwrap().unwrap().mfa_pending);
    assert_eq!(m.session("nope").unwrap(), None);
    m.end_session(&t1).unwrap();
    assert_eq!(m.session(&t1).unwrap(), None);
    m.create_session(owner.id, false).unwrap();
    assert_eq!(m.end_all_sessions(owner.id).unwrap(), 2);
    assert_eq!(m.session(&t2).unwrap(), None);

    // Second factors.
    let now = 1_800_000_000_000;
    assert!(!m.check_second_factor(viewer.id, "123456", now).unwrap(), "none yet");
    assert_eq!(m.pending_totp(viewer.id).unwrap(), None);
    log.outcome("enable before enrolling", m.enable_totp(viewer.id, "123456", now));
    let secret = m.begin_totp(viewer.id).unwrap();
    assert_eq!(secret.len(), 20);
    assert_eq!(m.pending_totp(viewer.id).unwrap(), Some(secret.clone()));
    let code = |t: i64| format!("{:06}", totp::code_at(&secret, t / 1000 / totp::STEP_SECS));
    log.outcome("enable with a malformed code", m.enable_totp(viewer.id, "000000x", now));
    let codes = m.enable_totp(viewer.id, &code(now), now).unwrap();
    assert_eq!(codes.len(), 10);
    assert_eq!(m.pending_totp(viewer.id).unwrap(), None);
    assert!(m.check_password("viewer@example.com", "long enough pw").unwrap().unwrap().totp_enabled);
    assert!(!m.check_second_factor(viewer.id, &code(now), now).unwrap(), "the enrolment code is spent");
    let later = now + 60_000;
    assert!(m.check_second_factor(viewer.id, &code(later), later).unwrap());
    assert!(!m.check_second_factor(viewer.id, &code(later), later).unwrap(), "replayed");
    assert!(!m.check_second_factor(viewer.id, &code(later - 30_000), later).unwrap(), "an older step");
    assert!(m.check_second_factor(viewer.id, &codes[3].to_uppercase(), later).unwrap());
    assert!(!m.check_second_factor(viewer.id, &codes[3], later).unwrap(), "recovery codes work once");
    m.disable_totp(viewer.id).unwrap();
    assert!(!m.check_second_factor(viewer.id, &codes[4], later).unwrap());
    assert!(!m.check_password("viewer@example.com", "long enough pw").unwrap().unwrap().totp_enabled);

    // Roles and invites.
    assert_eq!(m.role(owner.id, moved.id).unwrap(), Some(Role::Owner), "the owner owns every site");
    assert_eq!(m.role(viewer.id, s.id).unwrap(), None);
    assert_eq!(m.role(owner.id, 999_999).unwrap(), None, "no such site");
    let token = m.create_invite(s.id, Role::Viewer, "Viewer@example.com").unwrap();
    let offer = Invite { site: s.clone(), role: Role::Viewer, email: "viewer@example.com".into() };
    assert_eq!(m.invite(&token).unwrap(), Some(offer));
    assert_eq!(m.invite("nope").unwrap(), None);
    log.outcome("an invite to a missing site", m.create_invite(999_999, Role::Viewer, "x@example.com"));
    log.outcome("an invite for a bad address", m.create_invite(s.id, Role::Viewer, "x"));
    log.outcome("accept someone else's invite", m.accept_invite(&token, owner.id));
    assert_eq!(m.accept_invite(&token, viewer.id).unwrap(), (s.clone(), Role::Viewer));
    log.outcome("accept a used invite", m.accept_invite(&token, viewer.id));
    log.outcome("accept no invite", m.accept_invite("nope", viewer.id));
    assert_eq!(m.role(viewer.id, s.id).unwrap(), Some(Role::Viewer));
    assert_eq!(m.user_sites(viewer.id).unwrap(), [(s.clone(), Role::Viewer)]);
    let owned: Vec<(String, Role)> = m.user_sites(owner.id).unwrap().into_iter().map(|(s, r)| (s.domain, r)).collect();
    assert_eq!(owned.len(), 3);
    log.note("the owner's sites", owned);
    assert_eq!(m.members(s.id).unwrap(), [(viewer.clone(), Role::Viewer)]);
    m.set_role(viewer.id, s.id, Role::Admin).unwrap();
    let again = m.create_invite(s.id, Role::Viewer, "viewer@example.com").unwrap();
    assert_eq!(m.accept_invite(&again, viewer.id).unwrap(), (s.clone(), Role::Admin), "never lowered");
    let to_owner = m.create_invite(moved.id, Role::Admin, "owner@example.com").unwrap();
    assert_eq!(m.accept_invite(&to_owner, owner.id).unwrap(), (moved.clone(), Role::Owner));
    log.outcome("a role for a missing user", m.set_role(999_999, s.id, Role::Viewer));
    log.outcome("a role on a missing site", m.set_role(viewer.id, 999_999, Role::Viewer));
    m.set_role(joined.id, s.id, Role::Viewer).unwrap();
    assert_eq!(m.members(s.id).unwrap(), [(joined.clone(), Role::Viewer), (viewer.clone(), Role::Admin)]);
    m.remove_member(joined.id, s.id).unwrap();
    log.outcome("remove a removed member", m.remove_member(joined.id, s.id));

    // Shared links.
    let public = m.create_shared_link(s.id, " Public ", None, 0).unwrap();
    assert_eq!((public.name.as_str(), public.password_hash.as_deref()), ("Public", None));
    let private = m.create_shared_link(s.id, "Board", Some("board password"), 5).unwrap();
    assert_eq!(m.shared_link(&private.slug).unwrap().unwrap().min_visitors, 5);
    assert!(private.password_hash.as_deref().is_some_and(|h| h.starts_with("$argon2id$")));
    log.outcome("a link with a short password", m.create_shared_link(s.id, "Short", Some("pw"), 0));
    log.outcome("a link without a name", m.create_shared_link(s.id, " ", None, 0));
    log.outcome("a link to a missing site", m.create_shared_link(999_999, "x", None, 0));
    log.outcome("a link hiding too much", m.create_shared_link(s.id, "x", None, 1_001));
    assert!(m.check_shared_password(&public, ""));
    assert!(m.check_shared_password(&private, "board password"));
    assert!(!m.check_shared_password(&private, "board passworD"));
    assert_eq!(m.shared_link(&private.slug).unwrap(), Some(private.clone()));
    let mut links = m.shared_links(s.id).unwrap();
    links.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(links, [private.clone(), public.clone()]);
    m.remove_shared_link(s.id, &public.slug).unwrap();
    let gone = m.remove_shared_link(s.id, &public.slug).unwrap_err().to_string();
    log.note("remove a removed link", gone.replace(&public.slug, "<slug>"));
    assert_eq!(m.shared_link(&public.slug).unwrap(), None);

    // Reports, alerts, webhooks and the outbox.
    let weekly = m.add_report(s.id, " Boss@Example.com ", ReportPeriod::Week).unwrap();
    assert_eq!((weekly.email.as_str(), weekly.period), ("boss@example.com", ReportPeriod::Week));
    m.add_report(s.id, "boss@example.com", ReportPeriod::Month).unwrap();
    log.outcome("the same report again", m.add_report(s.id, "BOSS@example.com", ReportPeriod::Week));
    log.outcome("a report to no address", m.add_report(s.id, "boss", ReportPeriod::Week));
    log.outcome("a report of a missing site", m.add_report(999_999, "a@b.example", ReportPeriod::Week));
    for i in 2..MAX_REPORTS {
        m.add_report(s.id, &format!("r{i}@example.com"), ReportPeriod::Week).unwrap();
    }
    log.outcome("one report too many", m.add_report(s.id, "last@example.com", ReportPeriod::Week));
    assert_eq!(m.report(weekly.id).unwrap(), Some(weekly.clone()));
    assert_eq!(m.reports(Some(s.id)).unwrap().len() as u32, MAX_REPORTS);
    m.remove_report(s.id, weekly.id).unwrap();
    log.outcome("remove a removed report", m.remove_report(s.id, weekly.id));
    assert_eq!(m.report(weekly.id).unwrap(), None);

    let spike = m.add_alert(s.id, AlertKind::Spike, 50, 30, Some("Ops@Example.com")).unwrap();
    assert_eq!((spike.email.as_deref(), spike.last_fired_ms), (Some("ops@example.com"), None));
    let drop = m.add_alert(s.id, AlertKind::Drop, 120, 60, None).unwrap();
    log.outcome("an alert without a cool-down", m.add_alert(s.id, AlertKind::Spike, 5, 0, None));
    log.outcome("a drop of a year", m.add_alert(s.id, AlertKind::Drop, 525_600, 60, None));
    assert_eq!(m.alerts(Some(s.id)).unwrap(), [spike.clone(), drop.clone()]);
    let hook = m.add_webhook(s.id, "https://hooks.example.com/plumb", &[WebhookEvent::Alert]).unwrap();
    assert!(hook.secret.starts_with("whsec_") && hook.secret.len() > 40);
    log.outcome("a webhook to ftp", m.add_webhook(s.id, "ftp://x.example/", &[WebhookEvent::Alert]));
    log.outcome("a webhook of nothing", m.add_webhook(s.id, "https://x.example/", &[]));
    assert_eq!(m.webhook(hook.id).unwrap(), Some(hook.clone()));
    assert_eq!(m.webhooks(None).unwrap(), std::slice::from_ref(&hook));

    let now = 1_700_000_000_000_i64;
    let message = |key: &str, channel: Channel, target: &str| NewMessage {
        site_id: s.id,
        key: key.into(),
        channel,
        target: target.into(),
        payload: format!("{{\"for\":\"{key}\"}}"),
    };
    let fire = [message("alert:a", Channel::Email, "ops@example.com"), message("alert:b", Channel::Webhook, "1")];
    assert!(m.fire_alert(spike.id, now, &fire).unwrap());
    assert!(!m.fire_alert(spike.id, now + 29 * 60_000, &[message("alert:c", Channel::Email, "x")]).unwrap());
    assert_eq!(m.alerts(Some(s.id)).unwrap()[0].last_fired_ms, Some(now));
    assert_eq!(
        m.enqueue(&[message("alert:a", Channel::Email, "again"), message("daily:1", Channel::Webhook, "1")], now + 1)
            .unwrap(),
        1
    );
    assert!(m.has_message("alert:a").unwrap() && !m.has_message("alert:c").unwrap());
    assert_eq!(m.next_due().unwrap(), Some(now));
    let claimed = m.claim_due(now + 1, 2, true).unwrap();
    assert_eq!(
        claimed.iter().map(|c| (c.key.as_str(), c.attempts)).collect::<Vec<_>>(),
        [("alert:a", 1), ("alert:b", 1)]
    );
    assert!(m.claim_due(now + 1, 10, true).unwrap().iter().all(|c| c.key == "daily:1"), "leased messages wait");
    assert!(m.mark_sent(&claimed[0], now + 2).unwrap());
    assert!(m.mark_failed(&claimed[1], "503 from the hook", Some(now + 5_000)).unwrap());
    assert!(!m.mark_sent(&claimed[1], now + 2).unwrap(), "a claim marks once");
    let again = m.claim_due(now + LEASE_MS + 10, 10, false).unwrap();
    assert_eq!(
        again.iter().map(|c| (c.key.as_str(), c.attempts)).collect::<Vec<_>>(),
        [("alert:b", 2), ("daily:1", 2)]
    );
    // The first claim of `daily:1` ran out of its lease; the second holds it now.
    assert!(
        !m.mark_failed(&Message { attempts: 1, ..again[1].clone() }, "late", Some(now)).unwrap(),
        "a stale claim marks nothing"
    );
    assert!(m.mark_failed(&again[0], "gone", None).unwrap());
    assert!(m.mark_sent(&again[1], now + LEASE_MS + 20).unwrap());
    let log_of = |target| {
        m.messages(s.id, Channel::Webhook, target, 10)
            .unwrap()
            .into_iter()
            .map(|c| (c.key, c.state.name(), c.attempts, c.last_error))
            .collect::<Vec<_>>()
    };
    log.note("webhook deliveries", log_of(Some("1")));
    assert_eq!(log_of(None).len(), 2);
    let mailed = &m.messages(s.id, Channel::Email, None, 10).unwrap()[0];
    assert_eq!((mailed.state, mailed.payload.as_str()), (DeliveryState::Sent, ""), "a sent message keeps no body");
    assert_eq!(m.purge_messages(now + 3).unwrap(), 1, "the one done before then");
    log.note("left after the purge", log_of(None).len());
    // A site's mail budget: a day's worth of mail, then no more (webhooks go on).
    let mails: Vec<NewMessage> =
        (0..MAX_SITE_MAILS_PER_DAY + 1).map(|i| message(&format!("m{i}"), Channel::Email, "x@y.example")).collect();
    let sent_today = m.messages(s.id, Channel::Email, None, MAX_LOG).unwrap().len() as u32;
    assert_eq!(m.enqueue(&mails, now).unwrap() as u32, MAX_SITE_MAILS_PER_DAY - sent_today);
    assert_eq!(m.enqueue(&[message("hook", Channel::Webhook, "1")], now).unwrap(), 1);
    assert_eq!(
        m.enqueue(&[message("later", Channel::Email, "x@y.example")], now + 86_400_000).unwrap(),
        1,
        "a day later"
    );
    let entry = |n: i64| AuditEntry {
        at_ms: n,
        actor: "user `a@b.example`".into(),
        action: format!("change {n}"),
        detail: "x".repeat(400),
    };
    for n in 0..3 {
        m.record_audit(s.id, &entry(n)).unwrap();
    }
    let audit = m.audit_log(s.id, 2).unwrap();
    assert_eq!(audit.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["change 2", "change 1"], "newest first");
    assert_eq!(audit[0].detail.len(), 300, "bounded");
    log.outcome("audit of a missing site", m.record_audit(999_999, &entry(9)));

    // The cookie key.
    let key = m.server_key().unwrap();
    assert_eq!(m.server_key().unwrap(), key);
    assert_ne!(key, [0; 32]);

    // Removing a site takes what is its along and leaves a tombstone until its rows are purged.
    assert!(m.deleted_sites().unwrap().is_empty());
    assert_eq!(m.remove_site("Example.com.").unwrap(), s);
    log.outcome("remove a removed site", m.remove_site("example.com"));
    assert_eq!(m.deleted_sites().unwrap(), [(s.id, false)]);
    m.mark_purged(s.id).unwrap();
    assert_eq!(m.deleted_sites().unwrap(), [(s.id, true)]);
    assert!(m.list_goals(s.id).unwrap().is_empty() && m.rules(s.id).unwrap().is_empty());
    assert!(m.annotations(s.id, 0, i32::MAX).unwrap().is_empty() && m.segments(s.id).unwrap().is_empty());
    assert!(m.funnels(Some(s.id)).unwrap().is_empty());
    assert!(m.reports(Some(s.id)).unwrap().is_empty() && m.alerts(Some(s.id)).unwrap().is_empty());
    assert!(m.webhooks(Some(s.id)).unwrap().is_empty() && m.next_due().unwrap().is_none());
    assert!(m.audit_log(s.id, 10).unwrap().is_empty());
    assert!(m.retentions().unwrap().is_empty(), "a removed site's retention goes with it");
    assert!(m.security_counts(s.id, 0).unwrap().is_empty() && m.members(s.id).unwrap().is_empty());
    assert_eq!(m.shared_link(&private.slug).unwrap(), None);
    assert_eq!(m.role(viewer.id, s.id).unwrap(), None);
    let back = m.add_site("example.com", "UTC").unwrap();
    assert!(back.id > moved.id, "site ids are never reused");
    assert!(m.list_goals(back.id).unwrap().is_empty());
    log.note("sites at the end", domains(m.list_sites().unwrap()));
    log.0
}

#[test]
fn both_backends_answer_every_call_alike() {
    let db = TestDb::create();
    let pg = script(&db.meta());
    let (lite, dir) = sqlite("script");
    let sqlite = script(&lite);
    for (p, s) in pg.iter().zip(&sqlite) {
        assert_eq!(p, s, "PostgreSQL (left) and SQLite (right) answer differently");
    }
    assert_eq!(pg.len(), sqlite.len());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn secrets_are_stored_only_as_hashes() {
    let db = TestDb::create();
    let m = db.meta();
    let site = m.add_site("a.example", "UTC").unwrap();
    let user = m.add_user("a@example.com", "correct horse battery", NewUser::OwnerIfNone).unwrap();
    let session = m.create_session(user.id, false).unwrap();
    let invite = m.create_invite(site.id, Role::Viewer, "b@example.com").unwrap();
    let (_, key) = m.create_key("ci", &[Scope::StatsRead], None).unwrap();
    let now = 1_800_000_000_000;
    let totp_secret = m.begin_totp(user.id).unwrap();
    let code = format!("{:06}", totp::code_at(&totp_secret, now / 1000 / totp::STEP_SECS));
    let recovery = m.enable_totp(user.id, &code, now).unwrap();

    let mut c = db.client();
    let hash: String = c.query_one("SELECT password_hash FROM users", &[]).unwrap().get(0);
    assert!(hash.starts_with("$argon2id$") && !hash.contains("horse"), "{hash}");
    let mut one = |sql: &str| -> String { c.query_one(sql, &[]).unwrap().get(0) };
    assert_eq!(one("SELECT token_sha256 FROM sessions"), sha256_hex(&session));
    assert_eq!(one("SELECT token_sha256 FROM invites"), sha256_hex(&invite));
    assert_eq!(one("SELECT secret_sha256 FROM api_keys"), sha256_hex(&key));
    let stored: Vec<String> =
        c.query("SELECT code_sha256 FROM recovery_codes", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(stored.len(), 10);
    for code in &recovery {
        assert!(!stored.contains(code) && !stored.contains(&code.replace('-', "")), "{code} is stored in the clear");
    }
}

/// Two backends on one database, as two processes would have.
struct Racers<'a> {
    db: &'a TestDb,
    metas: [PgMeta; 2],
}

impl Racers<'_> {
    /// Runs `f` on `n` threads, half of them on each backend, so that their statements meet at
    /// PostgreSQL together: `table` is locked until all `n` calls wait for it, however long each
    /// took to get there (hashing a password takes a while).
    fn race<T: Send>(&self, n: usize, table: &str, f: impl Fn(usize, &PgMeta) -> T + Sync) -> Vec<T> {
        let mut holder = self.db.client();
        let mut lock = holder.transaction().unwrap();
        lock.batch_execute(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")).unwrap();
        let mut watcher = self.db.client();
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..n)
                .map(|i| {
                    let (f, m) = (&f, &self.metas[i % 2]);
                    s.spawn(move || f(i, m))
                })
                .collect();
            let waiting = "SELECT count(*) FROM pg_stat_activity
                           WHERE datname = current_database() AND application_name = 'plumb' AND wait_event_type = 'Lock'";
            let deadline = Instant::now() + Duration::from_secs(30);
            while watcher.query_one(waiting, &[]).unwrap().get::<_, i64>(0) < n as i64 {
                assert!(Instant::now() < deadline, "the {n} calls did not all reach PostgreSQL");
                std::thread::sleep(Duration::from_millis(5));
            }
            lock.rollback().unwrap();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        })
    }
}

#[test]
fn eight_threads_racing_for_a_days_salt_get_the_same_salt() {
    let db = TestDb::create();
    let racers = Racers { db: &db, metas: [db.meta(), db.meta()] };
    for round in 0..10 {
        let day = 20_000 + round * 5;
        let noon = day as i64 * DAY_MS + DAY_MS / 2;
        let salts = racers.race(8, "salts", |_, m| m.salt_for_day(day, noon).unwrap().unwrap());
        assert!(salts.iter().all(|s| *s == salts[0]), "day {day}: {salts:?}");
    }
    let rows: i64 = db.client().query_one("SELECT count(*) FROM salts", &[]).unwrap().get(0);
    assert_eq!(rows, 10);
}

#[test]
fn racing_calls_from_two_processes_stay_atomic() {
    let db = TestDb::create();
    let racers = Racers { db: &db, metas: [db.meta(), db.meta()] };
    let m = &racers.metas[0];

    // Four, not eight: each hashes a password first (slow in a debug build), and the first to
    // arrive must not wait for the last longer than the statement timeout.
    let users = racers.race(4, "users", |i, m| {
        m.add_user(&format!("u{i}@example.com"), "long enough pw", NewUser::OwnerIfNone).unwrap()
    });
    assert_eq!(users.iter().filter(|u| u.is_owner).count(), 1, "one owner");

    let sites = racers.race(8, "sites", |_, m| m.add_site("race.example", "UTC"));
    assert_eq!(sites.iter().filter(|s| s.is_ok()).count(), 1, "one site");
    assert!(sites.iter().filter_map(|s| s.as_ref().err()).all(|e| matches!(e, MetaError::Invalid(_))));
    let site = m.site_by_domain("race.example").unwrap().unwrap();

    let goals = racers.race(8, "goals", |_, m| m.add_goal(site.id, GoalKind::Event("Signup".into()), None).unwrap());
    assert!(goals.iter().all(|g| *g == goals[0]), "one goal");
    assert_eq!(m.list_goals(site.id).unwrap(), [goals[0].clone()]);

    let invitee = users.iter().find(|u| !u.is_owner).unwrap();
    let token = m.create_invite(site.id, Role::Admin, &invitee.email).unwrap();
    let accepted = racers.race(8, "invites", |_, m| m.accept_invite(&token, invitee.id));
    assert_eq!(accepted.iter().filter(|a| a.is_ok()).count(), 1, "an invite is used once");
    assert!(accepted.iter().filter_map(|a| a.as_ref().err()).all(|e| matches!(e, MetaError::NotFound(_))));
    assert_eq!(m.role(invitee.id, site.id).unwrap(), Some(Role::Admin));

    let now = 1_800_000_000_000;
    let secret = m.begin_totp(invitee.id).unwrap();
    let code = |t: i64| format!("{:06}", totp::code_at(&secret, t / 1000 / totp::STEP_SECS));
    m.enable_totp(invitee.id, &code(now), now).unwrap();
    let later = now + 60_000;
    let passed = racers.race(8, "users", |_, m| m.check_second_factor(invitee.id, &code(later), later).unwrap());
    assert_eq!(passed.iter().filter(|p| **p).count(), 1, "a TOTP code works once");

    // Half the collectors send their counts in the other order: no deadlock, nothing lost.
    let c = |hour, reason: &str, count| SecurityCount { site_id: site.id, hour, reason: reason.into(), count };
    racers.race(8, "security_counts", |i, m| {
        let mut counts = vec![c(1, "crawler", 1), c(2, "headless", i as u64)];
        if i % 2 == 1 {
            counts.reverse();
        }
        m.add_security_counts(&counts).unwrap()
    });
    assert_eq!(m.security_counts(site.id, 0).unwrap(), [c(1, "crawler", 8), c(2, "headless", 28)]);

    // Collectors flushing while the site is removed: their counts go with it, no flush fails.
    let doomed = m.add_site("doomed.example", "UTC").unwrap();
    let flushes = racers.race(8, "sites", |i, m| match i {
        0 => m.remove_site("doomed.example").map(|_| ()),
        _ => m.add_security_counts(&[SecurityCount { site_id: doomed.id, ..c(1, "crawler", 1) }]),
    });
    assert!(flushes.iter().all(Result::is_ok), "{flushes:?}");
    assert!(m.security_counts(doomed.id, 0).unwrap().is_empty());

    let keys = racers.race(8, "server_keys", |_, m| m.server_key().unwrap());
    assert!(keys.iter().all(|k| *k == keys[0]), "one cookie key");
}

#[test]
fn two_instances_see_each_others_writes() {
    let db = TestDb::create();
    let (a, b) = (db.meta(), db.meta());
    let site = a.add_site("shared.example", "UTC").unwrap();
    assert_eq!(b.site_by_domain("shared.example").unwrap(), Some(site.clone()));
    let user = b.add_user("a@example.com", "long enough pw", NewUser::OwnerIfNone).unwrap();
    let token = a.create_session(user.id, false).unwrap();
    assert_eq!(b.session(&token).unwrap().map(|s| s.user), Some(user));
    b.end_session(&token).unwrap();
    assert_eq!(a.session(&token).unwrap(), None);
    let (key, secret) = a.create_key("ci", &[Scope::StatsRead], None).unwrap();
    assert_eq!(b.verify_key(&secret).unwrap(), Some(key));
    let noon = 20_000 * DAY_MS + DAY_MS / 2;
    assert_eq!(a.salt_for_day(20_000, noon).unwrap(), b.salt_for_day(20_000, noon).unwrap());
    assert_eq!(a.server_key().unwrap(), b.server_key().unwrap());
    b.remove_site("shared.example").unwrap();
    assert!(a.list_sites().unwrap().is_empty());
    assert_eq!(a.deleted_sites().unwrap(), [(site.id, false)]);
    a.mark_purged(site.id).unwrap();
    assert_eq!(b.deleted_sites().unwrap(), [(site.id, true)]);
}

#[test]
fn salts_are_purged_once_their_day_has_ended_everywhere() {
    let db = TestDb::create();
    let m = db.meta();
    let day = 20_000;
    // A date is current somewhere from its midnight at UTC+14 to its end at UTC−12.
    let (begins, ends) = (day as i64 * DAY_MS - 14 * 3_600_000, (day as i64 + 1) * DAY_MS + 12 * 3_600_000);
    assert_eq!(m.salt_for_day(day, begins - 1).unwrap(), None);
    let salt = m.salt_for_day(day, begins).unwrap();
    assert!(salt.is_some());
    assert_eq!(m.purge_salts(ends - 1).unwrap(), 0);
    assert_eq!(m.salt_for_day(day, ends - 1).unwrap(), salt);
    assert_eq!(m.purge_salts(ends).unwrap(), 1);
    assert_eq!(m.salt_for_day(day, ends).unwrap(), None);
    let rows: i64 = db.client().query_one("SELECT count(*) FROM salts", &[]).unwrap().get(0);
    assert_eq!(rows, 0, "the salt is gone from the table");
}

#[test]
fn migrations_run_once_however_many_processes_start_together() {
    let db = TestDb::create();
    let url = db.url();
    let start = Barrier::new(4);
    let metas: Vec<PgMeta> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    PgMeta::connect(&url).unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    metas[0].add_site("kept.example", "UTC").unwrap();
    drop(metas);
    let again = db.meta();
    assert_eq!(again.list_sites().unwrap().len(), 1, "reconnecting keeps the data");
    let versions: Vec<i32> =
        db.client().query("SELECT version FROM schema_version", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let expected: Vec<i32> = (1..=PgMeta::SCHEMA_VERSION as i32).collect();
    assert_eq!(versions, expected, "each version applied once");
}

#[test]
fn a_database_at_the_first_version_is_upgraded_keeping_its_data() {
    let db = TestDb::create();
    drop(db.meta());
    // Undo what came after version 1, as a database written by the first release looks.
    let mut client = db.client();
    client
        .batch_execute(
            "DROP TABLE backdated_salts, site_retention, imports, site_aliases, annotations, segments, funnel_steps, funnels, reports, alerts, webhooks, outbox, audit_log; \
             ALTER TABLE shared_links DROP COLUMN min_visitors; DELETE FROM schema_version WHERE version > 1",
        )
        .unwrap();
    client.execute("INSERT INTO sites (domain, timezone, created_ms) VALUES ('old.example', 'UTC', 0)", &[]).unwrap();
    let m = db.meta();
    assert_eq!(m.list_sites().unwrap().iter().map(|s| s.domain.as_str()).collect::<Vec<_>>(), ["old.example"]);
    let salt = m.backdated_salt(20_000, 20_100 * DAY_MS).unwrap();
    assert_eq!(m.backdated_salt(20_000, 20_100 * DAY_MS).unwrap(), salt);
    let old = m.site_by_domain("old.example").unwrap().unwrap();
    m.set_retention(old.id, Some(24)).unwrap();
    assert_eq!(m.retention(old.id).unwrap(), Some(24));
    let top: i32 = client.query_one("SELECT max(version) FROM schema_version", &[]).unwrap().get(0);
    assert_eq!(top as u32, PgMeta::SCHEMA_VERSION);
}

#[test]
fn a_database_from_a_newer_plumb_is_refused() {
    let db = TestDb::create();
    drop(db.meta());
    let newer = PgMeta::SCHEMA_VERSION as i32 + 1;
    db.client().execute("INSERT INTO schema_version VALUES ($1)", &[&newer]).unwrap();
    let Err(e) = PgMeta::connect(&db.url()) else { panic!("a newer schema was accepted") };
    assert_eq!(
        e.to_string(),
        format!(
            "metadata storage failed: PostgreSQL at 127.0.0.1:5432/{} has schema version {newer}, newer than \
             this Plumb knows ({}): run a newer Plumb",
            db.name,
            PgMeta::SCHEMA_VERSION
        )
    );
}

#[test]
fn an_unreachable_server_is_reported_promptly_and_by_name() {
    let started = Instant::now();
    let Err(e) = PgMeta::connect("postgres://plumb:hunter2@127.0.0.1:1/meta") else { panic!("connected to port 1") };
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let e = e.to_string();
    assert!(e.starts_with("metadata storage failed: PostgreSQL at 127.0.0.1:1/meta is unreachable: "), "{e}");
    assert!(!e.contains("hunter2"), "{e}");

    // A server that answers but will not have us is told apart.
    let missing = format!("plumb_missing_{}", std::process::id());
    let Err(e) = PgMeta::connect(&format!("{SERVER}/{missing}")) else { panic!("connected to a missing database") };
    let e = e.to_string();
    assert!(e.contains(&format!("PostgreSQL at 127.0.0.1:5432/{missing} refused the connection: ")), "{e}");
    assert!(e.contains("does not exist"), "{e}");

    assert!(matches!(PgMeta::connect("postgres://127.0.0.1/meta"), Err(MetaError::Invalid(_))));
    assert!(matches!(PgMeta::connect_with(&format!("{SERVER}/postgres"), 0), Err(MetaError::Invalid(_))));
}

/// Ends the backend's connections to the test database from the server side, as a restart would.
fn terminate_connections(db: &TestDb) {
    let mut admin = admin();
    let count = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'plumb'";
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'plumb'",
            &[&db.name],
        )
        .unwrap();
    while admin.query_one(count, &[&db.name]).unwrap().get::<_, i64>(0) > 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_broken_connection_is_replaced() {
    let db = TestDb::create();
    let m = PgMeta::connect_with(&db.url(), 1).unwrap();
    m.add_site("a.example", "UTC").unwrap();
    // Closed while idle: checked before the next call, which runs on a new connection.
    terminate_connections(&db);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(m.list_sites().unwrap().len(), 1);
    // Closed just before a call: that call may fail, the next one runs on a new connection.
    terminate_connections(&db);
    if let Err(e) = m.list_sites() {
        assert!(matches!(e, MetaError::Storage(_)), "{e:?}");
    }
    assert_eq!(m.list_sites().unwrap().len(), 1);
}

#[test]
fn a_statement_stuck_behind_a_lock_times_out() {
    let db = TestDb::create();
    let m = db.meta();
    let mut other = db.client();
    let mut tx = other.transaction().unwrap();
    tx.batch_execute("LOCK TABLE sites IN ACCESS EXCLUSIVE MODE").unwrap();
    let started = Instant::now();
    let Err(MetaError::Storage(e)) = m.list_sites() else { panic!("read a locked table") };
    assert!(e.contains("statement timeout"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    drop(tx);
    assert!(m.list_sites().unwrap().is_empty(), "the connection is still good");
}

#[test]
fn calls_from_inside_an_async_runtime_work() {
    let db = TestDb::create();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    // The blocking client would panic here; the backend's own threads do not.
    let sites = runtime.block_on(async {
        let m = PgMeta::connect(&db.url()).unwrap();
        m.add_site("async.example", "UTC").unwrap();
        m.list_sites().unwrap()
    });
    assert_eq!(sites.len(), 1);
}

#[test]
fn a_backdated_salt_is_shared_by_every_connection_and_gone_an_hour_after_its_last_use() {
    let db = TestDb::create();
    // Two pools stand for two collectors on different hosts.
    let (a, b) = (db.meta(), db.meta());
    let day = 20_000;
    let t = (day as i64 + 30) * DAY_MS;
    let salt = a.backdated_salt(day, t).unwrap();
    assert_eq!(b.backdated_salt(day, t + 1).unwrap(), salt, "the second collector signs alike");
    assert_ne!(a.backdated_salt(day + 1, t).unwrap(), salt, "each date has its own");
    // Used again at t + 50 min: kept an hour past that, not an hour past the first use.
    assert_eq!(a.backdated_salt(day, t + 50 * 60_000).unwrap(), salt);
    assert_eq!(b.purge_salts(t + BACKDATED_SALT_IDLE_MS).unwrap(), 1, "only the unused date goes");
    assert_eq!(a.backdated_salt(day, t + 60 * 60_000).unwrap(), salt);
    // An older use arriving late does not shorten its life.
    assert_eq!(b.backdated_salt(day, t).unwrap(), salt);
    assert_eq!(a.purge_salts(t + 60 * 60_000 + BACKDATED_SALT_IDLE_MS - 1).unwrap(), 0);
    assert_eq!(a.purge_salts(t + 60 * 60_000 + BACKDATED_SALT_IDLE_MS).unwrap(), 1);
    let rows: i64 = db.client().query_one("SELECT count(*) FROM backdated_salts", &[]).unwrap().get(0);
    assert_eq!(rows, 0, "the salts are gone from the table");
    assert_ne!(b.backdated_salt(day, t + 3 * BACKDATED_SALT_IDLE_MS).unwrap(), salt, "a new back-fill, a new salt");
}

#[test]
fn a_server_restarted_under_a_pool_is_reconnected_to_and_nothing_committed_is_lost() {
    let server = PgServer::start("restart");
    let m = PgMeta::connect(&server.url()).unwrap();
    m.add_site("before.example", "UTC").unwrap();
    server.crash();
    let e = m.add_site("during.example", "UTC").unwrap_err().to_string();
    assert!(e.starts_with("metadata storage failed: "), "{e}");
    server.run();
    // Every pooled connection died with the server. One idle for a second is checked before
    // use, so after that pause no call meets a dead one: each of these gets a new connection.
    std::thread::sleep(Duration::from_millis(1100));
    let added = m.add_site("after.example", "UTC").unwrap();
    let sites: Vec<String> = m.list_sites().unwrap().into_iter().map(|s| s.domain).collect();
    assert_eq!(sites, ["after.example", "before.example"]);
    assert_eq!(m.site_by_domain("after.example").unwrap(), Some(added));
}

/// Everything a backend answers about its sites, keys, users and today's salt, for comparing two.
fn state(m: &dyn MetaStore) -> Vec<String> {
    let mut out = vec![
        format!("sites: {:?}", m.list_sites().unwrap()),
        format!("deleted: {:?}", m.deleted_sites().unwrap()),
        format!("keys: {:?}", m.list_keys().unwrap()),
        format!("users: {:?}", m.list_users().unwrap()),
    ];
    for site in m.list_sites().unwrap() {
        out.push(format!("goals of {}: {:?}", site.id, m.list_goals(site.id).unwrap()));
        out.push(format!("rules of {}: {:?}", site.id, m.rules(site.id).unwrap()));
        out.push(format!("counts of {}: {:?}", site.id, m.security_counts(site.id, 0).unwrap()));
        out.push(format!("members of {}: {:?}", site.id, m.members(site.id).unwrap()));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let today = (now / DAY_MS) as i32;
    out.push(format!("salt: {:?}", m.salt_for_day(today, now).unwrap()));
    out
}

#[test]
fn an_embedded_installs_metadata_copies_whole_ids_and_salts_kept_and_again_adds_nothing() {
    let (lite, dir) = sqlite("copy");
    script(&lite);
    lite.add_site("gone.example", "UTC").unwrap();
    let kept = lite.list_sites().unwrap()[0].id;
    let step = |name: &str| FunnelStep { name: name.into(), kind: GoalKind::Event(name.into()) };
    lite.add_funnel(kept, "Checkout", &[step("Cart"), step("Pay"), step("Done")]).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    lite.salt_for_day((now / DAY_MS) as i32, now).unwrap();
    let db = TestDb::create();
    let pg = db.meta();
    let report = pg.copy_from_sqlite(&dir.join("meta.db")).unwrap();
    assert_eq!(state(&pg), state(&lite));
    assert_eq!(pg.funnels(None).unwrap(), lite.funnels(None).unwrap());
    assert_eq!(pg.funnels(None).unwrap().len(), 1);

    // Every table of the schema is copied, and holds as many rows as the file.
    let mut tables: Vec<String> = db
        .client()
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name <> 'schema_version'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables.sort();
    let mut copied: Vec<String> = report.iter().map(|t| t.table.to_owned()).collect();
    copied.sort();
    // Import runs stay behind with the imported rows, which migrate does not move.
    tables.retain(|t| t != "imports");
    assert_eq!(copied, tables);
    let file = rusqlite::Connection::open(dir.join("meta.db")).unwrap();
    for t in &report {
        let theirs: i64 = file.query_row(&format!("SELECT count(*) FROM {}", t.table), [], |r| r.get(0)).unwrap();
        let ours: i64 = db.client().query_one(&format!("SELECT count(*) FROM {}", t.table), &[]).unwrap().get(0);
        assert_eq!((ours, t.read), (theirs, theirs as u64), "{}", t.table);
        assert!(t.skipped.is_empty(), "{t:?}");
    }
    assert!(report.iter().find(|t| t.table == "sites").unwrap().added > 0);

    // Again: nothing new to add, and the same state.
    let again = pg.copy_from_sqlite(&dir.join("meta.db")).unwrap();
    assert!(again.iter().all(|t| t.added == 0), "{again:?}");
    assert_eq!(state(&pg), state(&lite));

    // A site renamed and one removed in the file since: the next copy follows.
    let first = lite.list_sites().unwrap()[0].id;
    lite.update_site(first, Some("renamed.example"), Some("Asia/Tokyo")).unwrap();
    lite.remove_site("gone.example").unwrap();
    pg.copy_from_sqlite(&dir.join("meta.db")).unwrap();
    assert_eq!(state(&pg), state(&lite));

    // Ids go on from the file's highest ever (a removed site's id is not given out again).
    let highest: u32 =
        file.query_row("SELECT seq FROM sqlite_sequence WHERE name = 'sites'", [], |r| r.get(0)).unwrap();
    assert_eq!(pg.add_site("after.example", "UTC").unwrap().id, highest + 1);

    // Another install's database is not mixed with this one's.
    let other = TestDb::create();
    other.meta().add_site("other.example", "UTC").unwrap();
    let refused = other.meta().copy_from_sqlite(&dir.join("meta.db")).unwrap_err().to_string();
    assert!(refused.contains("already holds site other.example"), "{refused}");
    let _ = std::fs::remove_dir_all(dir);
}
