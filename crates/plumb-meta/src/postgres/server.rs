//! Where the PostgreSQL server is, from the URL the operator gives, and how a connection to it is
//! opened. Messages name the server as `HOST:PORT/DB`, never with the password.

use super::describe;
use crate::{MetaError, Result};
use percent_encoding::percent_decode_str;
use postgres::{Client, Config, NoTls};
use std::time::Duration;

const URL_FORM: &str = "postgres://USER[:PASSWORD]@HOST[:PORT]/DB";

/// A server that does not answer is reported within this time, not the OS's minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Sent data unacknowledged this long means the server is gone: the connection fails instead of
/// hanging on a host that vanished without closing it.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// Metadata statements are small; one that runs longer is waiting on something wrong.
const STATEMENT_TIMEOUT: &str = "SET statement_timeout = '5s'";

pub struct Server {
    config: Config,
    /// `HOST:PORT/DB`, for messages.
    pub name: String,
}

impl Server {
    /// Reads `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (also `postgresql://`; the port defaults
    /// to 5432; user, password and database may be %-encoded).
    pub fn parse(url: &str) -> Result<Server> {
        let bad = |why: &str| MetaError::Invalid(format!("a PostgreSQL URL is {URL_FORM}: {why}"));
        let url = url.trim();
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
            return Err(bad("it does not start with `postgres://`"));
        }
        // The parser's messages name what is wrong, never the URL (which may hold a password).
        let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let decode = |what: &str, s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| bad(&format!("the {what} is not UTF-8 once %-decoded")))
        };
        let host = match u.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(bad("it names no host")),
        };
        let user = decode("user name", u.username())?;
        if user.is_empty() {
            return Err(bad("it names no user (USER@ before the host)"));
        }
        let password = u.password().map(|p| decode("password", p)).transpose()?;
        let port = u.port().unwrap_or(5432);
        let db = match u.path().strip_prefix('/') {
            Some(db) if db.contains('/') => return Err(bad("the path after the host is more than a database name")),
            Some(db) if !db.is_empty() => decode("database name", db)?,
            _ => return Err(bad("it names no database (/DB after the host)")),
        };
        if u.query().is_some() {
            return Err(bad("it has parameters after `?`, which Plumb does not read"));
        }
        if u.fragment().is_some() {
            return Err(bad("it has a `#` part"));
        }

        let mut config = Config::new();
        config
            .user(&user)
            .host(&host)
            .port(port)
            .dbname(&db)
            .application_name("plumb")
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_user_timeout(TCP_USER_TIMEOUT);
        if let Some(p) = password {
            config.password(p);
        }
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        Ok(Server { config, name: format!("{host}:{port}/{db}") })
    }

    /// A new connection with the backend's statement timeout.
    pub fn connect(&self) -> Result<Client> {
        let failed = |e: postgres::Error| {
            // The server answered but said no (password, database): not a network problem.
            let what = if e.as_db_error().is_some() { "refused the connection" } else { "is unreachable" };
            MetaError::Storage(format!("PostgreSQL at {} {what}: {}", self.name, describe(&e)))
        };
        let mut client = self.config.connect(NoTls).map_err(failed)?;
        client.batch_execute(STATEMENT_TIMEOUT).map_err(failed)?;
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(url: &str) -> String {
        match Server::parse(url) {
            Err(MetaError::Invalid(m)) => m,
            other => panic!("{url}: {:?}", other.map(|s| s.name)),
        }
    }

    #[test]
    fn urls_name_user_host_port_and_database() {
        let s = Server::parse("postgres://plumb:s%40cret@db.internal:6432/meta").unwrap();
        assert_eq!(s.name, "db.internal:6432/meta");
        assert_eq!(s.config.get_user(), Some("plumb"));
        assert_eq!(s.config.get_password(), Some(&b"s@cret"[..]));
        assert_eq!(s.config.get_dbname(), Some("meta"));
        let s = Server::parse("postgresql://plumb@[::1]/meta").unwrap();
        assert_eq!((s.name.as_str(), s.config.get_password()), ("[::1]:5432/meta", None));
        assert_eq!(Server::parse(" postgres://u@127.0.0.1:5432/m ").unwrap().name, "127.0.0.1:5432/m");
    }

    #[test]
    fn malformed_urls_say_what_is_wrong_without_the_password() {
        for (url, why) in [
            ("127.0.0.1:5432/meta", "does not start with `postgres://`"),
            ("mysql://u:hunter2@h/db", "does not start with `postgres://`"),
            ("postgres://u:hunter2@/db", "empty host"),
            ("postgres://:hunter2@h/db", "no user"),
            ("postgres://h:5432/db", "no user"),
            ("postgres://u:hunter2@h:99999/db", "invalid port"),
            ("postgres://u:hunter2@h:54x/db", "invalid port"),
            ("postgres://u:hunter2@h:5432", "no database"),
            ("postgres://u:hunter2@h:5432/", "no database"),
            ("postgres://u:hunter2@h/a/b", "more than a database name"),
            ("postgres://u:hunter2@h/db?sslmode=require", "after `?`"),
            ("postgres://u:hunter2@h/db#x", "`#`"),
            ("postgres://u:hunter2%ff@h/db", "password is not UTF-8"),
        ] {
            let m = invalid(url);
            assert!(m.starts_with("a PostgreSQL URL is postgres://USER[:PASSWORD]@HOST[:PORT]/DB: "), "{m}");
            assert!(m.contains(why), "{url}: {m}");
            assert!(!m.contains("hunter2"), "{url}: {m}");
        }
    }
}
