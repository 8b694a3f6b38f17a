//! An in-memory sums backend over stored rows: it answers a [`SumsQuery`] row by row by the rules
//! the SQL compiler (`sql.rs`) writes down, so the engine can be tested without a database.

use crate::imported::{ImportedQuery, ImportedRow, Key, MEASURES};
use crate::{Column, Filter, GoalCondition, GroupSums, NO_PROP, Op, StoreError, Sum, SumsBackend, SumsQuery};
use plumb_core::Row;
use plumb_core::row::RowKind;
use regex::Regex;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct MemoryBackend {
    pub rows: Vec<Row>,
    /// Imported rows, with their import's id.
    pub imported: Vec<(u32, ImportedRow)>,
}

fn column(r: &Row, c: &Column) -> String {
    match c {
        Column::Attr(a) => a.value(r).to_owned(),
        Column::ExitPage => r.pathname.clone(),
        Column::CountryName => r.visit.country.clone(),
        Column::EventName if r.kind == RowKind::Pageview => "pageview".into(),
        Column::EventName => r.name.clone(),
        Column::Day => r.day.to_string(),
        Column::Hour => r.hour.to_string(),
        Column::Prop(key) => r.props.iter().find(|p| p.key == *key).map_or(NO_PROP.into(), |p| p.value.clone()),
    }
}

fn pattern(p: &str, case_sensitive: bool) -> Regex {
    let p = if case_sensitive { p.to_owned() } else { format!("(?i){p}") };
    Regex::new(&p).unwrap_or_else(|e| panic!("filter pattern `{p}` does not compile: {e}"))
}

fn keep(r: &Row, f: &Filter) -> bool {
    match f {
        Filter::Condition { op, column: c, values, case_sensitive } => {
            let value = column(r, c);
            let fold = |s: &str| if *case_sensitive { s.to_owned() } else { s.to_lowercase() };
            let any = values.iter().any(|v| match op {
                Op::Is | Op::IsNot => fold(&value) == fold(v),
                Op::Contains | Op::ContainsNot => fold(&value).contains(&fold(v)),
                Op::Matches | Op::MatchesNot => pattern(v, *case_sensitive).is_match(&value),
            });
            any != op.negated()
        }
        Filter::Goal(GoalCondition::Page(p)) => r.kind == RowKind::Pageview && pattern(p, true).is_match(&r.pathname),
        Filter::Goal(GoalCondition::Event(name)) => r.kind == RowKind::Custom && r.name == *name,
        Filter::Hours { from, to } => (*from..=*to).contains(&(r.day, r.hour)),
        Filter::And(fs) => fs.iter().all(|f| keep(r, f)),
        Filter::Or(fs) => fs.iter().any(|f| keep(r, f)),
        Filter::Not(f) => !keep(r, f),
    }
}

fn sum(r: &Row, s: Sum, prop_key: Option<&str>) -> i64 {
    let pageview = r.kind == RowKind::Pageview;
    let paid = |c: &crate::Currency| r.revenue.as_ref().filter(|x| x.currency == c.to_string());
    let n = &r.counters;
    match s {
        Sum::Counter(counter) => n.get(counter),
        Sum::NameVisitors => if pageview { n.visitors } else { n.name_visitors }.into(),
        Sum::GoalVisitors => if pageview { n.page_visitors } else { n.name_visitors }.into(),
        Sum::PropVisitors => r.props.iter().any(|p| Some(p.key.as_str()) == prop_key && p.first_of_day).into(),
        Sum::FirstSessionVisitors(bit) => (n.visits == 1 && n.attr_first & bit != 0).into(),
        Sum::WindowVisitors(first) => if r.day == first { n.last_hour_visitors } else { n.visitors }.into(),
        Sum::EntryVisits => unreachable!("the engine computes EntryVisits itself"),
        Sum::RevenueMicros(c) => paid(&c).map_or(0, |x| x.amount_micros),
        Sum::RevenueEvents(c) => paid(&c).is_some().into(),
    }
}

impl SumsBackend for MemoryBackend {
    fn sums(&self, q: &SumsQuery) -> Result<Vec<GroupSums>, StoreError> {
        let mut groups: BTreeMap<Vec<String>, Vec<i64>> = BTreeMap::new();
        // Without grouping, SQL answers one row of zeros when nothing matches.
        if q.group_by.is_empty() {
            groups.insert(vec![], vec![0; q.sums.len()]);
        }
        let rows = self.rows.iter().filter(|r| {
            r.site_id == q.site_id
                && (q.range.from..=q.range.to).contains(&r.day)
                && (q.kinds.is_empty() || q.kinds.contains(&(r.kind as u8)))
                && q.filter.as_ref().is_none_or(|f| keep(r, f))
        });
        for r in rows {
            let key = q.group_by.iter().map(|c| column(r, c)).collect();
            let sums = groups.entry(key).or_insert_with(|| vec![0; q.sums.len()]);
            for (total, s) in sums.iter_mut().zip(&q.sums) {
                *total += sum(r, *s, q.prop_key.as_deref());
            }
        }
        Ok(groups.into_iter().map(|(keys, sums)| GroupSums { keys, sums }).collect())
    }

    fn imported(&self, q: &ImportedQuery) -> Result<Vec<GroupSums>, StoreError> {
        let mut groups: BTreeMap<Vec<String>, Vec<i64>> = BTreeMap::new();
        if q.group_by.is_empty() {
            groups.insert(vec![], vec![0; q.measures.len()]);
        }
        let rows = self.imported.iter().filter(|(id, r)| {
            q.import_ids.contains(id)
                && r.site_id == q.site_id
                && r.dim == q.dim
                && (q.range.from..=q.range.to).contains(&r.day)
        });
        for (_, r) in rows {
            let key = q
                .group_by
                .iter()
                .map(|k| match k {
                    Key::Day => r.day.to_string(),
                    Key::Value => r.value.clone(),
                })
                .collect();
            let sums = groups.entry(key).or_insert_with(|| vec![0; q.measures.len()]);
            for (total, m) in sums.iter_mut().zip(&q.measures) {
                *total += r.measures[MEASURES.iter().position(|x| x == m).expect("every measure is stored")];
            }
        }
        Ok(groups.into_iter().map(|(keys, sums)| GroupSums { keys, sums }).collect())
    }
}
