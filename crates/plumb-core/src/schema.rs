//! The stored row's columns, each declared once: the text attributes in [`ATTRS`] and the
//! counters in [`Counters`]. Everything else is derived from these two tables: the event store's
//! DDL and migrations, its appends, the rollup tables and what they keep, the SQL a query
//! compiles to, the in-memory backend, and the Stats API's dimension names.
//!
//! A stored column never moves or changes meaning: a new one gets the next `since` version (the
//! store adds it with a default that is right for older rows), and the codes a column is known
//! by in stored data (`dim`, `session_bit`) are written out, not taken from its position.

use crate::Row;
use crate::row::RowProp;

/// How a stored integer is typed; each backend names its own SQL type for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntType {
    I8,
    U8,
    U16,
    I32,
    U32,
    I64,
}

/// A Rust integer type a counter can be stored as.
pub trait StoredInt: Copy + Into<i64> {
    const TYPE: IntType;
}

macro_rules! stored_int {
    ($($ty:ty => $variant:ident),*) => {
        $(impl StoredInt for $ty {
            const TYPE: IntType = IntType::$variant;
        })*
    };
}

stored_int!(i8 => I8, u8 => U8, u16 => U16, i32 => I32, u32 => U32, i64 => I64);

/// Which rollup tables keep a counter's sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollups {
    None,
    /// `rollup_days` only: the counter means something per page, not per visit combination.
    Days,
    /// `rollup_days` and `rollup_visits`.
    All,
}

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $field:ident / $variant:ident : $ty:ty, rollups $rollups:ident, since $since:literal; )*) => {
        /// A row's additive counters: what the sessionizer decides about a hit. Every metric is
        /// a sum of these over rows.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Counters {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        /// One of [`Counters`]' fields, by name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Counter {
            $( $variant, )*
        }

        impl Counter {
            /// In stored order.
            pub const ALL: &[Counter] = &[$( Counter::$variant ),*];

            /// The column's name in every table that stores it.
            pub const fn column(self) -> &'static str {
                match self { $( Counter::$variant => stringify!($field), )* }
            }

            pub const fn int_type(self) -> IntType {
                match self { $( Counter::$variant => <$ty as StoredInt>::TYPE, )* }
            }

            pub const fn rollups(self) -> Rollups {
                match self { $( Counter::$variant => Rollups::$rollups, )* }
            }

            /// The event store's schema version that added the column.
            pub const fn since(self) -> u32 {
                match self { $( Counter::$variant => $since, )* }
            }
        }

        impl Counters {
            pub fn get(&self, c: Counter) -> i64 {
                match c { $( Counter::$variant => self.$field.into(), )* }
            }
        }
    };
}

counters! {
    /// 1 on a pageview row.
    pageviews / Pageviews: i8, rollups All, since 1;
    /// 1 on pageview and custom event rows.
    events / Events: i8, rollups All, since 1;
    /// 1 on the first hit of a visitor-day.
    visitors / Visitors: i8, rollups All, since 1;
    /// 1 on the first hit of a session.
    visits / Visits: i8, rollups All, since 1;
    /// +1 when a session starts, -1 when it stops being a bounce.
    bounces / Bounces: i8, rollups All, since 1;
    /// +1 on the session's latest pageview, -1 (adjustment row) when a later one replaces it.
    exits / Exits: i8, rollups None, since 1;
    /// 1 on the first view of this page by this visitor-day.
    page_visitors / PageVisitors: i8, rollups Days, since 1;
    /// 1 on the first view of this page in this session.
    page_visits / PageVisits: i8, rollups Days, since 1;
    /// 1 on the first hit of this visitor-day within this local hour.
    hour_visitors / HourVisitors: i8, rollups None, since 1;
    /// 1 on the first completion of this event name by this visitor-day.
    name_visitors / NameVisitors: i8, rollups None, since 1;
    /// On a session's first row: the `session_bit` of each attribute whose value this
    /// visitor-day had not had in an earlier session. A mask, not summed as it is.
    attr_first / AttrFirst: u16, rollups None, since 1;
    /// Time since the session's previous event; summed per session it is last − first.
    duration_ms / DurationMs: i64, rollups All, since 1;
    engaged_ms / EngagedMs: u32, rollups All, since 1;
    /// By how much this ping raised the deepest scroll seen for its page in this session. Summed
    /// and divided by `scroll_pages` it is the average deepest scroll per session and page.
    scroll_gain / ScrollGain: u8, rollups All, since 1;
    /// 1 on the first scroll report for a page in a session.
    scroll_pages / ScrollPages: i8, rollups All, since 1;
    /// Like `exits`, for the visitor-day: +1 when one of its sessions starts exiting on the page
    /// and none did, -1 when the last such session moves on.
    exit_visitors / ExitVisitors: i8, rollups None, since 1;
    /// On a funnel row: 1 when the visitor-day first reaches the step its name says (see
    /// `RowKind::Funnel`).
    funnel_visitors / FunnelVisitors: i8, rollups None, since 2;
    /// Like `exit_visitors`, for the local hour: +1 on the row of the visitor-day's latest hour
    /// with a hit so far, -1 (adjustment row) at that earlier hour when a later one gets a hit.
    /// Summed over the hours from H on, it is the visitor-days with a hit in them (`24h`).
    last_hour_visitors / LastHourVisitors: i8, rollups None, since 3;
}

/// Whether an attribute describes one hit or the whole visit (copied onto every row of the
/// session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Event,
    Visit,
}

/// A stored text attribute.
pub struct AttrSpec {
    pub attr: Attr,
    /// The column's name in every table that stores it.
    pub column: &'static str,
    /// The Stats API's name for it.
    pub api: &'static str,
    pub level: Level,
    /// Its code in `rollup_days`, which keeps sums per site, day and value of every attribute.
    pub dim: u8,
    /// Whether `rollup_visits` has it among its keys (low-cardinality visit attributes only).
    pub cube: bool,
    /// For visit attributes that can differ between the sessions of one visitor-day: its bit in
    /// `attr_first`.
    pub session_bit: Option<u8>,
    /// The event store's schema version that added the column.
    pub since: u32,
    pub value: fn(&Row) -> &str,
}

macro_rules! attrs {
    ($( $variant:ident: $column:ident, $api:literal, $level:ident, dim $dim:literal, cube $cube:literal,
        session_bit $bit:expr, since $since:literal, |$r:ident| $value:expr; )*) => {
        /// A stored text attribute, by name; [`ATTRS`] says everything about it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Attr {
            $( $variant, )*
        }

        /// Every stored text attribute, in stored order.
        pub const ATTRS: &[AttrSpec] = &[$(
            AttrSpec {
                attr: Attr::$variant,
                column: stringify!($column),
                api: $api,
                level: Level::$level,
                dim: $dim,
                cube: $cube,
                session_bit: $bit,
                since: $since,
                value: |$r| $value,
            },
        )*];
    };
}

attrs! {
    Hostname: hostname, "event:hostname", Event, dim 2, cube false, session_bit None, since 1, |r| &r.hostname;
    Pathname: pathname, "event:page", Event, dim 1, cube false, session_bit None, since 1, |r| &r.pathname;
    EntryPage: entry_page, "visit:entry_page", Visit, dim 3, cube false, session_bit Some(0), since 1,
        |r| &r.entry_page;
    Source: source, "visit:source", Visit, dim 4, cube true, session_bit Some(1), since 1, |r| &r.visit.source;
    Referrer: referrer, "visit:referrer", Visit, dim 5, cube false, session_bit Some(2), since 1,
        |r| &r.visit.referrer;
    Channel: channel, "visit:channel", Visit, dim 6, cube true, session_bit Some(3), since 1, |r| &r.visit.channel;
    UtmMedium: utm_medium, "visit:utm_medium", Visit, dim 7, cube false, session_bit Some(4), since 1,
        |r| &r.visit.utm_medium;
    UtmSource: utm_source, "visit:utm_source", Visit, dim 8, cube false, session_bit Some(5), since 1,
        |r| &r.visit.utm_source;
    UtmCampaign: utm_campaign, "visit:utm_campaign", Visit, dim 9, cube false, session_bit Some(6), since 1,
        |r| &r.visit.utm_campaign;
    UtmContent: utm_content, "visit:utm_content", Visit, dim 10, cube false, session_bit Some(7), since 1,
        |r| &r.visit.utm_content;
    UtmTerm: utm_term, "visit:utm_term", Visit, dim 11, cube false, session_bit Some(8), since 1,
        |r| &r.visit.utm_term;
    Country: country, "visit:country", Visit, dim 12, cube true, session_bit None, since 1, |r| &r.visit.country;
    Region: region, "visit:region", Visit, dim 13, cube false, session_bit None, since 1, |r| &r.visit.region;
    City: city, "visit:city", Visit, dim 14, cube false, session_bit None, since 1, |r| &r.visit.city;
    Device: device, "visit:device", Visit, dim 15, cube true, session_bit None, since 1, |r| &r.visit.device;
    Browser: browser, "visit:browser", Visit, dim 16, cube true, session_bit None, since 1, |r| &r.visit.browser;
    BrowserVersion: browser_version, "visit:browser_version", Visit, dim 17, cube false, session_bit None,
        since 1, |r| &r.visit.browser_version;
    Os: os, "visit:os", Visit, dim 18, cube true, session_bit None, since 1, |r| &r.visit.os;
    OsVersion: os_version, "visit:os_version", Visit, dim 19, cube false, session_bit None, since 1,
        |r| &r.visit.os_version;
}

impl Attr {
    pub fn spec(self) -> &'static AttrSpec {
        // `ATTRS` lists the variants in declaration order.
        &ATTRS[self as usize]
    }

    pub fn column(self) -> &'static str {
        self.spec().column
    }

    pub fn value(self, row: &Row) -> &str {
        (self.spec().value)(row)
    }

    /// The `attr_first` bit of attributes that can differ between a visitor-day's sessions.
    pub fn session_bit(self) -> Option<u16> {
        self.spec().session_bit.map(|b| 1 << b)
    }
}

/// How a stored column is typed; each backend names its own SQL type for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int(IntType),
    Text,
    /// Integer or NULL.
    OptionalInt(IntType),
    /// Text or NULL.
    OptionalText,
}

/// Where a stored column's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    SiteId,
    Day,
    Hour,
    Kind,
    Name,
    Attr(Attr),
    Props,
    RevenueMicros,
    RevenueCurrency,
    Counter(Counter),
}

/// A column of the `events` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredColumn {
    pub name: &'static str,
    pub ty: ColumnType,
    pub source: Source,
    pub since: u32,
}

/// A stored value, borrowed from its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Text(std::borrow::Cow<'a, str>),
    Null,
}

impl StoredColumn {
    pub fn value<'a>(&self, r: &'a Row) -> Value<'a> {
        use std::borrow::Cow;
        match self.source {
            Source::SiteId => Value::Int(r.site_id.into()),
            Source::Day => Value::Int(r.day.into()),
            Source::Hour => Value::Int(r.hour.into()),
            Source::Kind => Value::Int(r.kind as i64),
            Source::Name => Value::Text(Cow::Borrowed(&r.name)),
            Source::Attr(a) => Value::Text(Cow::Borrowed(a.value(r))),
            Source::Props => Value::Text(Cow::Owned(encode_props(&r.props))),
            Source::RevenueMicros => r.revenue.as_ref().map_or(Value::Null, |x| Value::Int(x.amount_micros)),
            Source::RevenueCurrency => {
                r.revenue.as_ref().map_or(Value::Null, |x| Value::Text(Cow::Borrowed(&x.currency)))
            }
            Source::Counter(c) => Value::Int(r.counters.get(c)),
        }
    }
}

/// The `events` table's columns in stored order: the first version's as laid out here, then
/// each later version's added columns (a column is only ever added at the end).
pub fn event_columns() -> Vec<StoredColumn> {
    let fixed = |name, ty, source| StoredColumn { name, ty, source, since: 1 };
    let head = [
        fixed("site_id", ColumnType::Int(IntType::U32), Source::SiteId),
        fixed("day", ColumnType::Int(IntType::I32), Source::Day),
        fixed("hour", ColumnType::Int(IntType::U8), Source::Hour),
        fixed("kind", ColumnType::Int(IntType::U8), Source::Kind),
        fixed("name", ColumnType::Text, Source::Name),
    ];
    let tail = [
        fixed("props", ColumnType::Text, Source::Props),
        fixed("revenue_micros", ColumnType::OptionalInt(IntType::I64), Source::RevenueMicros),
        fixed("revenue_currency", ColumnType::OptionalText, Source::RevenueCurrency),
    ];
    let attr = |a: &AttrSpec| StoredColumn {
        name: a.column,
        ty: ColumnType::Text,
        source: Source::Attr(a.attr),
        since: a.since,
    };
    let counter = |c: &Counter| StoredColumn {
        name: c.column(),
        ty: ColumnType::Int(c.int_type()),
        source: Source::Counter(*c),
        since: c.since(),
    };
    let mut columns: Vec<StoredColumn> = head.into_iter().chain(ATTRS.iter().map(attr)).chain(tail).collect();
    columns.extend(Counter::ALL.iter().map(counter));
    // Stable: within a version, the order above.
    columns.sort_by_key(|c| c.since);
    columns
}

/// Props are stored in one column as `<mark>key\x1evalue` pairs, where the mark is `\x1d` when
/// the visitor-day sends that key and value for the first time and `\x1f` otherwise: plain
/// string functions in every SQL dialect find a key and its first-of-day mark, and the collector
/// strips control characters from props.
pub fn encode_props(props: &[RowProp]) -> String {
    props
        .iter()
        .map(|p| format!("{}{}\u{1e}{}", if p.first_of_day { '\u{1d}' } else { '\u{1f}' }, p.key, p.value))
        .collect()
}

/// The event store's schema version: the newest column's.
pub fn version() -> u32 {
    event_columns().iter().map(|c| c.since).max().unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_variants_line_up_with_their_specs() {
        for (i, a) in ATTRS.iter().enumerate() {
            assert_eq!(a.attr as usize, i, "{} is listed out of order", a.column);
            assert!(a.dim > 0, "dimension 0 is the site total");
            if a.session_bit.is_some() {
                assert_eq!(a.level, Level::Visit, "{}: only visit attributes differ between sessions", a.column);
            }
        }
        let dims: HashSet<u8> = ATTRS.iter().map(|a| a.dim).collect();
        assert_eq!(dims.len(), ATTRS.len(), "two attributes share a rollup code");
        let bits: Vec<u8> = ATTRS.iter().filter_map(|a| a.session_bit).collect();
        assert_eq!(bits.iter().collect::<HashSet<_>>().len(), bits.len(), "two attributes share a session bit");
        assert!(bits.iter().all(|b| *b < 16), "attr_first has 16 bits");
        let names: HashSet<&str> =
            ATTRS.iter().map(|a| a.column).chain(Counter::ALL.iter().map(|c| c.column())).collect();
        assert_eq!(names.len(), ATTRS.len() + Counter::ALL.len(), "two columns share a name");
    }
}
