//! Page URLs and referrers reduced to what is stored: hostname, path, UTM values and a source.
//! Hostnames are lower-cased, without a trailing dot and (unless configured) without `www.`;
//! paths lose a trailing slash and are percent-decoded. Limits: path ≤ 2000 bytes, UTM values ≤
//! 300 bytes (longer ones are cut at a character boundary). The query string and fragment are
//! dropped, except configured query parameters (and, in hash mode, a route-like fragment).

use url::Url;

pub const MAX_PATH: usize = 2000;
pub const MAX_VALUE: usize = 300;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageUrl {
    pub hostname: String,
    pub pathname: String,
    pub utm_medium: String,
    pub utm_source: String,
    pub utm_campaign: String,
    pub utm_content: String,
    pub utm_term: String,
    /// `ref` or `source` query parameter: an explicit source without UTM tags.
    pub ref_param: String,
    /// The first ad click id parameter present (`gclid`, `msclkid`…), by name; its value is
    /// never kept.
    pub click_id: String,
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// A hostname in lower case without a trailing dot, and without `www.`: how sites and
/// referrers are named.
pub fn normalize_hostname(host: &str) -> String {
    clean_hostname(host, false)
}

fn clean_hostname(host: &str, keep_www: bool) -> String {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    match h.strip_prefix("www.") {
        Some(bare) if !keep_www => bare.to_owned(),
        _ => h,
    }
}

/// What page URLs keep beyond their host and path: configuration, by default nothing.
#[derive(Debug, Clone, Default)]
pub struct PageRules {
    /// Query parameters that stay in the path, in the URL's order (`/search?q=shoes`); every
    /// other one is dropped.
    pub keep_query_params: Vec<String>,
    /// Keep a leading `www.` in page hostnames, for sites where `www.` and the bare domain are
    /// different sites. Sites are still found by their domain without it.
    pub keep_www: bool,
}

/// Parses a page URL. `hash_mode` keeps the fragment (single-page apps that route by `#`).
pub fn parse_page_url(raw: &str, hash_mode: bool) -> Result<PageUrl, String> {
    parse_page_url_with(raw, hash_mode, &PageRules::default())
}

/// As [`parse_page_url`], with what `rules` keep.
pub fn parse_page_url_with(raw: &str, hash_mode: bool, rules: &PageRules) -> Result<PageUrl, String> {
    let url = Url::parse(raw).map_err(|e| format!("`url` is not a valid absolute URL ({e})"))?;
    if url.scheme() == "data" || url.scheme() == "javascript" {
        return Err(format!("`url` scheme `{}` is not allowed", url.scheme()));
    }
    let keep = &rules.keep_query_params;
    let mut page =
        PageUrl { hostname: clean_hostname(url.host_str().unwrap_or(""), rules.keep_www), ..Default::default() };
    let mut path = url.path().to_owned();
    if path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    let mut path = decode_path(&path);
    let mut kept = url::form_urlencoded::Serializer::new(String::new());
    let mut any_kept = false;
    for (k, v) in url.query_pairs() {
        if keep.iter().any(|name| *name == k) {
            kept.append_pair(&k, &truncate(&v, MAX_VALUE));
            any_kept = true;
        }
        let v = truncate(v.trim(), MAX_VALUE);
        match k.as_ref() {
            "utm_medium" => page.utm_medium = v,
            "utm_source" => page.utm_source = v,
            "utm_campaign" => page.utm_campaign = v,
            "utm_content" => page.utm_content = v,
            "utm_term" => page.utm_term = v,
            "ref" | "source" if page.ref_param.is_empty() => page.ref_param = v,
            k if page.click_id.is_empty() && crate::source::is_click_id(k) => page.click_id = k.to_owned(),
            _ => {}
        }
    }
    if any_kept {
        path.push('?');
        path.push_str(&kept.finish());
    }
    // Only route-like fragments: `#access_token=…` and the like must never be stored.
    if hash_mode && let Some(f) = url.fragment().filter(|f| !f.is_empty() && !f.contains(['=', '&'])) {
        path.push('#');
        path.push_str(f);
    }
    page.pathname = truncate(&path, MAX_PATH);
    Ok(page)
}

/// A page pattern as goals and v1 filters write it — `*` within one path segment, `**` across
/// segments — as an anchored RE2 regular expression.
pub fn wildcard_regex(pattern: &str) -> String {
    let mut out = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(".*");
            }
            '*' => out.push_str("[^/]*"),
            c if "\\.+?()[]{}|^$".contains(c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('$');
    out
}

/// Percent-decodes a path for display; keeps the raw path if it is not valid UTF-8.
fn decode_path(path: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| path.to_owned())
}

/// The referrer as stored (host and path, no query) and its host, or `None` when it is empty,
/// unparsable or not http(s).
pub fn parse_referrer(raw: &str) -> Option<(String, String)> {
    let url = Url::parse(raw.trim()).ok()?;
    // Android apps refer as `android-app://<package>/`: the package stands for the host.
    if !matches!(url.scheme(), "http" | "https" | "android-app") {
        return None;
    }
    let host = normalize_hostname(url.host_str()?);
    let path = url.path().trim_end_matches('/');
    Some((truncate(&format!("{host}{path}"), MAX_PATH), host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_urls_are_reduced_to_host_path_and_utm() {
        let p = parse_page_url(
            "https://WWW.Example.com/blog/%C3%A9t%C3%A9/?utm_source=news&utm_medium=email&x=1#top",
            false,
        )
        .unwrap();
        assert_eq!(p.hostname, "example.com");
        assert_eq!(p.pathname, "/blog/été");
        assert_eq!(p.utm_source, "news");
        assert_eq!(p.utm_medium, "email");
        let h = parse_page_url("https://example.com/app#/settings", true).unwrap();
        assert_eq!(h.pathname, "/app#/settings");
        let token = parse_page_url("https://example.com/cb#access_token=secret&state=1", true).unwrap();
        assert_eq!(token.pathname, "/cb");
        assert_eq!(parse_page_url("https://example.com", false).unwrap().pathname, "/");
        assert!(parse_page_url("not a url", false).is_err());
        assert!(parse_page_url("data:text/plain,hi", false).is_err());
        let keep = PageRules { keep_query_params: vec!["q".to_owned(), "page".to_owned()], keep_www: false };
        let p = parse_page_url_with("https://shop.test/search/?page=2&secret=x&q=red+shoes&utm_source=n", false, &keep);
        assert_eq!(p.unwrap().pathname, "/search?page=2&q=red+shoes", "kept in URL order, others dropped");
        let p = parse_page_url_with("https://shop.test/app?q=1#/route", true, &keep).unwrap();
        assert_eq!(p.pathname, "/app?q=1#/route");
        assert_eq!(parse_page_url_with("https://shop.test/a?x=1", false, &keep).unwrap().pathname, "/a");
        let www = PageRules { keep_www: true, ..PageRules::default() };
        assert_eq!(parse_page_url_with("https://WWW.Shop.test./", false, &www).unwrap().hostname, "www.shop.test");
        assert_eq!(parse_page_url("https://www.shop.test./", false).unwrap().hostname, "shop.test");
    }

    #[test]
    fn referrers_keep_host_and_path_only() {
        assert_eq!(
            parse_referrer("https://www.google.com/search?q=secret"),
            Some(("google.com/search".into(), "google.com".into()))
        );
        assert_eq!(
            parse_referrer("android-app://com.google.android.gm/"),
            Some(("com.google.android.gm".into(), "com.google.android.gm".into()))
        );
        assert_eq!(parse_referrer("ftp://x.example/"), None);
        assert_eq!(parse_referrer(""), None);
    }

    #[test]
    fn wildcards_become_anchored_patterns() {
        assert_eq!(wildcard_regex("/blog/**"), "^/blog/.*$");
        assert_eq!(wildcard_regex("/docs/*/intro"), "^/docs/[^/]*/intro$");
        assert_eq!(wildcard_regex("/a.b(c)"), "^/a\\.b\\(c\\)$");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
