//! Filters: what they name, how they are rewritten before a backend sees them.

use crate::model::*;
use plumb_core::schema::Attr;

impl Filter {
    pub fn columns(&self, out: &mut Vec<Column>) {
        match self {
            Filter::Condition { column, .. } => out.push(column.clone()),
            Filter::Goal(GoalCondition::Page(_)) => out.push(Column::Attr(Attr::Pathname)),
            Filter::Goal(GoalCondition::Event(_)) => out.push(Column::EventName),
            Filter::Hours { .. } => out.extend([Column::Day, Column::Hour]),
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
    pub(crate) fn any_leaf(&self, pred: &dyn Fn(&Filter) -> bool) -> bool {
        match self {
            Filter::And(fs) | Filter::Or(fs) => fs.iter().any(|f| f.any_leaf(pred)),
            Filter::Not(f) => f.any_leaf(pred),
            leaf => pred(leaf),
        }
    }

    /// The same tree with each condition and goal replaced by `f` of it.
    pub(crate) fn map_leaves(&self, f: &dyn Fn(&Filter) -> Filter) -> Filter {
        match self {
            Filter::And(fs) => Filter::And(fs.iter().map(|x| x.map_leaves(f)).collect()),
            Filter::Or(fs) => Filter::Or(fs.iter().map(|x| x.map_leaves(f)).collect()),
            Filter::Not(x) => Filter::Not(Box::new(x.map_leaves(f))),
            leaf => f(leaf),
        }
    }

    /// Whether the filter bounds hours (a range that is not whole days).
    pub fn has_hours(&self) -> bool {
        self.any_leaf(&|leaf| matches!(leaf, Filter::Hours { .. }))
    }

    pub fn has_goal(&self) -> bool {
        self.any_leaf(&|leaf| matches!(leaf, Filter::Goal(_)))
    }

    /// The filter with goal conditions left out (the base a conversion rate divides by); `None`
    /// when nothing is left.
    pub fn without_goals(&self) -> Option<Filter> {
        match self {
            Filter::Goal(_) => None,
            Filter::Condition { .. } | Filter::Hours { .. } => Some(self.clone()),
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

    pub(crate) fn matches_country_names(&self) -> bool {
        self.any_leaf(&|leaf| {
            matches!(leaf, Filter::Condition { column: Column::CountryName, op: Op::Matches | Op::MatchesNot, .. })
        })
    }

    /// Conditions on country names as conditions on the stored codes.
    pub(crate) fn with_country_codes(&self) -> Filter {
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
                Filter::Condition { op, column: Column::Attr(Attr::Country), values: codes, case_sensitive: true }
            }
            other => other.clone(),
        })
    }

    /// Whether a condition on a property names `(none)`, which visitor counts cannot serve.
    pub(crate) fn asks_for_no_prop(&self) -> bool {
        self.any_leaf(&|leaf| {
            matches!(leaf, Filter::Condition { column: Column::Prop(_), values, .. } if values.iter().any(|v| v == NO_PROP))
        })
    }

    pub(crate) fn and(a: Option<Filter>, b: Filter) -> Filter {
        match a {
            Some(a) => Filter::And(vec![a, b]),
            None => b,
        }
    }
}
