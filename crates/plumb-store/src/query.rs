//! The query model shared by every reader. Dates are the site's local days (see
//! `plumb_core::time`), so a range is always whole local days.

use serde::Serialize;

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
}

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        Some(match s {
            "visitors" => Metric::Visitors,
            "visits" => Metric::Visits,
            "pageviews" => Metric::Pageviews,
            "views_per_visit" => Metric::ViewsPerVisit,
            "bounce_rate" => Metric::BounceRate,
            "visit_duration" => Metric::VisitDuration,
            "events" => Metric::Events,
            _ => return None,
        })
    }

    /// The sums a metric is computed from; the store returns sums, the metric is derived here so
    /// every backend rounds the same way.
    pub fn finish(self, t: &Totals) -> serde_json::Value {
        let ratio = |num: i64, den: i64| if den == 0 { 0.0 } else { num as f64 / den as f64 };
        match self {
            Metric::Visitors => t.visitors.into(),
            Metric::Visits => t.visits.into(),
            Metric::Pageviews => t.pageviews.into(),
            Metric::Events => t.events.into(),
            Metric::ViewsPerVisit => ((ratio(t.pageviews, t.visits) * 100.0).round() / 100.0).into(),
            Metric::BounceRate => (ratio(t.bounces * 100, t.visits).round() as i64).into(),
            Metric::VisitDuration => (ratio(t.duration_ms, t.visits * 1000).round() as i64).into(),
        }
    }
}

/// Additive totals over a set of rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub visitors: i64,
    pub visits: i64,
    pub pageviews: i64,
    pub events: i64,
    pub bounces: i64,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub site_id: u32,
    pub metrics: Vec<Metric>,
    /// Inclusive local day numbers.
    pub from_day: i32,
    pub to_day: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub totals: Totals,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_metrics_round_like_plausible() {
        let t = Totals { visitors: 3, visits: 3, pageviews: 7, events: 8, bounces: 2, duration_ms: 100_500 };
        assert_eq!(Metric::ViewsPerVisit.finish(&t), serde_json::json!(2.33));
        assert_eq!(Metric::BounceRate.finish(&t), serde_json::json!(67));
        assert_eq!(Metric::VisitDuration.finish(&t), serde_json::json!(34));
        assert_eq!(Metric::BounceRate.finish(&Totals::default()), serde_json::json!(0));
    }
}
