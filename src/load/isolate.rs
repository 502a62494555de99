//! isolate: which rows to try next once a table batch's load failed on its data.
//!
//! A data failure means some rows cannot be stored, and loading them again fails the
//! same way. When the server named the row (PostgreSQL's COPY context, Redshift's
//! load-error table), that row goes to `_discards` and the others are tried again at
//! once. When it did not, the rows are split in halves and each half tried on its own,
//! so a bad row is cornered in log2(n) failed attempts while every good half commits.
//! The halves keep the batch's order, so a table that keeps the first row of a message
//! id still keeps the same one. Pure: the loader task runs the steps.

use std::collections::VecDeque;

use crate::warehouse::DiscardReason;

/// One thing to do for a table batch under isolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Load these rows (indices into the table batch's rows, in its order).
    Load(Vec<usize>),
    /// Keep this row out of its table: it goes to `_discards` whole with `reason`.
    Refuse { row: usize, reason: DiscardReason },
}

/// What [`Isolation::failed`] made of a data failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolated {
    /// The next steps corner the refused rows.
    Narrowed,
    /// The failed load held no row, so no row explains the failure.
    Unexplained,
}

/// The steps left for one table batch, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    steps: VecDeque<Step>,
}

impl Isolation {
    /// For a table batch of `rows` rows whose whole load just failed on its data:
    /// follow with [`Isolation::failed`].
    pub fn new(rows: usize) -> Isolation {
        Isolation {
            steps: VecDeque::from([Step::Load((0..rows).collect())]),
        }
    }

    /// The next step, or `None` when every row is loaded or refused.
    pub fn next(&self) -> Option<&Step> {
        self.steps.front()
    }

    /// The next step committed.
    pub fn done(&mut self) {
        self.steps.pop_front();
    }

    /// The next step, a load, failed on its data; `named` is the row the server
    /// refused (its index among that step's rows) if it named one, `server` what it
    /// said. A step that is not a load is left as it is.
    pub fn failed(&mut self, named: Option<usize>, server: &str) -> Isolated {
        let Some(Step::Load(rows)) = self.steps.front() else {
            return Isolated::Narrowed;
        };
        if rows.is_empty() {
            return Isolated::Unexplained;
        }
        let Some(Step::Load(mut rows)) = self.steps.pop_front() else {
            return Isolated::Narrowed;
        };
        let refuse = |row| Step::Refuse {
            row,
            reason: DiscardReason::refused(server),
        };
        match named.filter(|&index| index < rows.len()) {
            Some(index) => {
                let row = rows.remove(index);
                if !rows.is_empty() {
                    self.steps.push_front(Step::Load(rows));
                }
                self.steps.push_front(refuse(row));
            }
            None if rows.len() == 1 => self.steps.push_front(refuse(rows[0])),
            None => {
                let second = rows.split_off(rows.len() / 2);
                self.steps.push_front(Step::Load(second));
                self.steps.push_front(Step::Load(rows));
            }
        }
        Isolated::Narrowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the isolation of `rows` rows against a warehouse that refuses `bad`,
    /// naming the refused row when `names`; returns (rows loaded in commit order,
    /// rows refused, failed attempts).
    fn isolate(rows: usize, bad: &[usize], names: bool) -> (Vec<usize>, Vec<usize>, usize) {
        let mut isolation = Isolation::new(rows);
        let first_bad = (0..rows).find(|row| bad.contains(row));
        let named = first_bad.filter(|_| names);
        assert_eq!(isolation.failed(named, "no"), Isolated::Narrowed);
        let (mut loaded, mut refused, mut failures) = (Vec::new(), Vec::new(), 1);
        while let Some(step) = isolation.next().cloned() {
            match step {
                Step::Load(set) => match set.iter().position(|row| bad.contains(row)) {
                    None => {
                        loaded.extend(set);
                        isolation.done();
                    }
                    Some(index) => {
                        failures += 1;
                        let named = names.then_some(index);
                        assert_eq!(isolation.failed(named, "no"), Isolated::Narrowed);
                    }
                },
                Step::Refuse { row, reason } => {
                    assert_eq!(reason.to_string(), "the warehouse refused the row: no");
                    refused.push(row);
                    isolation.done();
                }
            }
        }
        (loaded, refused, failures)
    }

    #[test]
    fn a_named_row_is_refused_and_the_rest_loads_in_one_go() {
        let (loaded, refused, failures) = isolate(10, &[3, 7], true);
        assert_eq!(refused, [3, 7]);
        assert_eq!(loaded, [0, 1, 2, 4, 5, 6, 8, 9]);
        assert_eq!(failures, 2, "one failed attempt per bad row");
    }

    #[test]
    fn unnamed_bad_rows_are_cornered_by_halving_in_log2_n_attempts_each() {
        for (rows, bad) in [
            (1, vec![0]),
            (2, vec![1]),
            (1000, vec![0]),
            (1000, vec![999]),
            (1000, vec![17, 500, 501, 998]),
            (1024, (0..1024).step_by(97).collect::<Vec<_>>()),
        ] {
            let (loaded, refused, failures) = isolate(rows, &bad, false);
            assert_eq!(refused, bad, "{rows} rows");
            let good: Vec<usize> = (0..rows).filter(|row| !bad.contains(row)).collect();
            assert_eq!(loaded, good, "every good row loads, in the batch's order");
            let rounds = (usize::BITS - rows.leading_zeros()) as usize;
            assert!(
                failures <= 1 + bad.len() * rounds,
                "{failures} failed attempts for {} bad of {rows}",
                bad.len()
            );
        }
    }

    #[test]
    fn a_failure_with_no_row_to_blame_is_unexplained() {
        let mut isolation = Isolation::new(0);
        assert_eq!(isolation.failed(None, "no"), Isolated::Unexplained);
        // A name out of range is no name: the rows are halved instead.
        let mut isolation = Isolation::new(4);
        assert_eq!(isolation.failed(Some(9), "no"), Isolated::Narrowed);
        assert_eq!(isolation.next(), Some(&Step::Load(vec![0, 1])));
    }
}
