//! Where browsers fetch the tracker and send its events. Plausible's paths are always served;
//! an installation may add paths of its own, which ad blockers' lists do not name (first-party
//! serving, `--script-path` / `--event-path`).

/// The tracker's script path (variants: the same directory, `STEM.EXT….js`) and the events path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerPaths {
    pub script: String,
    pub event: String,
}

pub const DEFAULT_SCRIPT: &str = "/js/script.js";
pub const DEFAULT_EVENT: &str = "/api/event";
/// Longest configured path.
const MAX_PATH: usize = 100;

impl Default for TrackerPaths {
    fn default() -> Self {
        Self { script: DEFAULT_SCRIPT.into(), event: DEFAULT_EVENT.into() }
    }
}

impl TrackerPaths {
    /// The default paths, with the configured ones instead where given (each checked).
    pub fn new(script: Option<&str>, event: Option<&str>) -> Result<Self, String> {
        let paths = Self {
            script: script.unwrap_or(DEFAULT_SCRIPT).to_owned(),
            event: event.unwrap_or(DEFAULT_EVENT).to_owned(),
        };
        check(&paths.script).map_err(|e| format!("script path `{}`: {e}", paths.script))?;
        check(&paths.event).map_err(|e| format!("event path `{}`: {e}", paths.event))?;
        let (dir, file) = paths.split_script();
        if dir.is_empty() {
            return Err(format!("script path `{}`: must be in a directory, e.g. /s/{file}", paths.script));
        }
        match file.strip_suffix(".js") {
            Some(stem) if !stem.is_empty() && !stem.contains('.') => {}
            _ => return Err(format!("script path `{}`: the file must be NAME.js, with no other dot", paths.script)),
        }
        if paths.event.starts_with(&format!("{dir}/")) {
            return Err(format!("event path `{}`: must not be in the script's directory {dir}", paths.event));
        }
        Ok(paths)
    }

    /// `("/js", "script.js")`.
    fn split_script(&self) -> (&str, &str) {
        self.script.rsplit_once('/').unwrap_or(("", &self.script))
    }

    /// The directory the script and its variants are served from, e.g. `/js`.
    pub fn script_dir(&self) -> &str {
        self.split_script().0
    }

    /// The script's name without `.js`: variants are `STEM.EXT….js`.
    pub fn script_stem(&self) -> &str {
        self.split_script().1.trim_end_matches(".js")
    }
}

/// A path of plain segments: ASCII letters, digits, `-`, `_`, `.`, none empty, `.` or `..`.
fn check(path: &str) -> Result<(), String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("must begin with /".into());
    };
    if path.len() > MAX_PATH {
        return Err(format!("longer than {MAX_PATH} characters"));
    }
    for segment in rest.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err("has an empty, `.` or `..` segment".into());
        }
        if let Some(c) = segment.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
            return Err(format!("`{c}` is not allowed (letters, digits, -, _ and . only)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        let p = TrackerPaths::new(Some("/assets/app.js"), Some("/x/ingest")).unwrap();
        assert_eq!((p.script_dir(), p.script_stem()), ("/assets", "app"));
        assert_eq!(TrackerPaths::new(None, None).unwrap(), TrackerPaths::default());
        for (script, event, why) in [
            ("app.js", "/e", "must begin with /"),
            ("/app.js", "/e", "must be in a directory"),
            ("/a/app.min.js", "/e", "no other dot"),
            ("/a/app", "/e", "NAME.js"),
            ("/a/../app.js", "/e", "segment"),
            ("/a//app.js", "/e", "segment"),
            ("/a/app.js", "/e?x=1", "`?` is not allowed"),
            ("/a/app.js", "/e'", "`'` is not allowed"),
            ("/a/app.js", "/a/e", "script's directory"),
            ("/a/app.js", &format!("/{}", "e".repeat(100)), "longer than"),
        ] {
            let e = TrackerPaths::new(Some(script), Some(event)).unwrap_err();
            assert!(e.contains(why), "{script} {event}: {e}");
        }
    }
}
