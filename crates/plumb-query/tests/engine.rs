//! The engine against the in-memory backend: filters, comparisons, time buckets, ordering and
//! pages, over rows shaped as the pipeline writes them (one visitor-day per `visit`).

use plumb_core::row::RowKind;
use plumb_core::{Counters, Row, VisitInfo};
use plumb_query::imported::{Dim, ImportRef, ImportedRow, ImportsUse};
use plumb_query::memory::MemoryBackend;
use plumb_query::{
    Attr, Column, DayRange, Dimension, Filter, Metric, Op, OrderKey, Query, QueryError, QueryOutput, TimeBucket, run,
};
use serde_json::{Value, json};
use std::sync::Arc;

/// A session's first pageview (a new visitor-day when `new_visitor`), as the pipeline stores it.
fn entry(day: i32, hour: u8, page: &str, source: &str, new_visitor: bool) -> Row {
    Row {
        site_id: 1,
        day,
        hour,
        kind: RowKind::Pageview,
        name: String::new(),
        hostname: "a.test".into(),
        pathname: page.into(),
        entry_page: page.into(),
        visit: Arc::new(VisitInfo { source: source.into(), country: "DE".into(), ..Default::default() }),
        props: vec![],
        revenue: None,
        counters: Counters {
            pageviews: 1,
            events: 1,
            visitors: new_visitor as i8,
            visits: 1,
            bounces: 1,
            exits: 1,
            exit_visitors: 1,
            page_visitors: 1,
            page_visits: 1,
            hour_visitors: 1,
            attr_first: if new_visitor { 0x1ff } else { 0 },
            ..Default::default()
        },
    }
}

/// The data: day 10 — three visitors (Google on /, Twitter on /blog/x, direct on /pricing, the
/// first of whom also views /pricing); day 11 — two (Google on /, Google on /blog/y); site 2's
/// rows are never seen.
fn backend() -> MemoryBackend {
    let mut second = entry(10, 9, "/pricing", "Google", false);
    let c = &mut second.counters;
    (c.visits, c.bounces, c.attr_first, c.duration_ms, c.hour_visitors) = (0, -1, 0, 60_000, 0);
    second.entry_page = "/".into();
    second.visit = Arc::new(VisitInfo { source: "Google".into(), country: "DE".into(), ..Default::default() });
    let mut other_site = entry(10, 9, "/", "Google", true);
    other_site.site_id = 2;
    MemoryBackend {
        rows: vec![
            entry(10, 9, "/", "Google", true),
            second,
            entry(10, 14, "/blog/x", "Twitter", true),
            entry(10, 23, "/pricing", "", true),
            entry(11, 0, "/", "Google", true),
            entry(11, 8, "/blog/y", "Google", true),
            other_site,
        ],
        imported: vec![],
    }
}

fn query(metrics: &[Metric], range: (i32, i32), dimensions: Vec<Dimension>) -> Query {
    Query {
        site_id: 1,
        metrics: metrics.to_vec(),
        range: DayRange { from: range.0, to: range.1 },
        dimensions,
        filter: None,
        order_by: vec![],
        limit: 100,
        offset: 0,
        comparison: None,
        hours: None,
        total_rows: true,
        goals: vec![],
        imports: vec![],
    }
}

fn ask(q: &Query) -> QueryOutput {
    run(&backend(), q).expect("the query runs")
}

fn metrics(out: &QueryOutput) -> Vec<Vec<Value>> {
    out.results.iter().map(|r| r.metrics.clone()).collect()
}

fn condition(op: Op, column: Column, values: &[&str], case_sensitive: bool) -> Filter {
    Filter::Condition { op, column, values: values.iter().map(|v| v.to_string()).collect(), case_sensitive }
}

#[test]
fn totals_and_filters() {
    let totals =
        ask(&query(&[Metric::Visitors, Metric::Visits, Metric::Pageviews, Metric::BounceRate], (10, 11), vec![]));
    assert_eq!(metrics(&totals), [vec![json!(5), json!(5), json!(6), json!(80)]]);
    let filtered = |f: Filter| {
        let q = Query { filter: Some(f), ..query(&[Metric::Visitors, Metric::Pageviews], (10, 11), vec![]) };
        metrics(&ask(&q))[0].clone()
    };
    assert_eq!(filtered(condition(Op::Is, Column::Attr(Attr::Source), &["Google"], true)), [json!(3), json!(4)]);
    assert_eq!(filtered(condition(Op::Is, Column::Attr(Attr::Source), &["google"], true)), [json!(0), json!(0)]);
    assert_eq!(filtered(condition(Op::Contains, Column::Attr(Attr::Source), &["GOO"], false)), [json!(3), json!(4)]);
    assert_eq!(
        filtered(condition(Op::IsNot, Column::Attr(Attr::Source), &["Google", "Twitter"], true)),
        [json!(1), json!(1)]
    );
    // Page filters count the visitors who viewed the page.
    assert_eq!(
        filtered(condition(Op::Matches, Column::Attr(Attr::Pathname), &["^/blog/"], true)),
        [json!(2), json!(2)]
    );
    assert_eq!(filtered(condition(Op::Is, Column::Attr(Attr::Pathname), &["/pricing"], true)), [json!(2), json!(2)]);
    let either = Filter::Or(vec![
        condition(Op::Is, Column::Attr(Attr::Source), &["Twitter"], true),
        Filter::Not(Box::new(condition(Op::ContainsNot, Column::Attr(Attr::Pathname), &["pric"], true))),
    ]);
    assert_eq!(filtered(either), [json!(3), json!(3)]);
    let nothing = Filter::And(vec![
        condition(Op::Is, Column::Attr(Attr::Source), &["Twitter"], true),
        condition(Op::Is, Column::Attr(Attr::Country), &["FR"], true),
    ]);
    assert_eq!(filtered(nothing), [json!(0), json!(0)], "no data is still one row of zeros");
}

#[test]
fn comparisons_show_the_earlier_period_and_the_change() {
    let q = Query {
        comparison: Some(DayRange { from: 10, to: 10 }),
        ..query(&[Metric::Visitors, Metric::BounceRate], (11, 11), vec![])
    };
    let out = ask(&q);
    let c = out.results[0].comparison.as_ref().expect("a comparison");
    assert_eq!(out.results[0].metrics, [json!(2), json!(100)]);
    assert_eq!(c.metrics, [json!(3), json!(67)]);
    // Counts change in percent, rates in points.
    assert_eq!(c.change, [json!(-33.3), json!(33.0)]);
}

#[test]
fn time_buckets_label_every_group_and_fold_days() {
    let by = |bucket, range| ask(&query(&[Metric::Visitors], range, vec![Dimension::Time(bucket)]));
    let days = by(TimeBucket::Day, (10, 11));
    let labels: Vec<&str> = days.results.iter().map(|r| r.dimensions[0].as_str()).collect();
    assert_eq!(labels, ["1970-01-11", "1970-01-12"]);
    assert_eq!(metrics(&days), [vec![json!(3)], vec![json!(2)]]);
    // Hours count the visitor-days active in them.
    let hours = by(TimeBucket::Hour, (10, 10));
    let got: Vec<(String, Value)> =
        hours.results.iter().map(|r| (r.dimensions[0].clone(), r.metrics[0].clone())).collect();
    assert_eq!(
        got,
        [
            ("1970-01-11 09:00:00".to_owned(), json!(1)),
            ("1970-01-11 14:00:00".to_owned(), json!(1)),
            ("1970-01-11 23:00:00".to_owned(), json!(1))
        ]
    );
    // 1970-01-11 is a Sunday, the 12th a Monday: two weeks; one month.
    let weeks = by(TimeBucket::Week, (10, 11));
    assert_eq!(
        weeks.results.iter().map(|r| r.dimensions[0].as_str()).collect::<Vec<_>>(),
        ["1970-01-05", "1970-01-12"]
    );
    assert_eq!(metrics(&by(TimeBucket::Month, (10, 11))), [vec![json!(5)]]);
    assert_eq!(plumb_query::time_labels(TimeBucket::Week, DayRange { from: 10, to: 11 }, None).len(), 2);
    // Too many buckets are refused before anything runs.
    let huge = query(&[Metric::Visitors], (0, 500), vec![Dimension::Time(TimeBucket::Hour)]);
    assert!(matches!(run(&backend(), &huge), Err(QueryError::Invalid(_))));
}

#[test]
fn breakdowns_order_and_page() {
    let pages = |order_by: Vec<(OrderKey, bool)>, limit, offset| {
        let q = Query {
            order_by,
            limit,
            offset,
            ..query(
                &[Metric::Visitors, Metric::Pageviews],
                (10, 11),
                vec![Dimension::Column(Column::Attr(Attr::Pathname))],
            )
        };
        let out = ask(&q);
        let rows: Vec<(String, Value)> =
            out.results.iter().map(|r| (r.dimensions[0].clone(), r.metrics[0].clone())).collect();
        (rows, out.total_rows)
    };
    let row = |p: &str, v: i64| (p.to_owned(), json!(v));
    // Default: the first metric, descending; ties by the dimension.
    let (all, total) = pages(vec![], 100, 0);
    assert_eq!(all, [row("/", 2), row("/pricing", 2), row("/blog/x", 1), row("/blog/y", 1)]);
    assert_eq!(total, 4);
    let (second_page, total) = pages(vec![], 2, 2);
    assert_eq!((second_page, total), (vec![row("/blog/x", 1), row("/blog/y", 1)], 4));
    let (by_name, _) = pages(vec![(OrderKey::Dimension(0), false)], 100, 0);
    assert_eq!(by_name.first(), Some(&row("/", 2)));
    assert_eq!(by_name.last(), Some(&row("/pricing", 2)));
    // Sources break down by the visitor-days' sessions with each source.
    let q = query(&[Metric::Visitors, Metric::Visits], (10, 11), vec![Dimension::Column(Column::Attr(Attr::Source))]);
    let got: Vec<(String, Vec<Value>)> =
        ask(&q).results.iter().map(|r| (r.dimensions[0].clone(), r.metrics.clone())).collect();
    assert_eq!(
        got,
        [
            ("Google".to_owned(), vec![json!(3), json!(3)]),
            (String::new(), vec![json!(1), json!(1)]),
            ("Twitter".to_owned(), vec![json!(1), json!(1)])
        ]
    );
}

/// Imported rows of days 8 and 9 (before the live ones): totals, sources and pages from one
/// import; totals only from another.
fn with_imports() -> (MemoryBackend, Vec<ImportRef>) {
    let mut b = backend();
    let row = |day, dim: Dim, value: &str, m: [i64; 6]| ImportedRow {
        site_id: 1,
        day,
        dim: dim.code(),
        value: value.into(),
        measures: m,
    };
    // visitors, visits, pageviews, bounces, duration_ms, events
    b.imported = vec![
        (1, row(8, Dim::Total, "", [10, 12, 30, 6, 120_000, 30])),
        (1, row(8, Dim::Attr(Attr::Source), "Google", [7, 8, 20, 4, 60_000, 20])),
        (1, row(8, Dim::Attr(Attr::Source), "", [3, 4, 10, 2, 60_000, 10])),
        (1, row(8, Dim::Attr(Attr::Pathname), "/", [9, 10, 25, 0, 0, 25])),
        (2, row(9, Dim::Total, "", [4, 4, 4, 4, 0, 4])),
        // Another site's, and an import that is not finished (not among the refs).
        (1, ImportedRow { site_id: 2, ..row(8, Dim::Total, "", [99; 6]) }),
        (3, row(8, Dim::Total, "", [99; 6])),
    ];
    let r = |id, kind: &str, dims: Vec<Dim>| ImportRef {
        id,
        kind: kind.into(),
        range: DayRange { from: 8, to: 9 },
        dims: dims.into_iter().map(Dim::code).collect(),
    };
    let refs = vec![
        r(1, "plausible", vec![Dim::Total, Dim::Attr(Attr::Source), Dim::Attr(Attr::Pathname)]),
        r(2, "fathom-lite", vec![Dim::Total]),
    ];
    (b, refs)
}

#[test]
fn imported_rows_join_unfiltered_answers_by_one_breakdown_and_say_where_they_cannot() {
    let (b, refs) = with_imports();
    let ask = |mut q: Query| {
        q.imports = refs.clone();
        run(&b, &q).expect("the query runs")
    };
    let totals =
        ask(query(&[Metric::Visitors, Metric::Visits, Metric::Pageviews, Metric::BounceRate], (8, 11), vec![]));
    // Live: 5 visitors, 5 visits, 6 pageviews, 4 bounces; imported: 14, 16, 34, 10.
    assert_eq!(metrics(&totals), [vec![json!(19), json!(21), json!(40), json!(67)]]);
    assert!(totals.imports.relevant && totals.imports.included && totals.imports.warning.is_none());
    let by_day = ask(query(&[Metric::Visitors], (8, 11), vec![Dimension::Time(TimeBucket::Day)]));
    assert_eq!(metrics(&by_day), [vec![json!(10)], vec![json!(4)], vec![json!(3)], vec![json!(2)]]);
    // By source: only the first import has sources; the note names the other.
    let sources =
        ask(query(&[Metric::Visitors, Metric::Visits], (8, 11), vec![Dimension::Column(Column::Attr(Attr::Source))]));
    let rows: Vec<(String, Vec<Value>)> =
        sources.results.iter().map(|r| (r.dimensions[0].clone(), r.metrics.clone())).collect();
    assert_eq!(rows[0], ("Google".to_owned(), vec![json!(10), json!(11)]));
    assert!(sources.imports.included);
    assert_eq!(
        sources.imports.warning.as_deref(),
        Some("imported data from fathom-lite has no `visit:source` breakdown")
    );
    // A breakdown no import has, a filter, hours: left out, with the reason.
    let browsers = ask(query(&[Metric::Visitors], (8, 11), vec![Dimension::Column(Column::Attr(Attr::Browser))]));
    assert!(!browsers.imports.included);
    assert_eq!(browsers.imports.skip_reason, Some("unsupported_query"));
    let mut filtered = query(&[Metric::Visitors], (8, 11), vec![]);
    filtered.filter = Some(condition(Op::Is, Column::Attr(Attr::Source), &["Google"], true));
    let filtered = ask(filtered);
    assert_eq!(metrics(&filtered), [vec![json!(3)]], "live rows only");
    assert_eq!(filtered.imports.skip_reason, Some("unsupported_query"));
    let hours = ask(query(&[Metric::Visitors], (8, 8), vec![Dimension::Time(TimeBucket::Hour)]));
    assert_eq!(hours.imports.skip_reason, Some("unsupported_interval"));
    // Shares are of the same imports as the groups (the totals-only import is in neither).
    let shares = ask(query(&[Metric::Percentage], (8, 11), vec![Dimension::Column(Column::Attr(Attr::Source))]));
    let total: f64 = shares.results.iter().map(|r| r.metrics[0].as_f64().unwrap()).sum();
    assert!((total - 100.0).abs() < 0.2, "shares add up to {total}");
    // Page rows hold page visits, not the sessions that entered there: such sums are left out.
    let pages = ask(query(
        &[Metric::Visitors, Metric::ViewsPerVisit],
        (8, 11),
        vec![Dimension::Column(Column::Attr(Attr::Pathname))],
    ));
    assert!(!pages.imports.included);
    assert!(pages.imports.warning.as_deref().unwrap().contains("no sessions, bounces or durations by `event:page`"));
    let pages = ask(query(
        &[Metric::Visitors, Metric::Pageviews],
        (8, 11),
        vec![Dimension::Column(Column::Attr(Attr::Pathname))],
    ));
    assert!(pages.imports.included);
    assert_eq!(pages.results[0].dimensions[0], "/");
    // A range without imported days says nothing about imports.
    let later = ask(query(&[Metric::Visitors], (10, 11), vec![]));
    assert_eq!(later.imports, ImportsUse::default());
    assert_eq!(metrics(&later), [vec![json!(5)]]);
}

/// A funnel mark as the pipeline stores it: visitor-day reached `step` of funnel 7.
fn mark(day: i32, step: usize, source: &str) -> Row {
    let mut r = entry(day, 9, "/x", source, false);
    r.kind = RowKind::Funnel;
    r.name = plumb_query::funnel::step_name(7, step);
    r.counters = Counters { funnel_visitors: 1, ..Default::default() };
    r
}

#[test]
fn a_funnel_sums_its_step_marks_beside_all_visitors() {
    use plumb_query::funnel::{FunnelQuery, run_funnel};
    let mut b = backend();
    // Google: 3 entered, 2 went on, 1 finished; Twitter: 1 entered on day 11, none went on. A mark
    // of another funnel and one outside the range are not counted.
    for (day, step, source) in [
        (10, 1, "Google"),
        (10, 1, "Google"),
        (11, 1, "Google"),
        (10, 2, "Google"),
        (11, 2, "Google"),
        (11, 3, "Google"),
    ]
    .into_iter()
    .chain([(11, 1, "Twitter"), (12, 1, "Google")])
    {
        b.rows.push(mark(day, step, source));
    }
    let mut other = mark(10, 1, "Google");
    other.name = plumb_query::funnel::step_name(8, 1);
    b.rows.push(other);
    let q = FunnelQuery {
        site_id: 1,
        funnel_id: 7,
        steps: 3,
        range: DayRange { from: 10, to: 11 },
        hours: None,
        filter: None,
    };
    let a = run_funnel(&b, &q).unwrap();
    let visitors: Vec<i64> = a.steps.iter().map(|s| s.visitors).collect();
    assert_eq!(visitors, [4, 2, 1]);
    assert_eq!((a.all_visitors, a.entering_visitors, a.never_entering_visitors), (5, 4, 1));
    assert_eq!(a.entering_visitors_percentage, 80.0);
    let s = &a.steps;
    assert_eq!((s[0].conversion_rate, s[0].conversion_rate_step, s[0].dropoff), (100.0, 100.0, 0));
    assert_eq!((s[1].conversion_rate, s[1].dropoff, s[1].dropoff_percentage), (50.0, 2, 50.0));
    assert_eq!((s[2].conversion_rate, s[2].conversion_rate_step, s[2].dropoff), (25.0, 50.0, 1));

    // A visit filter narrows the marks and the visitors alike.
    let google = Filter::Condition {
        op: Op::Is,
        column: Column::Attr(Attr::Source),
        values: vec!["Google".into()],
        case_sensitive: true,
    };
    let a = run_funnel(&b, &FunnelQuery { filter: Some(google), ..q.clone() }).unwrap();
    assert_eq!(a.steps.iter().map(|s| s.visitors).collect::<Vec<_>>(), [3, 2, 1]);
    assert_eq!(a.all_visitors, 3);

    // Filters on hits make no sense for a mark on a visit: refused, saying why.
    let page = Filter::Condition {
        op: Op::Is,
        column: Column::Attr(Attr::Pathname),
        values: vec!["/".into()],
        case_sensitive: true,
    };
    let Err(QueryError::Invalid(why)) = run_funnel(&b, &FunnelQuery { filter: Some(page), ..q.clone() }) else {
        panic!("a page filter was taken")
    };
    assert!(why.0.contains("visit attributes only"), "{}", why.0);

    // The marks add nothing to any other metric, in totals or breakdowns.
    let mut without = backend();
    without.rows.retain(|r| r.kind != RowKind::Funnel);
    let range = DayRange { from: 10, to: 12 };
    let visit_metrics =
        ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration", "events"];
    for dims in [vec![], vec!["visit:source"], vec!["event:page"], vec!["event:name"], vec!["time:day"]] {
        let metrics =
            if dims.iter().any(|d| d.starts_with("event:")) { &visit_metrics[..1] } else { &visit_metrics[..] };
        let q = Query {
            metrics: metrics.iter().map(|m| Metric::parse(m).unwrap()).collect(),
            dimensions: dims.iter().map(|d| Dimension::parse(d, range).unwrap()).collect(),
            ..Query::over(1, range)
        };
        let (with, plain) = (run(&b, &q).unwrap(), run(&without, &q).unwrap());
        assert_eq!(
            serde_json::to_value(&with.results).unwrap(),
            serde_json::to_value(&plain.results).unwrap(),
            "{dims:?}"
        );
    }
}

#[test]
fn a_range_of_hours_counts_the_visitor_days_active_in_it() {
    use plumb_query::HourWindow;
    // A row of visitor-day `who` at (day, hour), with its counters.
    let row = |day: i32, hour: u8, pageviews: i8, visitors: i8, last_hour: i8| {
        let mut r = entry(day, hour, "/", "Google", visitors == 1);
        r.counters = Counters {
            pageviews,
            events: pageviews,
            visitors,
            visits: visitors,
            hour_visitors: 1,
            last_hour_visitors: last_hour,
            ..Default::default()
        };
        r
    };
    let b = MemoryBackend {
        rows: vec![
            // Day 10: A at 8 and 20 (its latest hour moves: -1 at 8), B at 5 only.
            row(10, 8, 1, 1, 1),
            row(10, 20, 1, 0, 1),
            row(10, 8, 0, 0, -1),
            row(10, 5, 1, 1, 1),
            // Day 11: C at 3, D at 12 (after the window).
            row(11, 3, 1, 1, 1),
            row(11, 12, 1, 1, 1),
        ],
        imported: vec![],
    };
    let window = |dims: Vec<Dimension>| Query {
        hours: Some(HourWindow { from_hour: 10, to_hour: 9 }),
        ..query(&[Metric::Visitors, Metric::Pageviews], (10, 11), dims)
    };
    // From day 10, 10:00 through day 11, 09:59: A (at 20) and C.
    let totals = run(&b, &window(vec![])).unwrap();
    assert_eq!(totals.results[0].metrics, [json!(2), json!(2)]);
    // By hour: only the window's 24 hours, each with its own visitors.
    let q = window(vec![Dimension::Time(TimeBucket::Hour)]);
    let hourly = run(&b, &q).unwrap();
    let shown: Vec<(&str, &Value)> = hourly.results.iter().map(|r| (r.dimensions[0].as_str(), &r.metrics[0])).collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown.iter().all(|(_, v)| **v == json!(1)));
    let labels = plumb_query::time_labels(TimeBucket::Hour, q.range, q.hours);
    assert_eq!(labels.len(), 24);
    assert!(labels[0].ends_with(" 10:00:00") && labels[23].ends_with(" 09:00:00"), "{labels:?}");
}
