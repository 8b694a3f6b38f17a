//! Funnels. Stored rows cannot be chained into a visitor's path, so the pipeline counts funnels
//! as hits arrive: it stores a `RowKind::Funnel` row named `<funnel id>:<step>` the first time a
//! visitor-day does that many steps in order within one visit. A funnel's answer is those rows
//! summed per step, beside all visitors of the same range and filter.

use crate::{
    Column, DayRange, Filter, HourWindow, Invalid, Metric, Op, Query, QueryError, Sum, SumsBackend, SumsQuery,
};
use plumb_core::row::RowKind;
use plumb_core::schema::Counter;
use serde::Serialize;

/// A funnel over a range of days, for visits that match `filter`.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelQuery {
    pub site_id: u32,
    pub funnel_id: u32,
    /// How many steps the funnel has.
    pub steps: usize,
    pub range: DayRange,
    /// Hours that bound the range (`24h`), if it is not whole days.
    pub hours: Option<HourWindow>,
    /// Visit attributes only: a funnel row is a mark on a visit, not a hit of its own.
    pub filter: Option<Filter>,
}

/// One step's counts; percentages have two decimals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepCounts {
    /// Visitors who did this step and every one before it, in order, within one visit.
    pub visitors: i64,
    /// Of the visitors who entered the funnel (did step 1).
    pub conversion_rate: f64,
    /// Of the visitors who did the step before.
    pub conversion_rate_step: f64,
    /// Visitors of the step before who did not do this one.
    pub dropoff: i64,
    pub dropoff_percentage: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelAnswer {
    /// Every visitor of the range and filter, in the funnel or not.
    pub all_visitors: i64,
    pub entering_visitors: i64,
    pub entering_visitors_percentage: f64,
    pub never_entering_visitors: i64,
    pub steps: Vec<StepCounts>,
}

fn percent(part: i64, whole: i64) -> f64 {
    if whole == 0 { 0.0 } else { (part as f64 * 10_000.0 / whole as f64).round() / 100.0 }
}

/// The name of the rows that mark step `step` (from 1) of a funnel.
pub fn step_name(funnel_id: u32, step: usize) -> String {
    format!("{funnel_id}:{step}")
}

pub fn run_funnel(backend: &dyn SumsBackend, q: &FunnelQuery) -> Result<FunnelAnswer, QueryError> {
    if let Some(f) = &q.filter {
        let mut columns = Vec::new();
        f.columns(&mut columns);
        if f.has_goal() || columns.iter().any(Column::is_event_level) {
            return Err(QueryError::Invalid(Invalid(
                "funnels take filters on visit attributes only (visit:…), not on pages, events or goals".into(),
            )));
        }
    }
    let names: Vec<String> = (1..=q.steps).map(|k| step_name(q.funnel_id, k)).collect();
    let filter = match q.hours {
        Some(w) => Some(Filter::and(q.filter.clone(), w.filter(q.range))),
        None => q.filter.clone(),
    };
    let marks = SumsQuery {
        site_id: q.site_id,
        range: q.range,
        group_by: vec![Column::EventName],
        filter: Some(Filter::and(
            filter.clone(),
            Filter::Condition { op: Op::Is, column: Column::EventName, values: names.clone(), case_sensitive: true },
        )),
        kinds: vec![RowKind::Funnel as u8],
        prop_key: None,
        sums: vec![Sum::Counter(Counter::FunnelVisitors)],
    };
    let mut reached = vec![0i64; q.steps];
    for g in backend.sums(&marks)? {
        if let Some(k) = names.iter().position(|n| Some(n) == g.keys.first()) {
            reached[k] += g.sums[0];
        }
    }
    // A step's mark is on the visit (and hour) where the visitor-day first reached it, so with a
    // visit filter or a window of hours a later step can count a visitor-day whose earlier steps
    // fell outside: a step counts at most the visitors of the step before.
    for k in 1..reached.len() {
        reached[k] = reached[k].min(reached[k - 1]);
    }
    // Everyone, counted as the query engine counts visitors for the same filter and range.
    let everyone = Query {
        metrics: vec![Metric::Visitors],
        filter: q.filter.clone(),
        hours: q.hours,
        ..Query::over(q.site_id, q.range)
    };
    let all_visitors = crate::run(backend, &everyone)?.results.first().and_then(|r| r.metrics[0].as_i64()).unwrap_or(0);
    let entering = reached.first().copied().unwrap_or(0);
    let steps = reached
        .iter()
        .enumerate()
        .map(|(i, &visitors)| {
            let before = if i == 0 { visitors } else { reached[i - 1] };
            StepCounts {
                visitors,
                conversion_rate: percent(visitors, entering),
                conversion_rate_step: percent(visitors, before),
                dropoff: before - visitors,
                dropoff_percentage: percent(before - visitors, before),
            }
        })
        .collect();
    Ok(FunnelAnswer {
        all_visitors,
        entering_visitors: entering,
        entering_visitors_percentage: percent(entering, all_visitors).min(100.0),
        never_entering_visitors: (all_visitors - entering).max(0),
        steps,
    })
}
