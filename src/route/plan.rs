//! plan: the tracking plan, an operator's guard against junk tables and columns.
//!
//! Which track events may become tables (`allow_events`, `block_events`: globs on the
//! raw event name, block wins) and, per event, which top-level properties may become
//! columns. What the plan refuses is never dropped silently: route turns it into a
//! `_rejections` row with the reason and the raw message. Caps on tables and columns
//! are the warehouse's to enforce (it alone knows what exists).

use std::collections::{HashMap, HashSet};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::config::PlanFile;

/// A compiled tracking plan.
#[derive(Debug, Clone)]
pub struct TrackingPlan {
    /// `None`: every event not blocked is allowed.
    allow: Option<GlobSet>,
    block: GlobSet,
    /// Event name → its allowed top-level properties.
    properties: HashMap<String, HashSet<String>>,
}

/// What the plan says about one track event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'p> {
    /// Load it, with every property.
    Load,
    /// Load it with only these top-level properties.
    LoadOnly(&'p HashSet<String>),
    /// Do not load it; why.
    Refuse(String),
}

#[derive(Debug, thiserror::Error)]
#[error("tracking plan: pattern {pattern:?}: {source}")]
pub struct PlanError {
    pattern: String,
    source: globset::Error,
}

impl TrackingPlan {
    pub fn compile(file: &PlanFile) -> Result<TrackingPlan, PlanError> {
        let set = |patterns: &[String]| -> Result<GlobSet, PlanError> {
            let mut builder = GlobSetBuilder::new();
            for pattern in patterns {
                let glob = Glob::new(pattern).map_err(|source| PlanError {
                    pattern: pattern.clone(),
                    source,
                })?;
                builder.add(glob);
            }
            builder.build().map_err(|source| PlanError {
                pattern: patterns.join(", "),
                source,
            })
        };
        Ok(TrackingPlan {
            allow: if file.allow_events.is_empty() {
                None
            } else {
                Some(set(&file.allow_events)?)
            },
            block: set(&file.block_events)?,
            properties: file
                .properties
                .iter()
                .map(|(event, names)| (event.clone(), names.iter().cloned().collect()))
                .collect(),
        })
    }

    pub fn verdict(&self, event: &str) -> Verdict<'_> {
        if self.block.is_match(event) {
            return Verdict::Refuse(format!("event {event:?} is blocked by the tracking plan"));
        }
        if let Some(allow) = &self.allow
            && !allow.is_match(event)
        {
            return Verdict::Refuse(format!(
                "event {event:?} is not in the tracking plan's allowed events"
            ));
        }
        match self.properties.get(event) {
            Some(allowed) => Verdict::LoadOnly(allowed),
            None => Verdict::Load,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(allow: &[&str], block: &[&str], properties: &[(&str, &[&str])]) -> TrackingPlan {
        TrackingPlan::compile(&PlanFile {
            allow_events: allow.iter().map(|s| s.to_string()).collect(),
            block_events: block.iter().map(|s| s.to_string()).collect(),
            properties: properties
                .iter()
                .map(|(event, names)| {
                    (
                        event.to_string(),
                        names.iter().map(|n| n.to_string()).collect(),
                    )
                })
                .collect(),
            max_tables: None,
            max_columns: None,
        })
        .unwrap()
    }

    #[test]
    fn block_wins_over_allow_and_globs_match_whole_names() {
        let plan = plan(&["Order *", "Signed Up"], &["Order Test*"], &[]);
        assert_eq!(plan.verdict("Order Completed"), Verdict::Load);
        assert_eq!(plan.verdict("Signed Up"), Verdict::Load);
        assert!(
            matches!(plan.verdict("Order Test Fired"), Verdict::Refuse(why) if why.contains("blocked"))
        );
        assert!(
            matches!(plan.verdict("Page Scrolled"), Verdict::Refuse(why) if why.contains("not in"))
        );
        assert!(matches!(
            plan.verdict("Signed Up Twice"),
            Verdict::Refuse(_)
        ));
    }

    #[test]
    fn no_allow_list_allows_everything_not_blocked() {
        let plan = plan(&[], &["debug_*"], &[("Order Completed", &["revenue"])]);
        assert_eq!(plan.verdict("Anything"), Verdict::Load);
        assert!(matches!(plan.verdict("debug_ping"), Verdict::Refuse(_)));
        match plan.verdict("Order Completed") {
            Verdict::LoadOnly(allowed) => {
                assert!(allowed.contains("revenue") && allowed.len() == 1)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_pattern_is_a_clear_error() {
        let error = TrackingPlan::compile(&PlanFile {
            allow_events: vec!["Order [".into()],
            ..PlanFile::default()
        })
        .unwrap_err();
        assert!(error.to_string().contains("Order ["), "{error}");
    }
}
