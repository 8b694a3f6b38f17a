//! The query model shared by every reader (Stats API v1 and v2, dashboard, exports): what a
//! caller asks ([`Query`]), what a backend is asked ([`SumsQuery`] → [`GroupSums`]), and what
//! makes no sense ([`Query::validate`]).

use crate::bucket_count;
use crate::imported::{ImportRef, ImportedQuery, ImportsUse};
use plumb_core::schema::{ATTRS, Attr, Counter, Level};
use serde::Serialize;

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

/// Local hours that bound a range (`24h`): it begins at `from_hour` of its first day and ends
/// with `to_hour` of its last, each hour whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourWindow {
    pub from_hour: u8,
    pub to_hour: u8,
}

impl HourWindow {
    /// The rows of `range` within the window.
    pub fn filter(self, range: DayRange) -> Filter {
        Filter::Hours { from: (range.from, self.from_hour), to: (range.to, self.to_hour) }
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
    ConversionRate,
    /// Revenue of goals that have a currency, in that currency.
    TotalRevenue,
    AverageRevenue,
}

impl Metric {
    pub const ALL: [(&str, Metric); 13] = [
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
        ("conversion_rate", Metric::ConversionRate),
        ("total_revenue", Metric::TotalRevenue),
        ("average_revenue", Metric::AverageRevenue),
    ];

    pub fn parse(s: &str) -> Option<Metric> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, m)| *m)
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, m)| *m == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// A column a query can group or filter by: a stored attribute, or one derived from stored columns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Column {
    Attr(Attr),
    /// `pageview` for pageviews, the event name for custom events.
    EventName,
    /// The page a session ended on: pathname, on rows that move a session's exit.
    ExitPage,
    /// The country's English name: the `country` column, named on the way out.
    CountryName,
    Day,
    Hour,
    /// A custom property (`event:props:<key>`); `(none)` where the hit does not have it.
    Prop(String),
}

impl Column {
    /// Event-level columns describe one hit; the others describe the visit (copied onto every
    /// row of the session).
    pub fn is_event_level(&self) -> bool {
        match self {
            Column::Attr(a) => a.spec().level == Level::Event,
            Column::EventName | Column::Prop(_) | Column::ExitPage => true,
            Column::CountryName | Column::Day | Column::Hour => false,
        }
    }

    /// The stored attribute this column reads (country names are stored as codes).
    pub fn attr(&self) -> Option<Attr> {
        match self {
            Column::Attr(a) => Some(*a),
            Column::CountryName => Some(Attr::Country),
            _ => None,
        }
    }

    /// The per-visitor-day "first session with this value" bit (see `plumb_core::schema`), for
    /// visit attributes that can differ between a visitor's sessions of one day.
    pub fn first_session_bit(&self) -> Option<u16> {
        self.attr()?.session_bit()
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
    /// One group per goal of the site (`Query::goals`).
    Goal,
}

/// What completes a goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoalCondition {
    /// A pageview whose path matches this anchored RE2 pattern.
    Page(String),
    /// A custom event with this name.
    Event(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalDef {
    pub name: String,
    pub condition: GoalCondition,
    /// Revenue goals: the currency whose amounts are summed (others are left out: there are
    /// no exchange rates).
    pub currency: Option<Currency>,
}

/// An ISO 4217 code: three upper-case ASCII letters, so it can stand in SQL as a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(s: &str) -> Option<Currency> {
        let b: [u8; 3] = s.as_bytes().try_into().ok()?;
        b.iter().all(u8::is_ascii_uppercase).then_some(Currency(b))
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&self.0).expect("ASCII letters"))
    }
}

/// Columns derived from stored ones, by their API name.
const DERIVED: [(&str, Column); 5] = [
    ("event:name", Column::EventName),
    ("visit:exit_page", Column::ExitPage),
    ("visit:country_name", Column::CountryName),
    // Regions and cities are stored by name, so both spellings serve the same column.
    ("visit:region_name", Column::Attr(Attr::Region)),
    ("visit:city_name", Column::Attr(Attr::City)),
];

/// Every column a query can name, by its API name.
pub fn columns() -> impl Iterator<Item = (&'static str, Column)> {
    ATTRS.iter().map(|a| (a.api, Column::Attr(a.attr))).chain(DERIVED.iter().cloned())
}

const TIMES: [(&str, TimeBucket); 4] = [
    ("time:hour", TimeBucket::Hour),
    ("time:day", TimeBucket::Day),
    ("time:week", TimeBucket::Week),
    ("time:month", TimeBucket::Month),
];

pub const PROPS_PREFIX: &str = "event:props:";

/// The value a property dimension shows for hits without that property.
pub const NO_PROP: &str = "(none)";

impl Dimension {
    /// Every dimension name a query can use, for documentation.
    pub fn names() -> impl Iterator<Item = &'static str> {
        let fixed = columns().map(|(n, _)| n).chain(TIMES.iter().map(|(n, _)| *n));
        fixed.chain(["time", "event:goal", "event:props:<key>"])
    }

    pub fn parse(s: &str, range: DayRange) -> Option<Dimension> {
        if let Some((_, c)) = columns().find(|(n, _)| *n == s) {
            return Some(Dimension::Column(c));
        }
        if let Some((_, t)) = TIMES.iter().find(|(n, _)| *n == s) {
            return Some(Dimension::Time(*t));
        }
        match s {
            "event:goal" => Some(Dimension::Goal),
            _ if s.starts_with(PROPS_PREFIX) => {
                let key = &s[PROPS_PREFIX.len()..];
                (!key.is_empty() && key.len() <= 300 && !key.chars().any(char::is_control))
                    .then(|| Dimension::Column(Column::Prop(key.to_owned())))
            }
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
    pub const ALL: [(&str, Op); 6] = [
        ("is", Op::Is),
        ("is_not", Op::IsNot),
        ("contains", Op::Contains),
        ("contains_not", Op::ContainsNot),
        ("matches", Op::Matches),
        ("matches_not", Op::MatchesNot),
    ];

    pub fn parse(s: &str) -> Option<Op> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, op)| *op)
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
    /// Rows that complete a goal.
    Goal(GoalCondition),
    /// Rows from local day and hour `from` through `to` (each `(day, hour)`), inclusive.
    Hours {
        from: (i32, u8),
        to: (i32, u8),
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

/// Time buckets one answer may hold: a year of hours, or 27 years of days.
pub const MAX_TIME_BUCKETS: i64 = 10_000;
/// Groups a backend may return for one query (and so the memory one answer takes). A breakdown
/// with more values in its range is refused with a message that says how to narrow it.
pub const MAX_GROUPS: usize = 200_000;

/// Additive sums a backend can return per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sum {
    /// A stored counter's plain sum.
    Counter(Counter),
    NameVisitors,
    GoalVisitors,
    /// Rows that carry `SumsQuery::prop_key` for the first time in their visitor-day.
    PropVisitors,
    /// Rows of sessions that were the visitor-day's first with their value of the attribute
    /// whose bit is given.
    FirstSessionVisitors(u16),
    /// Sessions that entered on the group's page. Filled by the engine from a query over entry
    /// pages (as `Visits`); a backend is never asked for it.
    EntryVisits,
    /// Visitor-days of a range bounded by hours ([`HourWindow`]): on its first day, those with a hit
    /// in the hours from the window's first on (`last_hour_visitors`); on later days, as
    /// `visitors` (the first hit, in the window when the day is). The day is the range's first.
    WindowVisitors(i32),
    /// Revenue in millionths of the currency, over rows paid in it, and how many rows those are.
    RevenueMicros(Currency),
    RevenueEvents(Currency),
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
    /// The property whose first-of-day marks [`Sum::PropVisitors`] counts.
    pub prop_key: Option<String>,
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
    /// Hours that bound `range` (and `comparison`, alike), if it is not whole days.
    pub hours: Option<HourWindow>,
    pub total_rows: bool,
    /// The site's goals, for the `event:goal` dimension.
    pub goals: Vec<GoalDef>,
    /// The site's finished imports, whose rows join the answer where they can.
    pub imports: Vec<ImportRef>,
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
    pub imports: ImportsUse,
}

/// A query that makes no sense, with a message that names the field and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

/// How the rows of a query relate to visitors: decides which counter each metric sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grain {
    /// Only visit attributes: whole sessions.
    Visit,
    /// A page or hostname is involved: page-level flags.
    Page,
    /// Event names are involved: per-name flags.
    Name,
    /// A custom property is involved: per-(key, value) first-of-day marks.
    Prop,
    /// Exit pages: exit counters, which move with each session's latest page.
    Exit,
    /// Goals are involved: per-page flags on pageviews, per-name flags on custom events.
    Goal,
}

impl Query {
    /// A site's range with no metric, dimension, filter, goal or import yet, every row on one page:
    /// what callers fill in.
    pub fn over(site_id: u32, range: DayRange) -> Query {
        Query {
            site_id,
            metrics: vec![],
            range,
            dimensions: vec![],
            filter: None,
            order_by: vec![],
            limit: MAX_LIMIT,
            offset: 0,
            comparison: None,
            hours: None,
            total_rows: false,
            goals: vec![],
            imports: vec![],
        }
    }

    pub(crate) fn has_goal(&self) -> bool {
        self.dimensions.contains(&Dimension::Goal) || self.filter.as_ref().is_some_and(Filter::has_goal)
    }

    /// The currencies of the revenue goals the filter names.
    pub(crate) fn filter_currencies(&self) -> Vec<Currency> {
        let mut out: Vec<Currency> = self
            .goals
            .iter()
            .filter(|g| {
                let named = |leaf: &Filter| matches!(leaf, Filter::Goal(c) if *c == g.condition);
                self.filter.as_ref().is_some_and(|f| f.any_leaf(&named))
            })
            .filter_map(|g| g.currency)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub(crate) fn columns(&self) -> Vec<Column> {
        let mut cols: Vec<Column> = self
            .dimensions
            .iter()
            .filter_map(|d| if let Dimension::Column(c) = d { Some(c.clone()) } else { None })
            .collect();
        if let Some(f) = &self.filter {
            f.columns(&mut cols);
        }
        cols
    }

    pub(crate) fn grain(&self) -> Grain {
        let cols = self.columns();
        if self.has_goal() {
            Grain::Goal
        } else if cols.contains(&Column::ExitPage) {
            Grain::Exit
        } else if cols.iter().any(|c| matches!(c, Column::Prop(_))) {
            Grain::Prop
        } else if cols.contains(&Column::EventName) {
            Grain::Name
        } else if cols.iter().any(|c| c.is_event_level()) {
            Grain::Page
        } else {
            Grain::Visit
        }
    }

    pub(crate) fn time_bucket(&self) -> Option<TimeBucket> {
        self.dimensions.iter().find_map(|d| if let Dimension::Time(t) = d { Some(*t) } else { None })
    }

    /// Checks combinations that have no meaning; every rule names what is wrong.
    pub fn validate(&self) -> Result<(), Invalid> {
        let grain = self.grain();
        let has_page = self.columns().contains(&Column::Attr(Attr::Pathname));
        let dims_page = self.dimensions.contains(&Dimension::Column(Column::Attr(Attr::Pathname)));
        for m in &self.metrics {
            let bad = match m {
                Metric::VisitDuration if dims_page => Some("it cannot be broken down by `event:page`"),
                Metric::Visits | Metric::BounceRate | Metric::VisitDuration | Metric::ViewsPerVisit
                    if grain == Grain::Name =>
                {
                    Some("session metrics cannot be combined with `event:name`")
                }
                Metric::Visits | Metric::BounceRate | Metric::VisitDuration | Metric::ViewsPerVisit
                    if grain == Grain::Prop =>
                {
                    Some("session metrics cannot be combined with `event:props`")
                }
                Metric::TimeOnPage | Metric::ScrollDepth if !has_page => {
                    Some("it needs an `event:page` dimension or filter")
                }
                Metric::Percentage if self.dimensions.is_empty() => Some("it needs a dimension"),
                Metric::ConversionRate if !self.has_goal() => Some("it needs an `event:goal` dimension or filter"),
                Metric::TotalRevenue | Metric::AverageRevenue if !self.has_goal() => {
                    Some("it needs an `event:goal` dimension or filter")
                }
                Metric::TotalRevenue | Metric::AverageRevenue if self.filter_currencies().len() > 1 => {
                    Some("the filtered goals have different currencies")
                }
                Metric::Visitors | Metric::Visits | Metric::Percentage if grain == Grain::Exit => None,
                _ if grain == Grain::Exit => {
                    Some("by `visit:exit_page` only visitors, visits and percentage are counted")
                }
                Metric::Visits
                | Metric::BounceRate
                | Metric::VisitDuration
                | Metric::ViewsPerVisit
                | Metric::TimeOnPage
                | Metric::ScrollDepth
                    if self.has_goal() =>
                {
                    Some("goals are counted by visitors, events, conversion rate and revenue")
                }
                _ => None,
            };
            if let Some(why) = bad {
                return Err(Invalid(format!("metrics: `{}` is not valid here: {why}", m.name())));
            }
        }
        if self.filter.as_ref().is_some_and(Filter::matches_country_names) {
            return Err(Invalid("filters: `visit:country_name` takes is, is_not, contains or contains_not".into()));
        }
        if self.filter.as_ref().is_some_and(Filter::asks_for_no_prop) {
            return Err(Invalid(format!("filters: `{NO_PROP}` cannot be filtered for; use is_not with the values")));
        }
        if self.dimensions.contains(&Dimension::Goal) && self.goals.is_empty() {
            return Err(Invalid("dimensions: `event:goal` needs goals; this site has none".into()));
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
        if let Some(bucket) = self.time_bucket() {
            let n = [Some(self.range), self.comparison].into_iter().flatten().map(|r| bucket_count(bucket, r)).max();
            let n = n.unwrap_or(0);
            if n > MAX_TIME_BUCKETS {
                return Err(Invalid(format!(
                    "dimensions: {n} time buckets is more than {MAX_TIME_BUCKETS}; use a coarser interval or a shorter date_range"
                )));
            }
        }
        check_limit(self.limit)
    }
}

/// Rows one answer may hold (`pagination.limit`).
pub const MAX_LIMIT: usize = 10_000;

/// A page size a caller asks for: 1 to [`MAX_LIMIT`].
pub fn check_limit(limit: usize) -> Result<(), Invalid> {
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Invalid(format!("pagination: limit must be 1 to {MAX_LIMIT}, got {limit}")));
    }
    Ok(())
}

/// The backend seam: sums per group, of live rows and of imported ones.
pub trait SumsBackend {
    fn sums(&self, q: &SumsQuery) -> Result<Vec<GroupSums>, StoreError>;
    /// Sums of imported rows, keyed as the live sums query the engine reads them for.
    fn imported(&self, q: &ImportedQuery) -> Result<Vec<GroupSums>, StoreError>;
}

/// What a backend answers when it cannot.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("event store failed: {0}")]
    Backend(String),
    /// A query ran longer than its time budget and was stopped.
    #[error("the query ran longer than {0:?} and was stopped; narrow the range or add a filter")]
    Timeout(std::time::Duration),
    /// A query would answer more groups than one answer may hold, or needed more memory than the
    /// store may use.
    #[error("{0}")]
    TooLarge(String),
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{}", .0.0)]
    Invalid(Invalid),
    #[error(transparent)]
    Store(#[from] StoreError),
}
