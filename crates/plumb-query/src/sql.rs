//! Compiles a [`SumsQuery`] to SQL. Dialect details (string search, regular expressions, casts)
//! sit behind [`Dialect`], so the same compiler serves DuckDB now and ClickHouse later.

use crate::{Column, Filter, GoalCondition, Op, Sum, SumsQuery};

pub trait Dialect {
    /// `haystack` contains `needle` (a bound parameter).
    fn contains(&self, haystack: &str, needle: &str) -> String;
    /// `haystack` matches the RE2 pattern `pattern` (a bound parameter).
    fn matches(&self, haystack: &str, pattern: &str) -> String;
    fn to_text(&self, expr: &str) -> String;
    fn to_int(&self, expr: &str) -> String;
    /// The value of a property in the props column (see `duck::encode_props`), `(none)` where
    /// it is missing; `marker` (a bound parameter) is `\x1fkey\x1e`.
    fn prop_value(&self, props: &str, marker: &str) -> String;
}

/// A bound parameter, in the order the `?` placeholders appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Int(i64),
    Text(String),
}

pub struct DuckDialect;

impl Dialect for DuckDialect {
    fn contains(&self, haystack: &str, needle: &str) -> String {
        format!("contains({haystack}, {needle})")
    }
    fn matches(&self, haystack: &str, pattern: &str) -> String {
        format!("regexp_matches({haystack}, {pattern})")
    }
    fn to_text(&self, expr: &str) -> String {
        format!("CAST({expr} AS VARCHAR)")
    }
    fn to_int(&self, expr: &str) -> String {
        format!("CAST({expr} AS BIGINT)")
    }
    fn prop_value(&self, props: &str, marker: &str) -> String {
        // First-of-day marks (\x1d) read as plain separators (\x1f) here.
        format!(
            "coalesce(nullif(split_part(split_part(replace({props}, chr(29), chr(31)), {marker}, 2), chr(31), 1), ''), '{}')",
            crate::NO_PROP
        )
    }
}

/// A column's SQL; a property's key goes in as a parameter.
fn column_sql(d: &dyn Dialect, c: &Column, params: &mut Vec<Param>) -> String {
    let name = match c {
        Column::Pathname => "pathname",
        Column::Hostname => "hostname",
        Column::EventName => "(CASE WHEN kind = 1 THEN 'pageview' ELSE name END)",
        Column::EntryPage => "entry_page",
        Column::ExitPage => "pathname",
        Column::Source => "source",
        Column::Referrer => "referrer",
        Column::Channel => "channel",
        Column::UtmMedium => "utm_medium",
        Column::UtmSource => "utm_source",
        Column::UtmCampaign => "utm_campaign",
        Column::UtmContent => "utm_content",
        Column::UtmTerm => "utm_term",
        Column::Country | Column::CountryName => "country",
        Column::Region => "region",
        Column::City => "city",
        Column::Device => "device",
        Column::Browser => "browser",
        Column::BrowserVersion => "browser_version",
        Column::Os => "os",
        Column::OsVersion => "os_version",
        Column::Day => "day",
        Column::Hour => "hour",
        Column::Prop(key) => {
            params.push(Param::Text(format!("\u{1f}{key}\u{1e}")));
            return d.prop_value("props", "?");
        }
    };
    name.to_owned()
}

/// A sum's SQL, for sums that need no parameter.
pub(crate) fn plain_sum(s: Sum) -> String {
    let mut params = Vec::new();
    let sql = sum_sql(&DuckDialect, s, None, &mut params);
    debug_assert!(params.is_empty(), "{s:?} needs parameters");
    sql
}

/// A stored column's SQL, for columns that need no parameter.
pub(crate) fn plain_column(c: &Column) -> String {
    let mut params = Vec::new();
    let sql = column_sql(&DuckDialect, c, &mut params);
    debug_assert!(params.is_empty(), "{c:?} needs parameters");
    sql
}

fn sum_sql(d: &dyn Dialect, s: Sum, prop_key: Option<&str>, params: &mut Vec<Param>) -> String {
    match s {
        Sum::Visitors => "sum(visitors)".into(),
        Sum::Visits => "sum(visits)".into(),
        Sum::Pageviews => "sum(pageviews)".into(),
        Sum::Events => "sum(events)".into(),
        Sum::Bounces => "sum(bounces)".into(),
        Sum::DurationMs => "sum(duration_ms)".into(),
        Sum::PageVisitors => "sum(page_visitors)".into(),
        Sum::PageVisits => "sum(page_visits)".into(),
        Sum::HourVisitors => "sum(hour_visitors)".into(),
        // `pageview` as an event name: the visitor-day's first hit, when it is a pageview.
        Sum::NameVisitors => "sum(CASE WHEN kind = 1 THEN visitors ELSE name_visitors END)".into(),
        // A goal completion: the first view of that page, or first such event, of the visitor-day.
        Sum::GoalVisitors => "sum(CASE WHEN kind = 1 THEN page_visitors ELSE name_visitors END)".into(),
        Sum::PropVisitors => {
            params.push(Param::Text(format!("\u{1d}{}\u{1e}", prop_key.unwrap_or_default())));
            format!("sum(CASE WHEN {} THEN 1 ELSE 0 END)", d.contains("props", "?"))
        }
        Sum::Exits => "sum(exits)".into(),
        Sum::ExitVisitors => "sum(exit_visitors)".into(),
        Sum::EngagedMs => "sum(engaged_ms)".into(),
        Sum::ScrollGain => "sum(scroll_gain)".into(),
        Sum::ScrollPages => "sum(scroll_pages)".into(),
        Sum::FirstSessionVisitors(bit) => {
            format!("sum(CASE WHEN visits = 1 AND (attr_first & {bit}) <> 0 THEN 1 ELSE 0 END)")
        }
        Sum::EntryVisits => unreachable!("the engine computes EntryVisits itself"),
        // `Currency` is three upper-case letters, safe as a literal.
        Sum::RevenueMicros(c) => format!("sum(CASE WHEN revenue_currency = '{c}' THEN revenue_micros ELSE 0 END)"),
        Sum::RevenueEvents(c) => format!("sum(CASE WHEN revenue_currency = '{c}' THEN 1 ELSE 0 END)"),
    }
}

fn filter_sql(d: &dyn Dialect, f: &Filter, params: &mut Vec<Param>) -> String {
    match f {
        Filter::Condition { op, column, values, case_sensitive } => {
            let fold = !*case_sensitive;
            let any: Vec<String> = values
                .iter()
                .map(|v| {
                    let col = column_sql(d, column, params);
                    let folded = if fold { format!("lower({col})") } else { col.clone() };
                    let v =
                        if fold && !matches!(op, Op::Matches | Op::MatchesNot) { v.to_lowercase() } else { v.clone() };
                    match op {
                        Op::Is | Op::IsNot => {
                            params.push(Param::Text(v));
                            format!("{folded} = ?")
                        }
                        Op::Contains | Op::ContainsNot => {
                            params.push(Param::Text(v));
                            d.contains(&folded, "?")
                        }
                        Op::Matches | Op::MatchesNot => {
                            // Case-insensitive patterns use RE2's flag, not lowered text.
                            params.push(Param::Text(if fold { format!("(?i){v}") } else { v }));
                            d.matches(&col, "?")
                        }
                    }
                })
                .collect();
            let any = format!("({})", if any.is_empty() { "FALSE".to_owned() } else { any.join(" OR ") });
            if op.negated() { format!("NOT {any}") } else { any }
        }
        Filter::Goal(GoalCondition::Page(pattern)) => {
            params.push(Param::Text(pattern.clone()));
            format!("(kind = 1 AND {})", d.matches("pathname", "?"))
        }
        Filter::Goal(GoalCondition::Event(name)) => {
            params.push(Param::Text(name.clone()));
            "(kind = 2 AND name = ?)".to_owned()
        }
        Filter::And(fs) => join(d, fs, " AND ", "TRUE", params),
        Filter::Or(fs) => join(d, fs, " OR ", "FALSE", params),
        Filter::Not(f) => format!("NOT ({})", filter_sql(d, f, params)),
    }
}

fn join(d: &dyn Dialect, fs: &[Filter], sep: &str, empty: &str, params: &mut Vec<Param>) -> String {
    if fs.is_empty() {
        return empty.to_owned();
    }
    format!("({})", fs.iter().map(|f| filter_sql(d, f, params)).collect::<Vec<_>>().join(sep))
}

/// SQL and its parameters, in placeholder order.
pub fn compile(d: &dyn Dialect, q: &SumsQuery) -> (String, Vec<Param>) {
    compile_on(d, q, "events", None)
}

/// The same over another table with the stored columns the query uses, where `measures[i]` is
/// a column whose sum is the query's `i`-th sum (a rollup).
pub fn compile_on(d: &dyn Dialect, q: &SumsQuery, table: &str, measures: Option<&[&str]>) -> (String, Vec<Param>) {
    let mut params = Vec::new();
    let mut select: Vec<String> = q.group_by.iter().map(|c| d.to_text(&column_sql(d, c, &mut params))).collect();
    for (i, s) in q.sums.iter().enumerate() {
        let sum = match measures {
            Some(m) => format!("sum({})", m[i]),
            None => sum_sql(d, *s, q.prop_key.as_deref(), &mut params),
        };
        select.push(d.to_int(&format!("coalesce({sum}, 0)")));
    }
    let mut sql = format!("SELECT {} FROM {table} WHERE site_id = ? AND day BETWEEN ? AND ?", select.join(", "));
    params.extend([Param::Int(q.site_id.into()), Param::Int(q.range.from.into()), Param::Int(q.range.to.into())]);
    if !q.kinds.is_empty() {
        let kinds: Vec<String> = q.kinds.iter().map(u8::to_string).collect();
        sql.push_str(&format!(" AND kind IN ({})", kinds.join(", ")));
    }
    if let Some(f) = &q.filter {
        sql.push_str(&format!(" AND {}", filter_sql(d, f, &mut params)));
    }
    if !q.group_by.is_empty() {
        let positions: Vec<String> = (1..=q.group_by.len()).map(|i| i.to_string()).collect();
        sql.push_str(&format!(" GROUP BY {}", positions.join(", ")));
    }
    (sql, params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DayRange;

    #[test]
    fn filters_compile_to_bound_parameters() {
        let q = SumsQuery {
            site_id: 1,
            range: DayRange { from: 1, to: 2 },
            group_by: vec![Column::Source],
            filter: Some(Filter::And(vec![
                Filter::Condition {
                    op: Op::IsNot,
                    column: Column::Pathname,
                    values: vec!["/a'b".into()],
                    case_sensitive: true,
                },
                Filter::Condition {
                    op: Op::Contains,
                    column: Column::Source,
                    values: vec!["GOO".into()],
                    case_sensitive: false,
                },
                Filter::Condition {
                    op: Op::Matches,
                    column: Column::Pathname,
                    values: vec!["^/x".into()],
                    case_sensitive: false,
                },
            ])),
            kinds: vec![],
            prop_key: None,
            sums: vec![Sum::Visitors, Sum::FirstSessionVisitors(2)],
        };
        let (sql, params) = compile(&DuckDialect, &q);
        let text = |s: &str| Param::Text(s.into());
        let leading = [Param::Int(1), Param::Int(1), Param::Int(2)];
        assert_eq!(params[..3], leading);
        assert_eq!(params[3..], [text("/a'b"), text("goo"), text("(?i)^/x")]);
        assert!(sql.contains("NOT (pathname = ?)"), "{sql}");
        assert!(sql.contains("contains(lower(source), ?)"), "{sql}");
        assert!(sql.contains("regexp_matches(pathname, ?)"), "{sql}");
        assert!(sql.contains("(attr_first & 2) <> 0"), "{sql}");
        assert!(sql.ends_with("GROUP BY 1"), "{sql}");
        assert!(!sql.contains("a'b"), "values are never spliced into SQL");
    }
}
