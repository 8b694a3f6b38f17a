//! The query model shared by every reader (Stats API v1 and v2, dashboard, exports), and the
//! engine that answers it. Stored rows hold additive counters (see `plumb_core::row`), so a
//! backend only has to return *sums per group* ([`SumsQuery`] → [`GroupSums`]); every metric,
//! time bucket, comparison, ordering and page is computed here, once, for all backends.

use serde::Serialize;
use std::collections::HashMap;

/// Inclusive local day numbers (see `plumb_core::time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub from: i32,
    pub to: i32,
}

impl DayRange {
    pub fn days(&self) -> i32 {
        self.to - self.from + 1
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Visitors,
    Visits,
    Pageviews,
    ViewsPerVisit,
    BounceRate,
    VisitDuration,
    Events,
    Percentage,
    TimeOnPage,
    ScrollDepth,
}

impl Metric {
    pub const ALL: [(&str, Metric); 10] = [
        ("visitors", Metric::Visitors),
        ("visits", Metric::Visits),
        ("pageviews", Metric::Pageviews),
        ("views_per_visit", Metric::ViewsPerVisit),
        ("bounce_rate", Metric::BounceRate),
        ("visit_duration", Metric::VisitDuration),
        ("events", Metric::Events),
        ("percentage", Metric::Percentage),
        ("time_on_page", Metric::TimeOnPage),
        ("scroll_depth", Metric::ScrollDepth),
    ];

    pub fn parse(s: &str) -> Option<Metric> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, m)| *m)
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, m)| *m == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// A stored column a query can group or filter by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    Pathname,
    Hostname,
    /// `pageview` for pageviews, the event name for custom events.
    EventName,
    EntryPage,
    Source,
    Referrer,
    Channel,
    UtmMedium,
    UtmSource,
    UtmCampaign,
    UtmContent,
    UtmTerm,
    Country,
    Region,
    City,
    Device,
    Browser,
    BrowserVersion,
    Os,
    OsVersion,
    Day,
    Hour,
}

impl Column {
    /// Event-level columns describe one hit; the others describe the visit (copied onto every
    /// row of the session).
    pub fn is_event_level(self) -> bool {
        matches!(self, Column::Pathname | Column::Hostname | Column::EventName)
    }

    /// The per-visitor-day "first session with this value" bit (see `plumb_core::VisitAttr`),
    /// for visit attributes that can differ between a visitor's sessions of one day.
    pub fn first_session_bit(self) -> Option<u16> {
        use plumb_core::VisitAttr as A;
        let attr = match self {
            Column::EntryPage => A::EntryPage,
            Column::Source => A::Source,
            Column::Referrer => A::Referrer,
            Column::Channel => A::Channel,
            Column::UtmMedium => A::UtmMedium,
            Column::UtmSource => A::UtmSource,
            Column::UtmCampaign => A::UtmCampaign,
            Column::UtmContent => A::UtmContent,
            Column::UtmTerm => A::UtmTerm,
            _ => return None,
        };
        Some(attr.bit())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBucket {
    Hour,
    Day,
    Week,
    Month,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dimension {
    Column(Column),
    Time(TimeBucket),
}

impl Dimension {
    pub fn parse(s: &str, range: DayRange) -> Option<Dimension> {
        let col = |c| Some(Dimension::Column(c));
        match s {
            "event:page" => col(Column::Pathname),
            "event:hostname" => col(Column::Hostname),
            "event:name" => col(Column::EventName),
            "visit:entry_page" => col(Column::EntryPage),
            "visit:source" => col(Column::Source),
            "visit:referrer" => col(Column::Referrer),
            "visit:channel" => col(Column::Channel),
            "visit:utm_medium" => col(Column::UtmMedium),
            "visit:utm_source" => col(Column::UtmSource),
            "visit:utm_campaign" => col(Column::UtmCampaign),
            "visit:utm_content" => col(Column::UtmContent),
            "visit:utm_term" => col(Column::UtmTerm),
            "visit:country" => col(Column::Country),
            "visit:region" => col(Column::Region),
            "visit:city" => col(Column::City),
            "visit:device" => col(Column::Device),
            "visit:browser" => col(Column::Browser),
            "visit:browser_version" => col(Column::BrowserVersion),
            "visit:os" => col(Column::Os),
            "visit:os_version" => col(Column::OsVersion),
            "time:hour" => Some(Dimension::Time(TimeBucket::Hour)),
            "time:day" => Some(Dimension::Time(TimeBucket::Day)),
            "time:week" => Some(Dimension::Time(TimeBucket::Week)),
            "time:month" => Some(Dimension::Time(TimeBucket::Month)),
            // `time` picks a bucket that suits the range, like the dashboard does.
            "time" => Some(Dimension::Time(match range.days() {
                1 => TimeBucket::Hour,
                2..=93 => TimeBucket::Day,
                _ => TimeBucket::Month,
            })),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Is,
    IsNot,
    Contains,
    ContainsNot,
    Matches,
    MatchesNot,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "is" => Op::Is,
            "is_not" => Op::IsNot,
            "contains" => Op::Contains,
            "contains_not" => Op::ContainsNot,
            "matches" => Op::Matches,
            "matches_not" => Op::MatchesNot,
            _ => return None,
        })
    }

    pub fn negated(self) -> bool {
        matches!(self, Op::IsNot | Op::ContainsNot | Op::MatchesNot)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `column op any-of values`.
    Condition {
        op: Op,
        column: Column,
        values: Vec<String>,
        case_sensitive: bool,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

impl Filter {
    pub fn columns(&self, out: &mut Vec<Column>) {
        match self {
            Filter::Condition { column, .. } => out.push(*column),
            Filter::And(fs) | Filter::Or(fs) => fs.iter().for_each(|f| f.columns(out)),
            Filter::Not(f) => f.columns(out),
        }
    }

    /// The same filter with `from` replaced by `to` (bounce rate by page looks at entry pages).
    pub fn map_column(&self, from: Column, to: Column) -> Filter {
        match self {
            Filter::Condition { op, column, values, case_sensitive } => Filter::Condition {
                op: *op,
                column: if *column == from { to } else { *column },
                values: values.clone(),
                case_sensitive: *case_sensitive,
            },
            Filter::And(fs) => Filter::And(fs.iter().map(|f| f.map_column(from, to)).collect()),
            Filter::Or(fs) => Filter::Or(fs.iter().map(|f| f.map_column(from, to)).collect()),
            Filter::Not(f) => Filter::Not(Box::new(f.map_column(from, to))),
        }
    }
}

/// Additive sums a backend can return per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sum {
    Visitors,
    Visits,
    Pageviews,
    Events,
    Bounces,
    DurationMs,
    PageVisitors,
    PageVisits,
    HourVisitors,
    NameVisitors,
    EngagedMs,
    ScrollGain,
    ScrollPages,
    /// Rows of sessions that were the visitor-day's first with their value of the attribute
    /// whose bit is given.
    FirstSessionVisitors(u16),
    /// Sessions that entered on the group's page. Filled by the engine from a query over entry
    /// pages (as `Visits`); a backend is never asked for it.
    EntryVisits,
}

/// What a backend is asked: sums over one site's rows in a day range, matching a filter,
/// grouped by columns.
#[derive(Debug, Clone, PartialEq)]
pub struct SumsQuery {
    pub site_id: u32,
    pub range: DayRange,
    pub group_by: Vec<Column>,
    pub filter: Option<Filter>,
    /// Only rows of these kinds (`plumb_core::row::RowKind` values); empty = all.
    pub kinds: Vec<u8>,
    pub sums: Vec<Sum>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupSums {
    pub keys: Vec<String>,
    pub sums: Vec<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKey {
    Metric(usize),
    Dimension(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub site_id: u32,
    pub metrics: Vec<Metric>,
    pub range: DayRange,
    pub dimensions: Vec<Dimension>,
    pub filter: Option<Filter>,
    /// (key, descending)
    pub order_by: Vec<(OrderKey, bool)>,
    pub limit: usize,
    pub offset: usize,
    pub comparison: Option<DayRange>,
    pub total_rows: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultRow {
    pub dimensions: Vec<String>,
    pub metrics: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub dimensions: Vec<String>,
    pub metrics: Vec<serde_json::Value>,
    pub change: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    pub results: Vec<ResultRow>,
    pub total_rows: usize,
}

/// A query that makes no sense, with a message that names the field and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

/// How the rows of a query relate to visitors: decides which counter each metric sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grain {
    /// Only visit attributes: whole sessions.
    Visit,
    /// A page or hostname is involved: page-level flags.
    Page,
    /// Event names are involved: per-name flags.
    Name,
}

impl Query {
    fn columns(&self) -> Vec<Column> {
        let mut cols: Vec<Column> =
            self.dimensions.iter().filter_map(|d| if let Dimension::Column(c) = d { Some(*c) } else { None }).collect();
        if let Some(f) = &self.filter {
            f.columns(&mut cols);
        }
        cols
    }

    fn grain(&self) -> Grain {
        let cols = self.columns();
        if cols.contains(&Column::EventName) {
            Grain::Name
        } else if cols.iter().any(|c| c.is_event_level()) {
            Grain::Page
        } else {
            Grain::Visit
        }
    }

    fn time_bucket(&self) -> Option<TimeBucket> {
        self.dimensions.iter().find_map(|d| if let Dimension::Time(t) = d { Some(*t) } else { None })
    }

    /// Checks combinations that have no meaning; every rule names what is wrong.
    pub fn validate(&self) -> Result<(), Invalid> {
        let grain = self.grain();
        let has_page = self.columns().contains(&Column::Pathname);
        let dims_page = self.dimensions.contains(&Dimension::Column(Column::Pathname));
        for m in &self.metrics {
            let bad = match m {
                Metric::VisitDuration if dims_page => Some("it cannot be broken down by `event:page`"),
                Metric::Visits | Metric::BounceRate | Metric::VisitDuration | Metric::ViewsPerVisit
                    if grain == Grain::Name =>
                {
                    Some("session metrics cannot be combined with `event:name`")
                }
                Metric::TimeOnPage | Metric::ScrollDepth if !has_page => {
                    Some("it needs an `event:page` dimension or filter")
                }
                Metric::Percentage if self.dimensions.is_empty() => Some("it needs a dimension"),
                _ => None,
            };
            if let Some(why) = bad {
                return Err(Invalid(format!("metrics: `{}` is not valid here: {why}", m.name())));
            }
        }
        let times = self.dimensions.iter().filter(|d| matches!(d, Dimension::Time(_))).count();
        if times > 1 {
            return Err(Invalid("dimensions: at most one time dimension".into()));
        }
        for (i, d) in self.dimensions.iter().enumerate() {
            if self.dimensions[..i].contains(d) {
                return Err(Invalid(format!("dimensions: dimension #{} is repeated", i + 1)));
            }
        }
        if self.limit == 0 || self.limit > 10_000 {
            return Err(Invalid(format!("pagination: limit must be 1 to 10000, got {}", self.limit)));
        }
        Ok(())
    }
}

/// The backend seam: sums per group.
pub trait SumsBackend {
    fn sums(&self, q: &SumsQuery) -> Result<Vec<GroupSums>, crate::StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{}", .0.0)]
    Invalid(Invalid),
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

/// Sums per metric-relevant counter, keyed by the group's dimension values.
type Table = HashMap<Vec<String>, HashMap<Sum, i64>>;

fn ratio(num: i64, den: i64) -> f64 {
    if den == 0 { 0.0 } else { num as f64 / den as f64 }
}

struct Plan {
    grain: Grain,
    /// Group columns of the main sums query (time buckets other than hour group by day).
    group_by: Vec<Column>,
    sums: Vec<Sum>,
    visitors_sum: Sum,
}

fn plan(q: &Query) -> Plan {
    let grain = q.grain();
    let mut group_by = Vec::new();
    for d in &q.dimensions {
        match d {
            Dimension::Column(c) => group_by.push(*c),
            Dimension::Time(TimeBucket::Hour) => {
                group_by.push(Column::Day);
                group_by.push(Column::Hour);
            }
            Dimension::Time(_) => group_by.push(Column::Day),
        }
    }
    let visit_cols: Vec<Column> = q.columns().into_iter().filter(|c| !c.is_event_level()).collect();
    let varying: Vec<u16> = {
        let mut bits: Vec<u16> = visit_cols.iter().filter_map(|c| c.first_session_bit()).collect();
        bits.sort();
        bits.dedup();
        bits
    };
    let visitors_sum = match grain {
        Grain::Page => Sum::PageVisitors,
        Grain::Name => Sum::NameVisitors,
        // One varying visit attribute: the visitor-day's first session with each value. Several:
        // the visitor-day's first session must match them all (documented approximation).
        Grain::Visit if varying.len() == 1 => Sum::FirstSessionVisitors(varying[0]),
        Grain::Visit if q.time_bucket() == Some(TimeBucket::Hour) => Sum::HourVisitors,
        Grain::Visit => Sum::Visitors,
    };
    let mut sums = vec![visitors_sum];
    for m in &q.metrics {
        let extra: &[Sum] = match m {
            Metric::Visitors | Metric::Percentage => &[],
            Metric::Visits => &[if grain == Grain::Page { Sum::PageVisits } else { Sum::Visits }],
            Metric::Pageviews => &[Sum::Pageviews],
            Metric::Events => &[Sum::Events],
            Metric::ViewsPerVisit => &[Sum::Pageviews, Sum::Visits],
            // With pages involved these come from the entry-page query instead.
            Metric::BounceRate if grain == Grain::Page => &[],
            Metric::BounceRate => &[Sum::Bounces, Sum::Visits],
            Metric::VisitDuration => &[Sum::DurationMs, Sum::Visits],
            Metric::TimeOnPage => &[Sum::EngagedMs, Sum::Pageviews],
            Metric::ScrollDepth => &[Sum::ScrollGain, Sum::ScrollPages],
        };
        sums.extend_from_slice(extra);
    }
    sums.sort();
    sums.dedup();
    Plan { grain, group_by, sums, visitors_sum }
}

/// Label of a time bucket for a day (and hour).
fn bucket_label(bucket: TimeBucket, day: i32, hour: Option<u8>) -> String {
    use chrono::Datelike;
    let date = plumb_core::time::date_of_day(day);
    match bucket {
        TimeBucket::Hour => format!("{date} {:02}:00:00", hour.unwrap_or(0)),
        TimeBucket::Day => date.to_string(),
        TimeBucket::Week => {
            plumb_core::time::date_of_day(day - date.weekday().num_days_from_monday() as i32).to_string()
        }
        TimeBucket::Month => date.with_day(1).expect("day 1 exists").to_string(),
    }
}

/// Every bucket label of a range, in order.
pub fn time_labels(bucket: TimeBucket, range: DayRange) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for day in range.from..=range.to {
        let hours: Vec<Option<u8>> = if bucket == TimeBucket::Hour { (0..24).map(Some).collect() } else { vec![None] };
        for h in hours {
            let l = bucket_label(bucket, day, h);
            if labels.last() != Some(&l) {
                labels.push(l);
            }
        }
    }
    labels
}

/// Runs the sums query of a plan over a range and folds day/hour keys into time buckets.
fn fetch(backend: &dyn SumsBackend, q: &Query, p: &Plan, range: DayRange) -> Result<Table, QueryError> {
    let sq = SumsQuery {
        site_id: q.site_id,
        range,
        group_by: p.group_by.clone(),
        filter: q.filter.clone(),
        kinds: if p.grain == Grain::Name { vec![1, 2] } else { vec![] },
        sums: p.sums.clone(),
    };
    let mut table: Table = HashMap::new();
    for g in backend.sums(&sq)? {
        let key = bucket_keys(q, &p.group_by, &g.keys);
        let entry = table.entry(key).or_default();
        for (s, v) in p.sums.iter().zip(&g.sums) {
            *entry.entry(*s).or_default() += v;
        }
    }
    // Bounce rate with pages involved: sessions entering on the page (or matching the page
    // filter) — the same query over entry pages instead of pages.
    if p.grain == Grain::Page && q.metrics.contains(&Metric::BounceRate) {
        let to_entry = |c: &Column| if *c == Column::Pathname { Column::EntryPage } else { *c };
        let bq = SumsQuery {
            group_by: p.group_by.iter().map(to_entry).collect(),
            filter: q.filter.as_ref().map(|f| f.map_column(Column::Pathname, Column::EntryPage)),
            sums: vec![Sum::Bounces, Sum::Visits],
            ..sq
        };
        for g in backend.sums(&bq)? {
            let key = bucket_keys(q, &p.group_by, &g.keys);
            let entry = table.entry(key).or_default();
            *entry.entry(Sum::Bounces).or_default() += g.sums[0];
            *entry.entry(Sum::EntryVisits).or_default() += g.sums[1];
        }
    }
    Ok(table)
}

/// Dimension values of a group: column values as they are, day/hour turned into bucket labels.
fn bucket_keys(q: &Query, group_by: &[Column], raw: &[String]) -> Vec<String> {
    let mut keys = Vec::with_capacity(q.dimensions.len());
    let mut i = 0;
    for d in &q.dimensions {
        match d {
            Dimension::Column(_) => {
                keys.push(raw[i].clone());
                i += 1;
            }
            Dimension::Time(b) => {
                let day: i32 = raw[i].parse().unwrap_or_default();
                i += 1;
                let hour = if *b == TimeBucket::Hour {
                    i += 1;
                    raw[i - 1].parse().ok()
                } else {
                    None
                };
                keys.push(bucket_label(*b, day, hour));
            }
        }
    }
    debug_assert_eq!(i, group_by.len());
    keys
}

fn metric_value(m: Metric, p: &Plan, s: &HashMap<Sum, i64>, total_visitors: i64) -> serde_json::Value {
    let get = |k: Sum| s.get(&k).copied().unwrap_or(0);
    let visits = if p.grain == Grain::Page { get(Sum::PageVisits) } else { get(Sum::Visits) };
    match m {
        Metric::Visitors => get(p.visitors_sum).into(),
        Metric::Visits => visits.into(),
        Metric::Pageviews => get(Sum::Pageviews).into(),
        Metric::Events => get(Sum::Events).into(),
        Metric::ViewsPerVisit => ((ratio(get(Sum::Pageviews), get(Sum::Visits)) * 100.0).round() / 100.0).into(),
        Metric::BounceRate => {
            let sessions = if p.grain == Grain::Page { get(Sum::EntryVisits) } else { get(Sum::Visits) };
            (ratio(get(Sum::Bounces) * 100, sessions).round() as i64).into()
        }
        Metric::VisitDuration => (ratio(get(Sum::DurationMs), get(Sum::Visits) * 1000).round() as i64).into(),
        Metric::Percentage => ((ratio(get(p.visitors_sum) * 1000, total_visitors)).round() / 10.0).into(),
        Metric::TimeOnPage => (ratio(get(Sum::EngagedMs), get(Sum::Pageviews) * 1000).round() as i64).into(),
        Metric::ScrollDepth => (ratio(get(Sum::ScrollGain), get(Sum::ScrollPages)).round() as i64).into(),
    }
}

fn change(m: Metric, now: &serde_json::Value, before: &serde_json::Value) -> serde_json::Value {
    let (a, b) = (now.as_f64().unwrap_or(0.0), before.as_f64().unwrap_or(0.0));
    match m {
        // Rates change in points, like Plausible.
        Metric::BounceRate | Metric::Percentage => ((a - b) * 10.0).round() / 10.0,
        _ if b == 0.0 => return if a == 0.0 { 0.into() } else { 100.into() },
        _ => ((a - b) / b * 1000.0).round() / 10.0,
    }
    .into()
}

/// A group's dimension values, its metric values, and the sums they came from.
type Computed<'a> = (Vec<String>, Vec<serde_json::Value>, &'a HashMap<Sum, i64>);

/// Answers a query: validates it, asks the backend for sums, derives metrics, orders and pages.
pub fn run(backend: &dyn SumsBackend, q: &Query) -> Result<QueryOutput, QueryError> {
    q.validate().map_err(QueryError::Invalid)?;
    let p = plan(q);
    let table = fetch(backend, q, &p, q.range)?;
    let total_visitors = if q.metrics.contains(&Metric::Percentage) {
        let totals = Query { dimensions: vec![], metrics: vec![Metric::Visitors], ..q.clone() };
        let tp = plan(&totals);
        fetch(backend, &totals, &tp, q.range)?.values().map(|s| s.get(&tp.visitors_sum).copied().unwrap_or(0)).sum()
    } else {
        0
    };
    let compared = match q.comparison {
        Some(range) => Some(fetch(backend, q, &p, range)?),
        None => None,
    };

    let mut rows: Vec<Computed> = table
        .iter()
        .map(|(k, s)| (k.clone(), q.metrics.iter().map(|m| metric_value(*m, &p, s, total_visitors)).collect(), s))
        .collect();
    // A query without dimensions always answers one row, even over no data.
    let empty = HashMap::new();
    if q.dimensions.is_empty() && rows.is_empty() {
        rows.push((vec![], q.metrics.iter().map(|m| metric_value(*m, &p, &empty, total_visitors)).collect(), &empty));
    }
    // Groups whose sums are all zero (e.g. only correction rows) are not results.
    if !q.dimensions.is_empty() {
        rows.retain(|(_, _, s)| s.values().any(|v| *v != 0));
    }
    let order: Vec<(OrderKey, bool)> = if q.order_by.is_empty() {
        match q.dimensions.iter().position(|d| matches!(d, Dimension::Time(_))) {
            Some(i) => vec![(OrderKey::Dimension(i), false)],
            None => vec![(OrderKey::Metric(0), true)],
        }
    } else {
        q.order_by.clone()
    };
    rows.sort_by(|a, b| {
        for (key, desc) in &order {
            let o = match key {
                OrderKey::Metric(i) => a.1[*i].as_f64().unwrap_or(0.0).total_cmp(&b.1[*i].as_f64().unwrap_or(0.0)),
                OrderKey::Dimension(i) => a.0[*i].cmp(&b.0[*i]),
            };
            let o = if *desc { o.reverse() } else { o };
            if o.is_ne() {
                return o;
            }
        }
        // Stable ties: by dimension values.
        a.0.cmp(&b.0)
    });
    let total_rows = rows.len();
    let time_index = q.dimensions.iter().position(|d| matches!(d, Dimension::Time(_)));
    let results = rows
        .into_iter()
        .skip(q.offset)
        .take(q.limit)
        .map(|(dims, metrics, _)| {
            let comparison = compared.as_ref().map(|before| {
                let mut key = dims.clone();
                // A time bucket compares with the bucket at the same position in the other range.
                if let (Some(i), Some(range)) = (time_index, q.comparison) {
                    let bucket = q.time_bucket().expect("time dimension present");
                    let labels = time_labels(bucket, q.range);
                    let other = time_labels(bucket, range);
                    if let Some(pos) = labels.iter().position(|l| *l == dims[i]) {
                        key[i] = other.get(pos).cloned().unwrap_or_default();
                    }
                }
                let s = before.get(&key).unwrap_or(&empty);
                let values: Vec<serde_json::Value> =
                    q.metrics.iter().map(|m| metric_value(*m, &p, s, total_visitors)).collect();
                let change =
                    q.metrics.iter().zip(metrics.iter().zip(&values)).map(|(m, (a, b))| change(*m, a, b)).collect();
                Comparison { dimensions: key, metrics: values, change }
            });
            ResultRow { dimensions: dims, metrics, comparison }
        })
        .collect();
    Ok(QueryOutput { results, total_rows })
}
