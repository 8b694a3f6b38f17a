//! Compiles a [`SumsQuery`] to SQL. Dialect details (string search, regular expressions, casts)
//! sit behind [`Dialect`], so the same compiler serves DuckDB and ClickHouse. The ClickHouse SQL
//! keeps to what ClickHouse 18.16 and current versions both run.

use crate::imported::{self, ImportedQuery};
use crate::{Attr, Column, Filter, GoalCondition, Op, Sum, SumsQuery, rollup};

pub trait Dialect {
    /// `haystack` contains `needle` (a bound parameter).
    fn contains(&self, haystack: &str, needle: &str) -> String;
    /// `haystack` matches the RE2 pattern `pattern` (a bound parameter).
    fn matches(&self, haystack: &str, pattern: &str) -> String;
    fn to_text(&self, expr: &str) -> String;
    fn to_int(&self, expr: &str) -> String;
    /// The value of a property in the props column (see `plumb_core::schema::encode_props`), `(none)` where
    /// it is missing; `marker` (a bound parameter) is `\x1fkey\x1e`.
    fn prop_value(&self, props: &str, marker: &str) -> String;
    /// `expr & bit` as an integer.
    fn bit_and(&self, expr: &str, bit: u16) -> String;
    /// `expr` in lower case, every script (as Rust's `to_lowercase`, which lowers the values).
    fn lower(&self, expr: &str) -> String;
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
    fn bit_and(&self, expr: &str, bit: u16) -> String {
        format!("({expr} & {bit})")
    }
    fn lower(&self, expr: &str) -> String {
        format!("lower({expr})")
    }
    fn prop_value(&self, props: &str, marker: &str) -> String {
        // First-of-day marks (\x1d) read as plain separators (\x1f) here.
        format!(
            "coalesce(nullif(split_part(split_part(replace({props}, chr(29), chr(31)), {marker}, 2), chr(31), 1), ''), '{}')",
            crate::NO_PROP
        )
    }
}

/// ClickHouse: functions 18.16 and current versions share; the separators of the props column
/// as `\xHH` escapes in literals (no `char()` in 18.16).
pub struct ClickHouseDialect;

impl Dialect for ClickHouseDialect {
    fn contains(&self, haystack: &str, needle: &str) -> String {
        format!("(position({haystack}, {needle}) > 0)")
    }
    fn matches(&self, haystack: &str, pattern: &str) -> String {
        format!("match({haystack}, {pattern})")
    }
    fn to_text(&self, expr: &str) -> String {
        format!("toString({expr})")
    }
    fn to_int(&self, expr: &str) -> String {
        format!("toInt64({expr})")
    }
    fn bit_and(&self, expr: &str, bit: u16) -> String {
        format!("bitAnd({expr}, {bit})")
    }
    fn lower(&self, expr: &str) -> String {
        // `lower` is ASCII-only in ClickHouse.
        format!("lowerUTF8({expr})")
    }
    fn prop_value(&self, props: &str, marker: &str) -> String {
        // An array index past the end reads as '' in ClickHouse, as split_part does in DuckDB.
        format!(
            "coalesce(nullIf(splitByString('\\x1F', splitByString({marker}, replaceAll({props}, '\\x1D', '\\x1F'))[2])[1], ''), '{}')",
            crate::NO_PROP
        )
    }
}

/// A column's SQL; a property's key goes in as a parameter.
fn column_sql(d: &dyn Dialect, c: &Column, params: &mut Vec<Param>) -> String {
    match c {
        Column::Attr(a) => a.column().to_owned(),
        Column::EventName => "(CASE WHEN kind = 1 THEN 'pageview' ELSE name END)".to_owned(),
        Column::ExitPage => Attr::Pathname.column().to_owned(),
        Column::CountryName => Attr::Country.column().to_owned(),
        Column::Day => "day".to_owned(),
        Column::Hour => "hour".to_owned(),
        Column::Prop(key) => {
            params.push(Param::Text(format!("\u{1f}{key}\u{1e}")));
            d.prop_value("props", "?")
        }
    }
}

/// A sum's SQL over `events`, for sums that need no parameter.
pub(crate) fn plain_sum(d: &dyn Dialect, s: Sum) -> String {
    let mut params = Vec::new();
    let sql = sum_sql(d, s, None, &mut params);
    debug_assert!(params.is_empty(), "{s:?} needs parameters");
    sql
}

fn sum_sql(d: &dyn Dialect, s: Sum, prop_key: Option<&str>, params: &mut Vec<Param>) -> String {
    match s {
        Sum::Counter(c) => format!("sum({})", c.column()),
        // `pageview` as an event name: the visitor-day's first hit, when it is a pageview.
        Sum::NameVisitors => "sum(CASE WHEN kind = 1 THEN visitors ELSE name_visitors END)".into(),
        // A goal completion: the first view of that page, or first such event, of the visitor-day.
        Sum::GoalVisitors => "sum(CASE WHEN kind = 1 THEN page_visitors ELSE name_visitors END)".into(),
        Sum::PropVisitors => {
            params.push(Param::Text(format!("\u{1d}{}\u{1e}", prop_key.unwrap_or_default())));
            format!("sum(CASE WHEN {} THEN 1 ELSE 0 END)", d.contains("props", "?"))
        }
        Sum::FirstSessionVisitors(bit) => {
            format!("sum(CASE WHEN visits = 1 AND {} <> 0 THEN 1 ELSE 0 END)", d.bit_and("attr_first", bit))
        }
        // A day number, safe as a literal.
        Sum::WindowVisitors(first) => {
            format!("sum(CASE WHEN day = {first} THEN last_hour_visitors ELSE visitors END)")
        }
        Sum::EntryVisits => unreachable!("the engine computes EntryVisits itself"),
        // `Currency` is three upper-case letters, safe as a literal.
        Sum::RevenueMicros(c) => format!("sum(CASE WHEN revenue_currency = '{c}' THEN revenue_micros ELSE 0 END)"),
        Sum::RevenueEvents(c) => format!("sum(CASE WHEN revenue_currency = '{c}' THEN 1 ELSE 0 END)"),
    }
}

/// Truth values every dialect reads alike (ClickHouse 18.16 has no `TRUE`/`FALSE`).
const TRUE: &str = "(1 = 1)";
const FALSE: &str = "(1 = 0)";

fn filter_sql(d: &dyn Dialect, f: &Filter, params: &mut Vec<Param>) -> String {
    match f {
        Filter::Condition { op, column, values, case_sensitive } => {
            let fold = !*case_sensitive;
            let any: Vec<String> = values
                .iter()
                .map(|v| {
                    let col = column_sql(d, column, params);
                    let folded = if fold { d.lower(&col) } else { col.clone() };
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
            let any = format!("({})", if any.is_empty() { FALSE.to_owned() } else { any.join(" OR ") });
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
        // Day numbers and hours, safe as literals.
        Filter::Hours { from: (fd, fh), to: (td, th) } => {
            format!("((day > {fd} OR (day = {fd} AND hour >= {fh})) AND (day < {td} OR (day = {td} AND hour <= {th})))")
        }
        Filter::And(fs) => join(d, fs, " AND ", TRUE, params),
        Filter::Or(fs) => join(d, fs, " OR ", FALSE, params),
        Filter::Not(f) => format!("NOT ({})", filter_sql(d, f, params)),
    }
}

fn join(d: &dyn Dialect, fs: &[Filter], sep: &str, empty: &str, params: &mut Vec<Param>) -> String {
    if fs.is_empty() {
        return empty.to_owned();
    }
    format!("({})", fs.iter().map(|f| filter_sql(d, f, params)).collect::<Vec<_>>().join(sep))
}

/// SQL over raw rows and its parameters, in placeholder order.
pub fn compile(d: &dyn Dialect, q: &SumsQuery) -> (String, Vec<Param>) {
    let mut params = Vec::new();
    let groups: Vec<String> = q.group_by.iter().map(|c| column_sql(d, c, &mut params)).collect();
    let sums: Vec<String> = q.sums.iter().map(|s| sum_sql(d, *s, q.prop_key.as_deref(), &mut params)).collect();
    let mut conditions = Vec::new();
    if !q.kinds.is_empty() {
        let kinds: Vec<String> = q.kinds.iter().map(u8::to_string).collect();
        conditions.push(format!("kind IN ({})", kinds.join(", ")));
    }
    let mut filter_params = Vec::new();
    if let Some(f) = &q.filter {
        conditions.push(filter_sql(d, f, &mut filter_params));
    }
    let sql = select(d, "events", &groups, &sums, &conditions);
    params.extend(range_params(q));
    params.extend(filter_params);
    (sql, params)
}

/// SQL for `q` that reads a rollup where one serves it (see [`rollup::route`]), raw rows
/// otherwise.
pub fn compile_best(d: &dyn Dialect, q: &SumsQuery) -> (String, Vec<Param>) {
    let Some(read) = rollup::route(q) else { return compile(d, q) };
    let mut params = Vec::new();
    let groups: Vec<String> = q
        .group_by
        .iter()
        .map(|c| match (&read.dim, c) {
            (Some(_), Column::Day) | (None, _) => column_sql(d, c, &mut params),
            (Some(_), _) => "value".to_owned(),
        })
        .collect();
    let sums: Vec<String> = read.measures.iter().map(|m| format!("sum({m})")).collect();
    let mut conditions: Vec<String> = read.dim.iter().map(|dim| format!("dim = {dim}")).collect();
    let mut filter_params = Vec::new();
    if let Some(f) = &q.filter {
        conditions.push(filter_sql(d, f, &mut filter_params));
    }
    let sql = select(d, read.table, &groups, &sums, &conditions);
    params.extend(range_params(q));
    params.extend(filter_params);
    (sql, params)
}

/// SQL for the imported rows of `q` (see [`crate::imported`]).
pub fn compile_imported(d: &dyn Dialect, q: &ImportedQuery) -> (String, Vec<Param>) {
    let groups: Vec<String> = q
        .group_by
        .iter()
        .map(|k| match k {
            imported::Key::Day => "day".to_owned(),
            imported::Key::Value => "value".to_owned(),
        })
        .collect();
    let sums: Vec<String> = q.measures.iter().map(|m| format!("sum({})", m.column())).collect();
    // Ids and the code are integers of ours, not a caller's text.
    let ids: Vec<String> = q.import_ids.iter().map(u32::to_string).collect();
    let conditions = [format!("dim = {}", q.dim), format!("import_id IN ({})", ids.join(", "))];
    let sql = select(d, imported::TABLE, &groups, &sums, &conditions);
    (sql, day_params(q.site_id, q.range).to_vec())
}

fn range_params(q: &SumsQuery) -> [Param; 3] {
    day_params(q.site_id, q.range)
}

fn day_params(site_id: u32, range: crate::DayRange) -> [Param; 3] {
    [Param::Int(site_id.into()), Param::Int(range.from.into()), Param::Int(range.to.into())]
}

/// `SELECT` the groups as text and the sums as integers (0 over no rows) from one site's days
/// of `table` (parameters: site, first day, last day, then the conditions'), grouped by name
/// so every dialect reads it the same way.
fn select(d: &dyn Dialect, table: &str, groups: &[String], sums: &[String], conditions: &[String]) -> String {
    let mut columns: Vec<String> =
        groups.iter().enumerate().map(|(i, g)| format!("{} AS g{i}", d.to_text(g))).collect();
    columns.extend(sums.iter().map(|s| d.to_int(&format!("coalesce({s}, 0)"))));
    let mut sql = format!("SELECT {} FROM {table} WHERE site_id = ? AND day BETWEEN ? AND ?", columns.join(", "));
    for c in conditions {
        sql.push_str(&format!(" AND {c}"));
    }
    if !groups.is_empty() {
        let names: Vec<String> = (0..groups.len()).map(|i| format!("g{i}")).collect();
        sql.push_str(&format!(" GROUP BY {}", names.join(", ")));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Counter, DayRange};

    #[test]
    fn filters_compile_to_bound_parameters() {
        let q = SumsQuery {
            site_id: 1,
            range: DayRange { from: 1, to: 2 },
            group_by: vec![Column::Attr(Attr::Source)],
            filter: Some(Filter::And(vec![
                Filter::Condition {
                    op: Op::IsNot,
                    column: Column::Attr(Attr::Pathname),
                    values: vec!["/a'b".into()],
                    case_sensitive: true,
                },
                Filter::Condition {
                    op: Op::Contains,
                    column: Column::Attr(Attr::Source),
                    values: vec!["GOO".into()],
                    case_sensitive: false,
                },
                Filter::Condition {
                    op: Op::Matches,
                    column: Column::Attr(Attr::Pathname),
                    values: vec!["^/x".into()],
                    case_sensitive: false,
                },
            ])),
            kinds: vec![],
            prop_key: None,
            sums: vec![Sum::Counter(Counter::Visitors), Sum::FirstSessionVisitors(2)],
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
        assert!(sql.ends_with("GROUP BY g0"), "{sql}");
        assert!(!sql.contains("a'b"), "values are never spliced into SQL");
    }
}
