//! The tracker script: its variants, assembled from one source by the extensions a file name
//! lists (Plausible's legacy names, `script.outbound-links.hash.js`), compressed once each and
//! served with an ETag.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plumb_core::paths::TrackerPaths;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

pub const SOURCE: &str = include_str!("../../../tracker/script.js");

/// The extensions a script name may list, in any order: Plausible's legacy ones, then Plumb's
/// `form-submissions` and `404`. A bit of [`Variant`] each.
pub const EXTENSIONS: [&str; 12] = [
    "hash",
    "outbound-links",
    "file-downloads",
    "tagged-events",
    "exclusions",
    "manual",
    "pageview-props",
    "revenue",
    "compat",
    "local",
    "form-submissions",
    "404",
];

/// A set of [`EXTENSIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Variant(u16);

impl Variant {
    /// The variant a file name asks for: `STEM.js` or `STEM.EXT.EXT….js`, each extension once.
    pub fn parse(file: &str, stems: &[&str]) -> Result<Variant, String> {
        let inner = file.strip_suffix(".js").ok_or_else(|| format!("`{file}` is not a script name (NAME.js)"))?;
        let mut parts = inner.split('.');
        let stem = parts.next().unwrap_or_default();
        if !stems.contains(&stem) {
            return Err(format!("no tracker is served as `{file}`"));
        }
        let mut v = Variant::default();
        for part in parts {
            let bit = EXTENSIONS
                .iter()
                .position(|e| *e == part)
                .ok_or_else(|| format!("`{part}` is not a tracker extension; known: {}", EXTENSIONS.join(", ")))?;
            if v.0 & 1 << bit != 0 {
                return Err(format!("tracker extension `{part}` is named twice"));
            }
            v.0 |= 1 << bit;
        }
        Ok(v)
    }

    pub fn has(self, extension: &str) -> bool {
        EXTENSIONS.iter().position(|e| *e == extension).is_some_and(|bit| self.0 & 1 << bit != 0)
    }
}

/// The script of a variant: the source's lines that the variant keeps (see the source's header),
/// without comment lines and indentation, posting to `event_path` by default.
pub fn assemble(v: Variant, event_path: &str) -> String {
    let mut kept = Vec::new();
    let mut open: Vec<bool> = Vec::new();
    for line in SOURCE.lines() {
        let line = line.trim();
        if let Some(names) = line.strip_prefix("//+") {
            let wanted = names.split_whitespace().any(|n| match n.strip_prefix('!') {
                Some(n) => !v.has(n),
                None => v.has(n),
            });
            open.push(wanted);
        } else if line == "//-" {
            open.pop().expect("the tracker's blocks are balanced (a test checks)");
        } else if open.iter().all(|&o| o) && !line.is_empty() && !line.starts_with("//") {
            kept.push(line);
        }
    }
    // The path is checked (`TrackerPaths`): no quote or backslash can end the literal.
    kept.join("\n").replace("'/api/event'", &format!("'{event_path}'"))
}

/// A variant as served; `Bytes` so an answer shares it rather than copying it.
struct Built {
    plain: Bytes,
    gzip: Bytes,
    etag: HeaderValue,
}

/// Variants, each assembled and compressed once, when first asked for.
pub struct Scripts {
    event_path: String,
    built: Mutex<HashMap<Variant, Arc<Built>>>,
}

impl Scripts {
    pub fn new(paths: &TrackerPaths) -> Self {
        Self { event_path: paths.event.clone(), built: Mutex::default() }
    }

    fn get(&self, v: Variant) -> Arc<Built> {
        if let Some(b) = self.built.lock().expect("not poisoned").get(&v) {
            return b.clone();
        }
        let plain = assemble(v, &self.event_path).into_bytes();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&plain).expect("writing to memory");
        let gzip = enc.finish().expect("writing to memory");
        let h = plain.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3));
        let etag = HeaderValue::from_str(&format!("\"{h:016x}\"")).expect("hex is a valid header");
        let built = Arc::new(Built { plain: plain.into(), gzip: gzip.into(), etag });
        // At most 2^12 variants, each a few KB: the map is bounded.
        self.built.lock().expect("not poisoned").insert(v, built.clone());
        built
    }

    /// The answer to `GET …/FILE` for the given stems: the variant, or `404` saying why not.
    pub fn serve(&self, file: &str, stems: &[&str], headers: &HeaderMap) -> Response {
        let v = match Variant::parse(file, stems) {
            Ok(v) => v,
            Err(e) => return (StatusCode::NOT_FOUND, e).into_response(),
        };
        let built = self.get(v);
        if headers.get(header::IF_NONE_MATCH) == Some(&built.etag) {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, built.etag.clone())]).into_response();
        }
        let gzip = headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
        let mut r = if gzip {
            let mut r = built.gzip.clone().into_response();
            r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        } else {
            built.plain.clone().into_response()
        };
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/javascript; charset=utf-8"));
        // Short enough that a new version reaches visitors within hours, long enough to spare them
        // a request on every page; the ETag makes revalidation cheap.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=14400"));
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        h.insert(header::ETAG, built.etag.clone());
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        r
    }

    /// Gzipped size of a variant, for the size budget and the README.
    pub fn gzipped_len(&self, v: Variant) -> usize {
        self.get(v).gzip.len()
    }
}

/// The 1×1 transparent GIF answered to pixel hits.
pub fn gif() -> Response {
    const GIF: &[u8] = &[
        0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
        0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00,
        0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
    ];
    let mut r = GIF.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_script_fits_the_size_budget_and_every_variant_is_reported() {
        let scripts = Scripts::new(&TrackerPaths::default());
        let base = scripts.gzipped_len(Variant::default());
        println!("script.js: {} bytes, {base} bytes gzipped", assemble(Variant::default(), "/api/event").len());
        assert!(base <= 1500, "the base tracker is {base} bytes gzipped, budget 1,500 (1.5 KB)");
        for e in EXTENSIONS {
            let v = Variant::parse(&format!("script.{e}.js"), &["script"]).unwrap();
            println!("script.{e}.js: {} bytes gzipped", scripts.gzipped_len(v));
        }
        let all = Variant((1 << EXTENSIONS.len()) - 1);
        println!("every extension: {} bytes gzipped", scripts.gzipped_len(all));
    }

    #[test]
    fn blocks_are_balanced_and_name_only_known_extensions() {
        let mut depth = 0i32;
        for (n, line) in SOURCE.lines().enumerate() {
            let line = line.trim();
            if let Some(names) = line.strip_prefix("//+") {
                depth += 1;
                let names: Vec<_> = names.split_whitespace().collect();
                assert!(!names.is_empty(), "line {}: a block names no extension", n + 1);
                for name in names {
                    let name = name.trim_start_matches('!');
                    assert!(EXTENSIONS.contains(&name), "line {}: unknown extension `{name}`", n + 1);
                }
            } else if line == "//-" {
                depth -= 1;
                assert!(depth >= 0, "line {}: a block ends that never began", n + 1);
            }
        }
        assert_eq!(depth, 0, "a block is never ended");
        // Every extension changes the script (else its name would promise nothing); `revenue`
        // only together with `tagged-events` (base scripts send a call's revenue anyway).
        let all = Variant((1 << EXTENSIONS.len()) - 1);
        for (bit, e) in EXTENSIONS.iter().enumerate() {
            let without = Variant(all.0 & !(1 << bit));
            assert_ne!(assemble(all, "/api/event"), assemble(without, "/api/event"), "`{e}` changes nothing");
        }
    }

    #[test]
    fn names_parse_in_any_order_and_bad_ones_are_refused() {
        let a = Variant::parse("script.outbound-links.hash.js", &["script"]).unwrap();
        let b = Variant::parse("script.hash.outbound-links.js", &["script"]).unwrap();
        assert_eq!(a, b);
        assert!(a.has("hash") && a.has("outbound-links") && !a.has("manual"));
        assert_eq!(Variant::parse("plausible.hash.outbound-links.js", &["plausible"]).unwrap(), a);
        assert_eq!(Variant::parse("script.js", &["script"]).unwrap(), Variant::default());
        for (file, why) in [
            ("script.hash.hash.js", "named twice"),
            ("script.nope.js", "not a tracker extension"),
            ("other.js", "no tracker is served"),
            ("script", "not a script name"),
            ("script..js", "not a tracker extension"),
        ] {
            let e = Variant::parse(file, &["script"]).unwrap_err();
            assert!(e.contains(why), "{file}: {e}");
        }
    }

    #[test]
    fn the_event_path_is_the_configured_one() {
        let s = assemble(Variant::default(), "/p/ingest");
        assert!(s.contains("'/p/ingest'") && !s.contains("/api/event"), "{s}");
    }
}
