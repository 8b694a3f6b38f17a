//! The engine: from a [`Query`] to the sums it needs, and from the sums to metrics, time buckets,
//! comparisons, ordering and pages — once, for every backend.

use crate::imported::{self, ImportRef, ImportsUse};
use crate::model::*;
use plumb_core::schema::{Attr, Counter};
use std::collections::HashMap;

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
        Grain::Page => Sum::Counter(Counter::PageVisitors),
        Grain::Name => Sum::NameVisitors,
        Grain::Goal => Sum::GoalVisitors,
        Grain::Prop => Sum::PropVisitors,
        Grain::Exit => Sum::Counter(Counter::ExitVisitors),
        // One varying visit attribute: the visitor-day's first session with each value. Several:
        // the visitor-day's first session must match them all (documented approximation).
        Grain::Visit if varying.len() == 1 => Sum::FirstSessionVisitors(varying[0]),
        Grain::Visit if q.time_bucket() == Some(TimeBucket::Hour) => Sum::Counter(Counter::HourVisitors),
        // The range's first day is fetched with its own number (see `fetch`).
        Grain::Visit if q.hours.is_some() => Sum::WindowVisitors(q.range.from),
        Grain::Visit => Sum::Counter(Counter::Visitors),
    };
    let mut sums = vec![visitors_sum];
    for m in &q.metrics {
        let extra: &[Sum] = match m {
            Metric::Visitors | Metric::Percentage | Metric::ConversionRate => &[],
            Metric::Visits => &[match grain {
                Grain::Page => Sum::Counter(Counter::PageVisits),
                Grain::Exit => Sum::Counter(Counter::Exits),
                _ => Sum::Counter(Counter::Visits),
            }],
            Metric::Pageviews => &[Sum::Counter(Counter::Pageviews)],
            Metric::Events => &[Sum::Counter(Counter::Events)],
            Metric::ViewsPerVisit => &[Sum::Counter(Counter::Pageviews), Sum::Counter(Counter::Visits)],
            // With pages involved these come from the entry-page query instead.
            Metric::BounceRate if grain == Grain::Page => &[],
            Metric::BounceRate => &[Sum::Counter(Counter::Bounces), Sum::Counter(Counter::Visits)],
            Metric::VisitDuration => &[Sum::Counter(Counter::DurationMs), Sum::Counter(Counter::Visits)],
            Metric::TimeOnPage => &[Sum::Counter(Counter::EngagedMs), Sum::Counter(Counter::Pageviews)],
            Metric::ScrollDepth => &[Sum::Counter(Counter::ScrollGain), Sum::Counter(Counter::ScrollPages)],
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

/// Every bucket label of a range (bounded by `hours`, if it is), in order.
pub fn time_labels(bucket: TimeBucket, range: DayRange, hours: Option<HourWindow>) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for day in range.from..=range.to {
        let (first, last) = match hours {
            Some(w) => (if day == range.from { w.from_hour } else { 0 }, if day == range.to { w.to_hour } else { 23 }),
            None => (0, 23),
        };
        let hours: Vec<Option<u8>> =
            if bucket == TimeBucket::Hour { (first..=last).map(Some).collect() } else { vec![None] };
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
fn fetch(
    backend: &dyn SumsBackend,
    q: &Query,
    p: &MetricPlan,
    range: DayRange,
    imports: &mut ImportsUse,
) -> Result<GroupTable, QueryError> {
    let cols = q.columns();
    let prop_key = cols.iter().find_map(|c| if let Column::Prop(k) = c { Some(k.clone()) } else { None });
    // A breakdown by property covers the hits that have it.
    let mut filter = q.filter.as_ref().map(Filter::with_country_codes);
    if let Some(w) = q.hours {
        filter = Some(Filter::and(filter, w.filter(range)));
    }
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
        // Window visitors count on the first day of the range fetched (the comparison's too).
        sums: p
            .sums
            .iter()
            .map(|s| if let Sum::WindowVisitors(_) = s { Sum::WindowVisitors(range.from) } else { *s })
            .collect(),
    };
    let mut table: GroupTable = HashMap::new();
    for g in sums(backend, &sq, &q.imports, imports)? {
        let key = bucket_keys(q, &p.group_by, &g.keys);
        let entry = table.entry(key).or_default();
        for (s, v) in p.sums.iter().zip(&g.sums) {
            *entry.entry(*s).or_default() += v;
        }
    }
    // Bounce rate with pages involved: sessions entering on the page (or matching the page
    // filter) — the same query over entry pages instead of pages.
    if p.grain == Grain::Page && q.metrics.contains(&Metric::BounceRate) {
        let to_entry =
            |c: &Column| if *c == Column::Attr(Attr::Pathname) { Column::Attr(Attr::EntryPage) } else { c.clone() };
        let bq = SumsQuery {
            group_by: p.group_by.iter().map(to_entry).collect(),
            filter: sq
                .filter
                .as_ref()
                .map(|f| f.map_column(&Column::Attr(Attr::Pathname), &Column::Attr(Attr::EntryPage))),
            sums: vec![Sum::Counter(Counter::Bounces), Sum::Counter(Counter::Visits)],
            ..sq
        };
        for g in sums(backend, &bq, &q.imports, imports)? {
            let key = bucket_keys(q, &p.group_by, &g.keys);
            let entry = table.entry(key).or_default();
            *entry.entry(Sum::Counter(Counter::Bounces)).or_default() += g.sums[0];
            *entry.entry(Sum::EntryVisits).or_default() += g.sums[1];
        }
    }
    Ok(table)
}

/// The imports among `refs` whose rows joined an answer.
fn only(refs: &[ImportRef], used: &ImportsUse) -> Vec<ImportRef> {
    refs.iter().filter(|r| used.ids.contains(&r.id)).cloned().collect()
}

/// The live rows' sums of `sq`, with the imported rows' added where they can join it.
fn sums(
    backend: &dyn SumsBackend,
    sq: &SumsQuery,
    refs: &[ImportRef],
    imports: &mut ImportsUse,
) -> Result<Vec<GroupSums>, QueryError> {
    let mut groups = backend.sums(sq)?;
    let (read, used) = imported::plan(sq, refs);
    imports.merge(used);
    if let Some(read) = read {
        let at: HashMap<Vec<String>, usize> = groups.iter().enumerate().map(|(i, g)| (g.keys.clone(), i)).collect();
        for g in backend.imported(&read)? {
            match at.get(&g.keys) {
                Some(&i) => groups[i].sums.iter_mut().zip(&g.sums).for_each(|(s, v)| *s += v),
                None => groups.push(g),
            }
        }
    }
    Ok(groups)
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
        Grain::Page => get(Sum::Counter(Counter::PageVisits)),
        Grain::Exit => get(Sum::Counter(Counter::Exits)),
        _ => get(Sum::Counter(Counter::Visits)),
    };
    match m {
        Metric::Visitors => get(p.visitors_sum).into(),
        Metric::Visits => visits.into(),
        Metric::Pageviews => get(Sum::Counter(Counter::Pageviews)).into(),
        Metric::Events => get(Sum::Counter(Counter::Events)).into(),
        Metric::ViewsPerVisit => {
            ((ratio(get(Sum::Counter(Counter::Pageviews)), get(Sum::Counter(Counter::Visits))) * 100.0).round() / 100.0)
                .into()
        }
        Metric::BounceRate => {
            let sessions =
                if p.grain == Grain::Page { get(Sum::EntryVisits) } else { get(Sum::Counter(Counter::Visits)) };
            (ratio(get(Sum::Counter(Counter::Bounces)) * 100, sessions).round() as i64).into()
        }
        Metric::VisitDuration => {
            (ratio(get(Sum::Counter(Counter::DurationMs)), get(Sum::Counter(Counter::Visits)) * 1000).round() as i64)
                .into()
        }
        Metric::Percentage => ((ratio(get(p.visitors_sum) * 1000, total_visitors)).round() / 10.0).into(),
        Metric::TimeOnPage => {
            (ratio(get(Sum::Counter(Counter::EngagedMs)), get(Sum::Counter(Counter::Pageviews)) * 1000).round() as i64)
                .into()
        }
        Metric::ScrollDepth => (ratio(get(Sum::Counter(Counter::ScrollGain)), get(Sum::Counter(Counter::ScrollPages)))
            .round() as i64)
            .into(),
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
    let mut imports = ImportsUse::default();
    let mut rows = match q.dimensions.iter().position(|d| *d == Dimension::Goal) {
        Some(at) => goal_rows(backend, q, at, &mut imports)?,
        None => group_rows(backend, q, q.dimensions.is_empty(), &mut imports)?,
    };
    if q.metrics.contains(&Metric::ConversionRate) {
        fill_conversion_rates(backend, q, &mut rows, &mut imports)?;
    }
    sort_rows(q, &mut rows);
    let total_rows = rows.len();
    let results = rows.into_iter().skip(q.offset).take(q.limit).collect();
    Ok(QueryOutput { results, total_rows, imports })
}

/// A group's dimension values and its sums in `imported::MEASURES` order.
pub type GroupTotals = (Vec<String>, [i64; imported::MEASURES.len()]);

/// The sums behind each group's metrics, as imported rows count them (in `imported::MEASURES`
/// order: visitors, visits, pageviews, bounces, duration in ms, events), for exports: which
/// visitors and visits they are follows the query's grain, as its metrics would. Sorted by group.
pub fn totals(backend: &dyn SumsBackend, q: &Query) -> Result<Vec<GroupTotals>, QueryError> {
    q.validate().map_err(QueryError::Invalid)?;
    let p = plan(q);
    let table = fetch(backend, q, &p, q.range, &mut ImportsUse::default())?;
    let visits = match p.grain {
        Grain::Page => Sum::Counter(Counter::PageVisits),
        Grain::Exit => Sum::Counter(Counter::Exits),
        _ => Sum::Counter(Counter::Visits),
    };
    let mut rows: Vec<GroupTotals> = table
        .into_iter()
        .filter(|(_, s)| s.values().any(|v| *v != 0))
        .map(|(keys, s)| {
            let get = |x: Sum| s.get(&x).copied().unwrap_or(0);
            let counter = |c: Counter| get(Sum::Counter(c));
            let sums = [
                get(p.visitors_sum),
                get(visits),
                counter(Counter::Pageviews),
                counter(Counter::Bounces),
                counter(Counter::DurationMs),
                counter(Counter::Events),
            ];
            (keys, sums)
        })
        .collect();
    rows.sort();
    Ok(rows)
}

/// One row per group of the query's column and time dimensions (with its comparison).
/// `keep_empty`: answer a row even over no data (queries without dimensions do).
fn group_rows(
    backend: &dyn SumsBackend,
    q: &Query,
    keep_empty: bool,
    imports: &mut ImportsUse,
) -> Result<Vec<ResultRow>, QueryError> {
    let p = plan(q);
    let mut used = ImportsUse::default();
    let table = fetch(backend, q, &p, q.range, &mut used)?;
    let total_visitors = if q.metrics.contains(&Metric::Percentage) {
        // Over the same imports as the groups, so shares add up.
        let totals = Query {
            dimensions: vec![],
            metrics: vec![Metric::Visitors],
            imports: only(&q.imports, &used),
            ..q.clone()
        };
        let tp = plan(&totals);
        let sums = fetch(backend, &totals, &tp, q.range, &mut ImportsUse::default())?;
        sums.values().map(|s| s.get(&tp.visitors_sum).copied().unwrap_or(0)).sum()
    } else {
        0
    };
    imports.merge(used);
    let compared = match q.comparison {
        Some(range) => Some(fetch(backend, q, &p, range, imports)?),
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
            time_labels(bucket, q.range, q.hours).into_iter().zip(time_labels(bucket, range, q.hours)).collect()
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
fn goal_rows(
    backend: &dyn SumsBackend,
    q: &Query,
    at: usize,
    imports: &mut ImportsUse,
) -> Result<Vec<ResultRow>, QueryError> {
    let mut dimensions = q.dimensions.clone();
    dimensions.remove(at);
    let mut rows = Vec::new();
    for goal in &q.goals {
        let per_goal = Query {
            dimensions: dimensions.clone(),
            filter: Some(Filter::and(q.filter.clone(), Filter::Goal(goal.condition.clone()))),
            ..q.clone()
        };
        for mut r in group_rows(backend, &per_goal, false, imports)? {
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
fn fill_conversion_rates(
    backend: &dyn SumsBackend,
    q: &Query,
    rows: &mut [ResultRow],
    imports: &mut ImportsUse,
) -> Result<(), QueryError> {
    let goal_at = q.dimensions.iter().position(|d| *d == Dimension::Goal);
    // Over the same imports as the goal's rows (none: goals filter), so the rate is of like with like.
    let base_query = Query {
        metrics: vec![Metric::Visitors],
        dimensions: q.dimensions.iter().filter(|d| **d != Dimension::Goal).cloned().collect(),
        filter: q.filter.as_ref().and_then(Filter::without_goals),
        order_by: vec![],
        offset: 0,
        imports: only(&q.imports, imports),
        ..q.clone()
    };
    let base: HashMap<Vec<String>, (i64, i64)> = group_rows(backend, &base_query, true, &mut ImportsUse::default())?
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
