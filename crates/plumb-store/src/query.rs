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

/// A stored column a query can group or filter by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Column {
    Pathname,
    Hostname,
    /// `pageview` for pageviews, the event name for custom events.
    EventName,
    EntryPage,
    /// The page a session ended on: pathname, on rows that move a session's exit.
    ExitPage,
    Source,
    Referrer,
    Channel,
    UtmMedium,
    UtmSource,
    UtmCampaign,
    UtmContent,
    UtmTerm,
    Country,
    /// The country's English name: the `country` column, named on the way out.
    CountryName,
    Region,
    City,
    Device,
    Browser,
    BrowserVersion,
    Os,
    OsVersion,
    Day,
    Hour,
    /// A custom property (`event:props:<key>`); `(none)` where the hit does not have it.
    Prop(String),
}

impl Column {
    /// Event-level columns describe one hit; the others describe the visit (copied onto every
    /// row of the session).
    pub fn is_event_level(&self) -> bool {
        matches!(self, Column::Pathname | Column::Hostname | Column::EventName | Column::Prop(_) | Column::ExitPage)
    }

    /// The per-visitor-day "first session with this value" bit (see `plumb_core::VisitAttr`),
    /// for visit attributes that can differ between a visitor's sessions of one day.
    pub fn first_session_bit(&self) -> Option<u16> {
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

/// Dimensions that are stored columns, by their API name.
pub const COLUMNS: [(&str, Column); 24] = [
    ("event:page", Column::Pathname),
    ("event:hostname", Column::Hostname),
    ("event:name", Column::EventName),
    ("visit:entry_page", Column::EntryPage),
    ("visit:exit_page", Column::ExitPage),
    ("visit:source", Column::Source),
    ("visit:referrer", Column::Referrer),
    ("visit:channel", Column::Channel),
    ("visit:utm_medium", Column::UtmMedium),
    ("visit:utm_source", Column::UtmSource),
    ("visit:utm_campaign", Column::UtmCampaign),
    ("visit:utm_content", Column::UtmContent),
    ("visit:utm_term", Column::UtmTerm),
    ("visit:country", Column::Country),
    ("visit:region", Column::Region),
    ("visit:city", Column::City),
    ("visit:country_name", Column::CountryName),
    // Regions and cities are stored by name, so both spellings serve the same column.
    ("visit:region_name", Column::Region),
    ("visit:city_name", Column::City),
    ("visit:device", Column::Device),
    ("visit:browser", Column::Browser),
    ("visit:browser_version", Column::BrowserVersion),
    ("visit:os", Column::Os),
    ("visit:os_version", Column::OsVersion),
];

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
        let fixed = COLUMNS.iter().map(|(n, _)| *n).chain(TIMES.iter().map(|(n, _)| *n));
        fixed.chain(["time", "event:goal", "event:props:<key>"])
    }

    pub fn parse(s: &str, range: DayRange) -> Option<Dimension> {
        if let Some((_, c)) = COLUMNS.iter().find(|(n, _)| *n == s) {
            return Some(Dimension::Column(c.clone()));
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
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

impl Filter {
    pub fn columns(&self, out: &mut Vec<Column>) {
        match self {
            Filter::Condition { column, .. } => out.push(column.clone()),
            Filter::Goal(GoalCondition::Page(_)) => out.push(Column::Pathname),
            Filter::Goal(GoalCondition::Event(_)) => out.push(Column::EventName),
            Filter::And(fs) | Filter::Or(fs) => fs.iter().for_each(|f| f.columns(out)),
            Filter::Not(f) => f.columns(out),
        }
    }

    /// The same filter with `from` replaced by `to` (bounce rate by page looks at entry pages).
    pub fn map_column(&self, from: &Column, to: &Column) -> Filter {
        self.map_leaves(&|leaf| match leaf {
            Filter::Condition { op, column, values, case_sensitive } if column == from => Filter::Condition {
                op: *op,
                column: to.clone(),
                values: values.clone(),
                case_sensitive: *case_sensitive,
            },
            other => other.clone(),
        })
    }

    /// Whether some condition or goal of the tree satisfies `pred`.
    fn any_leaf(&self, pred: &dyn Fn(&Filter) -> bool) -> bool {
        match self {
            Filter::And(fs) | Filter::Or(fs) => fs.iter().any(|f| f.any_leaf(pred)),
            Filter::Not(f) => f.any_leaf(pred),
            leaf => pred(leaf),
        }
    }

    /// The same tree with each condition and goal replaced by `f` of it.
    fn map_leaves(&self, f: &dyn Fn(&Filter) -> Filter) -> Filter {
        match self {
            Filter::And(fs) => Filter::And(fs.iter().map(|x| x.map_leaves(f)).collect()),
            Filter::Or(fs) => Filter::Or(fs.iter().map(|x| x.map_leaves(f)).collect()),
            Filter::Not(x) => Filter::Not(Box::new(x.map_leaves(f))),
            leaf => f(leaf),
        }
    }

    pub fn has_goal(&self) -> bool {
        self.any_leaf(&|leaf| matches!(leaf, Filter::Goal(_)))
    }

    /// The filter with goal conditions left out (the base a conversion rate divides by); `None`
    /// when nothing is left.
    pub fn without_goals(&self) -> Option<Filter> {
        match self {
            Filter::Goal(_) => None,
            Filter::Condition { .. } => Some(self.clone()),
            Filter::And(fs) | Filter::Or(fs) => {
                let rest: Vec<Filter> = fs.iter().filter_map(Filter::without_goals).collect();
                match (rest.len(), self) {
                    (0, _) => None,
                    (_, Filter::And(_)) => Some(Filter::And(rest)),
                    _ => Some(Filter::Or(rest)),
                }
            }
            Filter::Not(f) => f.without_goals().map(|f| Filter::Not(Box::new(f))),
        }
    }

    fn matches_country_names(&self) -> bool {
        self.any_leaf(&|leaf| {
            matches!(leaf, Filter::Condition { column: Column::CountryName, op: Op::Matches | Op::MatchesNot, .. })
        })
    }

    /// Conditions on country names as conditions on the stored codes.
    fn with_country_codes(&self) -> Filter {
        self.map_leaves(&|leaf| match leaf {
            Filter::Condition { column: Column::CountryName, op, values, case_sensitive } => {
                let fold = |s: &str| if *case_sensitive { s.to_owned() } else { s.to_lowercase() };
                let wanted: Vec<String> = values.iter().map(|v| fold(v)).collect();
                let is = matches!(op, Op::Is | Op::IsNot);
                let mut codes: Vec<String> = plumb_core::country::country_codes_where(|name| {
                    let name = fold(name);
                    wanted.iter().any(|w| if is { name == *w } else { name.contains(w.as_str()) })
                })
                .into_iter()
                .map(str::to_owned)
                .collect();
                // No country known (stored as ""): named by the empty value.
                if wanted.iter().any(String::is_empty) {
                    codes.push(String::new());
                }
                let op = if op.negated() { Op::IsNot } else { Op::Is };
                Filter::Condition { op, column: Column::Country, values: codes, case_sensitive: true }
            }
            other => other.clone(),
        })
    }

    /// Whether a condition on a property names `(none)`, which visitor counts cannot serve.
    fn asks_for_no_prop(&self) -> bool {
        self.any_leaf(&|leaf| {
            matches!(leaf, Filter::Condition { column: Column::Prop(_), values, .. } if values.iter().any(|v| v == NO_PROP))
        })
    }

    fn and(a: Option<Filter>, b: Filter) -> Filter {
        match a {
            Some(a) => Filter::And(vec![a, b]),
            None => b,
        }
    }
}

/// Time buckets one answer may hold: a year of hours, or 27 years of days.
pub const MAX_TIME_BUCKETS: i64 = 10_000;
/// Groups a backend may return for one query (and so the memory one answer takes). A breakdown
/// with more values in its range is refused with a message that says how to narrow it.
pub const MAX_GROUPS: usize = 200_000;

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
    GoalVisitors,
    /// Rows that carry `SumsQuery::prop_key` for the first time in their visitor-day.
    PropVisitors,
    Exits,
    ExitVisitors,
    EngagedMs,
    ScrollGain,
    ScrollPages,
    /// Rows of sessions that were the visitor-day's first with their value of the attribute
    /// whose bit is given.
    FirstSessionVisitors(u16),
    /// Sessions that entered on the group's page. Filled by the engine from a query over entry
    /// pages (as `Visits`); a backend is never asked for it.
    EntryVisits,
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
    pub total_rows: bool,
    /// The site's goals, for the `event:goal` dimension.
    pub goals: Vec<GoalDef>,
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
    /// A custom property is involved: per-(key, value) first-of-day marks.
    Prop,
    /// Exit pages: exit counters, which move with each session's latest page.
    Exit,
    /// Goals are involved: per-page flags on pageviews, per-name flags on custom events.
    Goal,
}

impl Query {
    fn has_goal(&self) -> bool {
        self.dimensions.contains(&Dimension::Goal) || self.filter.as_ref().is_some_and(Filter::has_goal)
    }

    /// The currencies of the revenue goals the filter names.
    fn filter_currencies(&self) -> Vec<Currency> {
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

    fn columns(&self) -> Vec<Column> {
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

    fn grain(&self) -> Grain {
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
type GroupTable = HashMap<Vec<String>, HashMap<Sum, i64>>;

fn ratio(num: i64, den: i64) -> f64 {
    if den == 0 { 0.0 } else { num as f64 / den as f64 }
}

struct MetricPlan {
    grain: Grain,
    /// The currency revenue is summed in (the filtered goals').
    currency: Option<Currency>,
    /// Group columns of the main sums query (time buckets other than hour group by day).
    group_by: Vec<Column>,
    sums: Vec<Sum>,
    visitors_sum: Sum,
}

fn plan(q: &Query) -> MetricPlan {
    let grain = q.grain();
    let currency = q.filter_currencies().first().copied();
    let mut group_by = Vec::new();
    for d in &q.dimensions {
        match d {
            Dimension::Column(c) => group_by.push(c.clone()),
            Dimension::Time(TimeBucket::Hour) => {
                group_by.push(Column::Day);
                group_by.push(Column::Hour);
            }
            Dimension::Time(_) => group_by.push(Column::Day),
            Dimension::Goal => unreachable!("goal dimensions are answered goal by goal"),
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
        Grain::Goal => Sum::GoalVisitors,
        Grain::Prop => Sum::PropVisitors,
        Grain::Exit => Sum::ExitVisitors,
        // One varying visit attribute: the visitor-day's first session with each value. Several:
        // the visitor-day's first session must match them all (documented approximation).
        Grain::Visit if varying.len() == 1 => Sum::FirstSessionVisitors(varying[0]),
        Grain::Visit if q.time_bucket() == Some(TimeBucket::Hour) => Sum::HourVisitors,
        Grain::Visit => Sum::Visitors,
    };
    let mut sums = vec![visitors_sum];
    for m in &q.metrics {
        let extra: &[Sum] = match m {
            Metric::Visitors | Metric::Percentage | Metric::ConversionRate => &[],
            Metric::Visits => &[match grain {
                Grain::Page => Sum::PageVisits,
                Grain::Exit => Sum::Exits,
                _ => Sum::Visits,
            }],
            Metric::Pageviews => &[Sum::Pageviews],
            Metric::Events => &[Sum::Events],
            Metric::ViewsPerVisit => &[Sum::Pageviews, Sum::Visits],
            // With pages involved these come from the entry-page query instead.
            Metric::BounceRate if grain == Grain::Page => &[],
            Metric::BounceRate => &[Sum::Bounces, Sum::Visits],
            Metric::VisitDuration => &[Sum::DurationMs, Sum::Visits],
            Metric::TimeOnPage => &[Sum::EngagedMs, Sum::Pageviews],
            Metric::ScrollDepth => &[Sum::ScrollGain, Sum::ScrollPages],
            Metric::TotalRevenue | Metric::AverageRevenue => &[],
        };
        sums.extend_from_slice(extra);
        if let (Metric::TotalRevenue | Metric::AverageRevenue, Some(c)) = (*m, currency) {
            sums.extend([Sum::RevenueMicros(c), Sum::RevenueEvents(c)]);
        }
    }
    sums.sort();
    sums.dedup();
    MetricPlan { grain, currency, group_by, sums, visitors_sum }
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

/// How many buckets a range has, without making their labels.
pub fn bucket_count(bucket: TimeBucket, range: DayRange) -> i64 {
    use chrono::Datelike;
    let days = i64::from(range.days().max(0));
    match bucket {
        TimeBucket::Hour => days * 24,
        TimeBucket::Day => days,
        TimeBucket::Week => days / 7 + 2,
        TimeBucket::Month => {
            let (a, b) = (plumb_core::time::date_of_day(range.from), plumb_core::time::date_of_day(range.to));
            i64::from(b.year() - a.year()) * 12 + i64::from(b.month0()) - i64::from(a.month0()) + 1
        }
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
fn fetch(backend: &dyn SumsBackend, q: &Query, p: &MetricPlan, range: DayRange) -> Result<GroupTable, QueryError> {
    let cols = q.columns();
    let prop_key = cols.iter().find_map(|c| if let Column::Prop(k) = c { Some(k.clone()) } else { None });
    // A breakdown by property covers the hits that have it.
    let mut filter = q.filter.as_ref().map(Filter::with_country_codes);
    for c in p.group_by.iter().filter(|c| matches!(c, Column::Prop(_))) {
        let has =
            Filter::Condition { op: Op::IsNot, column: c.clone(), values: vec![NO_PROP.into()], case_sensitive: true };
        filter = Some(Filter::and(filter, has));
    }
    let sq = SumsQuery {
        site_id: q.site_id,
        range,
        group_by: p.group_by.clone(),
        filter,
        kinds: if matches!(p.grain, Grain::Name | Grain::Goal | Grain::Prop) { vec![1, 2] } else { vec![] },
        prop_key,
        sums: p.sums.clone(),
    };
    let mut table: GroupTable = HashMap::new();
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
        let to_entry = |c: &Column| if *c == Column::Pathname { Column::EntryPage } else { c.clone() };
        let bq = SumsQuery {
            group_by: p.group_by.iter().map(to_entry).collect(),
            filter: sq.filter.as_ref().map(|f| f.map_column(&Column::Pathname, &Column::EntryPage)),
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
            Dimension::Column(Column::CountryName) => {
                keys.push(plumb_core::country::country_name(&raw[i]).map_or_else(|| raw[i].clone(), str::to_owned));
                i += 1;
            }
            Dimension::Column(_) => {
                keys.push(raw[i].clone());
                i += 1;
            }
            Dimension::Goal => unreachable!("goal dimensions are answered goal by goal"),
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

fn metric_value(m: Metric, p: &MetricPlan, s: &HashMap<Sum, i64>, total_visitors: i64) -> serde_json::Value {
    let get = |k: Sum| s.get(&k).copied().unwrap_or(0);
    let visits = match p.grain {
        Grain::Page => get(Sum::PageVisits),
        Grain::Exit => get(Sum::Exits),
        _ => get(Sum::Visits),
    };
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
        // The goal's visitors for now; `fill_conversion_rates` divides by the base.
        Metric::ConversionRate => get(p.visitors_sum).into(),
        Metric::TotalRevenue | Metric::AverageRevenue => match p.currency {
            Some(c) => {
                let micros = get(Sum::RevenueMicros(c));
                let value = if m == Metric::TotalRevenue {
                    micros as f64 / 1e6
                } else {
                    ratio(micros, get(Sum::RevenueEvents(c))) / 1e6
                };
                serde_json::json!({"value": (value * 100.0).round() / 100.0, "currency": c.to_string()})
            }
            None => serde_json::Value::Null,
        },
    }
}

/// The number of a metric value (revenue values are `{value, currency}` objects).
pub fn number(v: &serde_json::Value) -> f64 {
    v.as_f64().or_else(|| v.get("value").and_then(serde_json::Value::as_f64)).unwrap_or(0.0)
}

fn change(m: Metric, now: &serde_json::Value, before: &serde_json::Value) -> serde_json::Value {
    let (a, b) = (number(now), number(before));
    match m {
        // Rates change in points, like Plausible.
        Metric::BounceRate | Metric::Percentage | Metric::ConversionRate => ((a - b) * 10.0).round() / 10.0,
        _ if b == 0.0 => return if a == 0.0 { 0.into() } else { 100.into() },
        _ => ((a - b) / b * 1000.0).round() / 10.0,
    }
    .into()
}

/// Answers a query: validates it, asks the backend for sums, derives metrics, orders and pages.
pub fn run(backend: &dyn SumsBackend, q: &Query) -> Result<QueryOutput, QueryError> {
    q.validate().map_err(QueryError::Invalid)?;
    let mut rows = match q.dimensions.iter().position(|d| *d == Dimension::Goal) {
        Some(at) => goal_rows(backend, q, at)?,
        None => group_rows(backend, q, q.dimensions.is_empty())?,
    };
    if q.metrics.contains(&Metric::ConversionRate) {
        fill_conversion_rates(backend, q, &mut rows)?;
    }
    sort_rows(q, &mut rows);
    let total_rows = rows.len();
    let results = rows.into_iter().skip(q.offset).take(q.limit).collect();
    Ok(QueryOutput { results, total_rows })
}

/// One row per group of the query's column and time dimensions (with its comparison).
/// `keep_empty`: answer a row even over no data (queries without dimensions do).
fn group_rows(backend: &dyn SumsBackend, q: &Query, keep_empty: bool) -> Result<Vec<ResultRow>, QueryError> {
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
    let empty = HashMap::new();
    let mut groups: Vec<(&Vec<String>, &HashMap<Sum, i64>)> =
        table.iter().filter(|(_, s)| s.values().any(|v| *v != 0)).collect();
    let no_key = Vec::new();
    if keep_empty && groups.is_empty() {
        groups.push((&no_key, &empty));
    }
    let values = |s: &HashMap<Sum, i64>| -> Vec<serde_json::Value> {
        q.metrics.iter().map(|m| metric_value(*m, &p, s, total_visitors)).collect()
    };
    let time_index = q.dimensions.iter().position(|d| matches!(d, Dimension::Time(_)));
    // A time bucket compares with the bucket at the same position in the other range.
    let compared_bucket: HashMap<String, String> = match (time_index, q.comparison, q.time_bucket()) {
        (Some(_), Some(range), Some(bucket)) => {
            time_labels(bucket, q.range).into_iter().zip(time_labels(bucket, range)).collect()
        }
        _ => HashMap::new(),
    };
    Ok(groups
        .into_iter()
        .map(|(dims, sums)| {
            let metrics = values(sums);
            let comparison = compared.as_ref().map(|before| {
                let mut key = dims.clone();
                if let Some(i) = time_index {
                    key[i] = compared_bucket.get(&dims[i]).cloned().unwrap_or_default();
                }
                let before = values(before.get(&key).unwrap_or(&empty));
                let change =
                    q.metrics.iter().zip(metrics.iter().zip(&before)).map(|(m, (a, b))| change(*m, a, b)).collect();
                Comparison { dimensions: key, metrics: before, change }
            });
            ResultRow { dimensions: dims.clone(), metrics, comparison }
        })
        .collect())
}

/// `event:goal`: the query answered once per goal, restricted to the goal's completions, with
/// the goal's name as the dimension value.
fn goal_rows(backend: &dyn SumsBackend, q: &Query, at: usize) -> Result<Vec<ResultRow>, QueryError> {
    let mut dimensions = q.dimensions.clone();
    dimensions.remove(at);
    let mut rows = Vec::new();
    for goal in &q.goals {
        let per_goal = Query {
            dimensions: dimensions.clone(),
            filter: Some(Filter::and(q.filter.clone(), Filter::Goal(goal.condition.clone()))),
            ..q.clone()
        };
        for mut r in group_rows(backend, &per_goal, false)? {
            r.dimensions.insert(at, goal.name.clone());
            if let Some(c) = &mut r.comparison {
                c.dimensions.insert(at, goal.name.clone());
            }
            rows.push(r);
        }
    }
    Ok(rows)
}

/// Conversion rate: a goal's visitors over all visitors of the same group without the goal
/// condition, in percent with two decimals.
fn fill_conversion_rates(backend: &dyn SumsBackend, q: &Query, rows: &mut [ResultRow]) -> Result<(), QueryError> {
    let goal_at = q.dimensions.iter().position(|d| *d == Dimension::Goal);
    let base_query = Query {
        metrics: vec![Metric::Visitors],
        dimensions: q.dimensions.iter().filter(|d| **d != Dimension::Goal).cloned().collect(),
        filter: q.filter.as_ref().and_then(Filter::without_goals),
        order_by: vec![],
        offset: 0,
        ..q.clone()
    };
    let base: HashMap<Vec<String>, (i64, i64)> = group_rows(backend, &base_query, true)?
        .into_iter()
        .map(|r| {
            let before = r.comparison.as_ref().and_then(|c| c.metrics[0].as_i64()).unwrap_or(0);
            (r.dimensions, (r.metrics[0].as_i64().unwrap_or(0), before))
        })
        .collect();
    let i = q.metrics.iter().position(|m| *m == Metric::ConversionRate).expect("conversion_rate requested");
    let rate = |v: &serde_json::Value, base: i64| {
        serde_json::Value::from((ratio(v.as_i64().unwrap_or(0) * 10_000, base)).round() / 100.0)
    };
    for r in rows.iter_mut() {
        let mut key = r.dimensions.clone();
        if let Some(at) = goal_at {
            key.remove(at);
        }
        let (now, before) = base.get(&key).copied().unwrap_or((0, 0));
        r.metrics[i] = rate(&r.metrics[i], now);
        if let Some(c) = &mut r.comparison {
            c.metrics[i] = rate(&c.metrics[i], before);
            c.change[i] = change(Metric::ConversionRate, &r.metrics[i], &c.metrics[i]);
        }
    }
    Ok(())
}

/// The query's order (default: the time dimension ascending, else the first metric
/// descending); ties always break by dimension values, so pages are stable.
fn sort_rows(q: &Query, rows: &mut [ResultRow]) {
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
                OrderKey::Metric(i) => number(&a.metrics[*i]).total_cmp(&number(&b.metrics[*i])),
                OrderKey::Dimension(i) => a.dimensions[*i].cmp(&b.dimensions[*i]),
            };
            let o = if *desc { o.reverse() } else { o };
            if o.is_ne() {
                return o;
            }
        }
        a.dimensions.cmp(&b.dimensions)
    });
}
