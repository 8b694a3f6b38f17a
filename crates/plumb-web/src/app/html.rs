//! HTML building: escaping and the one page layout.

use super::assets;
use plumb_meta::User;
use serde_json::Value;

/// Escapes text for HTML element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The hidden field every form carries.
pub fn csrf_field(token: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(token))
}

/// A form that posts to `action` with one button (delete, revoke, log out…).
pub fn button_form(action: &str, csrf: &str, label: &str, class: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\">{}<button type=\"submit\" class=\"{}\">{}</button></form>",
        esc(action),
        csrf_field(csrf),
        esc(class),
        esc(label)
    )
}

pub struct Page<'a> {
    title: &'a str,
    body: String,
    user: Option<&'a User>,
    csrf: Option<&'a str>,
    script: Option<&'static str>,
    boot: Option<Value>,
    embed: bool,
}

impl<'a> Page<'a> {
    pub fn new(title: &'a str, body: String) -> Self {
        Page { title, body, user: None, csrf: None, script: None, boot: None, embed: false }
    }

    /// Shows the account menu (and needs the CSRF token for its log-out form).
    pub fn user(mut self, user: &'a User, csrf: &'a str) -> Self {
        self.user = Some(user);
        self.csrf = Some(csrf);
        self
    }

    /// A script module from the embedded assets, with data it reads from the page.
    pub fn script(mut self, name: &'static str, boot: Value) -> Self {
        self.script = Some(name);
        self.boot = Some(boot);
        self
    }

    /// Without the top bar, for shared dashboards inside an iframe.
    pub fn embed(mut self, embed: bool) -> Self {
        self.embed = embed;
        self
    }

    pub fn render(self) -> String {
        let nav = match (self.user, self.csrf) {
            (Some(u), Some(csrf)) => format!(
                "<nav aria-label=\"Account\"><a href=\"/sites\">Sites</a><a href=\"/account\">{}</a>{}</nav>",
                esc(&u.email),
                button_form("/logout", csrf, "Log out", "link")
            ),
            _ => String::new(),
        };
        let header = if self.embed {
            String::new()
        } else {
            format!("<header class=\"top\"><a class=\"brand\" href=\"/\">Plumb</a>{nav}</header>")
        };
        let boot = self
            .boot
            // `</` cannot end the JSON's script element early once written as `<\/`.
            .map(|b| {
                format!(
                    "<script type=\"application/json\" id=\"boot\">{}</script>",
                    b.to_string().replace("</", "<\\/")
                )
            })
            .unwrap_or_default();
        let script = self
            .script
            .map(|s| format!("<script type=\"module\" src=\"{}\"></script>", assets::url(s)))
            .unwrap_or_default();
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"color-scheme\" content=\"light dark\">\
             <title>{title} · Plumb</title><link rel=\"icon\" href=\"data:,\">\
             <link rel=\"stylesheet\" href=\"{css}\">{script}</head>\
             <body class=\"{class}\">{header}<main id=\"main\">{body}</main>{boot}</body></html>",
            title = esc(self.title),
            css = assets::url("app.css"),
            class = if self.embed { "embed" } else { "" },
            body = self.body,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_boot_data_cannot_close_its_script() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        let html =
            Page::new("t", String::new()).script("dashboard.js", serde_json::json!({"x": "</script><b>"})).render();
        assert!(!html.contains("</script><b>") && html.contains("<\\/script><b>"), "{html}");
    }
}
