//! Load: on the worker that owns their tables, hands each batch's rows and schema
//! changes to the worker's loader task (`load::run_loader`) once neither input can add
//! to the batch, and holds the batch open until the task reports its commit.
//! [`LoadQueue`] keeps the batches until then.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use tokio::sync::mpsc;

use super::{Context, Time};
use crate::batch::BatchId;
use crate::columns::Observation;
use crate::load::{self, LoadDone, LoadJob};
use crate::route::{ColumnName, ColumnType, Row, TableName};
use crate::warehouse::{TableBatch, Warehouse};

/// The Load operator: `rows` and `schema_changes`, both exchanged by table so one worker
/// of the cluster owns each table, loaded; a batch's [`LoadDone`] once it committed.
pub fn load<'scope, W: Warehouse>(
    rows: StreamVec<'scope, Time, Row>,
    schema_changes: StreamVec<'scope, Time, (Observation, Time, isize)>,
    context: &Context<W>,
) -> StreamVec<'scope, Time, LoadDone> {
    let scope = rows.scope();
    let runtime = context.runtime.clone();
    let warehouse = Arc::clone(&context.warehouse);
    let stats = Arc::clone(&context.stats);
    let shutdown = Arc::clone(&context.shutdown);
    let load_connections = context.load_connections;
    rows.binary_frontier::<_, CapacityContainerBuilder<Vec<LoadDone>>, _, _, _, _>(
        schema_changes,
        Exchange::new(|row: &Row| row.table.owner_hash()),
        Exchange::new(|change: &(Observation, Time, isize)| (change.0).0.owner_hash()),
        "Load",
        move |_, info| {
            let activator = scope.worker().sync_activator_for(info.address.to_vec());
            let (job_sender, job_receiver) = mpsc::unbounded_channel::<LoadJob>();
            let (done_sender, mut done_receiver) = mpsc::unbounded_channel::<LoadDone>();
            runtime.spawn(load::run_loader(
                warehouse,
                job_receiver,
                done_sender,
                activator,
                stats,
                shutdown,
                load_connections,
            ));
            let mut queue = LoadQueue::default();
            move |(rows_input, rows_frontier), (changes_input, changes_frontier), output| {
                let port = output.output_index();
                rows_input.for_each_stamp(|stamp, rows| {
                    let Some(capability) = stamp.retain_least(port) else {
                        return;
                    };
                    let batch = *capability.time();
                    queue.add_rows(batch, capability, rows.flat_map(|rows| rows.drain(..)));
                });
                changes_input.for_each_stamp(|stamp, changes| {
                    for change in changes.flat_map(|changes| changes.drain(..)) {
                        queue.add_change(change, |batch| stamp.delayed(batch, port));
                    }
                });
                queue.hand_over(
                    |batch| rows_frontier.less_equal(&batch) || changes_frontier.less_equal(&batch),
                    |job| job_sender.send(job).is_ok(),
                );
                while let Ok(done) = done_receiver.try_recv() {
                    if let Some(capability) = queue.committed(done.batch) {
                        output.session(&capability).give(done);
                    }
                }
            }
        },
    )
}

/// One worker's batches on their way to its loader task, each with the capability `C`
/// that holds it open: staged while the inputs may still add to them, then in flight
/// until the task reports their commit.
pub struct LoadQueue<C> {
    staged: BTreeMap<Time, (C, Stash)>,
    in_flight: HashMap<Time, C>,
}

impl<C> Default for LoadQueue<C> {
    fn default() -> LoadQueue<C> {
        LoadQueue {
            staged: BTreeMap::new(),
            in_flight: HashMap::new(),
        }
    }
}

impl<C> LoadQueue<C> {
    /// Stages `rows` of `batch`, which `capability` holds open if nothing does yet.
    pub fn add_rows(&mut self, batch: Time, capability: C, rows: impl Iterator<Item = Row>) {
        self.staged
            .entry(batch)
            .or_insert_with(|| (capability, Stash::default()))
            .1
            .add_rows(rows);
    }

    /// Stages a schema change for its batch, which `capability(batch)` holds open if
    /// nothing does yet: differential may emit a change at a later time than its input.
    /// Retractions cannot happen (observations are only ever added) and are ignored: a
    /// column is never dropped.
    pub fn add_change(
        &mut self,
        ((table, column, column_type), batch, diff): (Observation, Time, isize),
        capability: impl FnOnce(&Time) -> C,
    ) {
        if diff <= 0 {
            return;
        }
        self.staged
            .entry(batch)
            .or_insert_with(|| (capability(&batch), Stash::default()))
            .1
            .add_observation(table, column, column_type);
    }

    /// Hands every staged batch that neither input can add to any more (`open` says
    /// whether one still can) to `send`, oldest first, and holds its capability until
    /// [`committed`](Self::committed). `send` returns whether the loader took the job.
    pub fn hand_over(
        &mut self,
        open: impl Fn(Time) -> bool,
        mut send: impl FnMut(LoadJob) -> bool,
    ) {
        while let Some((&batch, _)) = self.staged.first_key_value() {
            if open(batch) {
                break;
            }
            let Some((batch, (capability, contents))) = self.staged.pop_first() else {
                break;
            };
            let job = contents.into_job(BatchId(batch));
            // With the loader's "batch load started", this says whether a batch waited
            // for its frontier or for the loader.
            tracing::debug!(
                batch,
                tables = job.tables.len(),
                "batch handed to the loader"
            );
            if !send(job) {
                // The loader task is gone only when the runtime shuts down.
                tracing::error!(batch, "loader task ended; batch not loaded");
                continue;
            }
            self.in_flight.insert(batch, capability);
        }
    }

    /// The capability of `batch`, which the loader committed, to send its `LoadDone`
    /// with and then release.
    pub fn committed(&mut self, batch: BatchId) -> Option<C> {
        self.in_flight.remove(&batch.0)
    }
}

/// One batch's rows and new observations on the worker that owns their tables.
/// Rows arrive one at a time, so the table map uses foldhash (SipHash of every row's
/// table name was a visible share of the worker's time).
#[derive(Default)]
struct Stash {
    tables: HashMap<TableName, TableStash, foldhash::fast::RandomState>,
}

/// A table's rows and new column observations in one batch.
type TableStash = (Vec<Row>, Vec<(ColumnName, ColumnType)>);

impl Stash {
    fn add_rows(&mut self, rows: impl Iterator<Item = Row>) {
        for row in rows {
            self.tables
                .entry(row.table.clone())
                .or_default()
                .0
                .push(row);
        }
    }

    fn add_observation(&mut self, table: TableName, column: ColumnName, column_type: ColumnType) {
        self.tables
            .entry(table)
            .or_default()
            .1
            .push((column, column_type));
    }

    /// Tables in name order, so a worker loads its tables in the same order every run.
    fn into_job(self, batch: BatchId) -> LoadJob {
        let mut tables: Vec<TableBatch> = self
            .tables
            .into_iter()
            .map(|(table, (rows, mut observed))| {
                observed.sort();
                TableBatch {
                    batch,
                    table,
                    observed,
                    rows,
                }
            })
            .collect();
        tables.sort_by(|a, b| a.table.cmp(&b.table));
        LoadJob { batch, tables }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Limits;
    use crate::route::naming::{column_name, table_name};
    use crate::route::{Router, rows_for_object};

    /// The rows of one track call of each of `events`.
    fn rows(events: &[&str]) -> Vec<Row> {
        let body: String = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                format!(r#"{{"type":"track","event":"{event}","messageId":"m{i}","userId":"u"}}"#)
                    + "\n"
            })
            .collect();
        let mut rows = Vec::new();
        rows_for_object(
            std::io::Cursor::new(body),
            &Arc::from("o.jsonl"),
            &Limits::default(),
            &mut Router::new(),
            &mut rows,
        );
        rows
    }

    fn change(table: &str, column: &str, batch: Time, diff: isize) -> (Observation, Time, isize) {
        let observation = (table_name(table), column_name(column), ColumnType::BigInt);
        (observation, batch, diff)
    }

    /// What each job handed over held: its batch and, per table, rows and columns.
    fn summary(job: &LoadJob) -> (Time, Vec<(String, usize, Vec<String>)>) {
        let tables = job
            .tables
            .iter()
            .map(|table| {
                let columns = table.observed.iter().map(|(c, _)| c.as_str().to_owned());
                (
                    table.table.as_str().to_owned(),
                    table.rows.len(),
                    columns.collect(),
                )
            })
            .collect();
        (job.batch.0, tables)
    }

    #[test]
    fn a_batch_is_handed_over_once_neither_input_can_add_to_it() {
        let mut queue: LoadQueue<&str> = LoadQueue::default();
        queue.add_rows(1, "one", rows(&["Viewed", "Clicked"]).into_iter());
        queue.add_rows(2, "two", rows(&["Clicked"]).into_iter());
        queue.add_change(change("viewed", "n", 1, 1), |_| "unused");
        queue.add_change(change("clicked", "b", 1, 1), |_| "unused");
        queue.add_change(change("clicked", "a", 1, 1), |_| "unused");
        let mut jobs = Vec::new();
        queue.hand_over(
            |batch| batch >= 1,
            |job| {
                jobs.push(job);
                true
            },
        );
        assert!(jobs.is_empty(), "batch 1 may still grow");
        queue.hand_over(
            |batch| batch >= 2,
            |job| {
                jobs.push(job);
                true
            },
        );
        // Tables in name order, each with its rows and its new columns in order.
        let tables = |list: &[(&str, usize, &[&str])]| {
            list.iter()
                .map(|(t, rows, columns)| {
                    let columns = columns.iter().map(|c| c.to_string()).collect();
                    (t.to_string(), *rows, columns)
                })
                .collect::<Vec<_>>()
        };
        let handed: Vec<_> = jobs.iter().map(summary).collect();
        assert_eq!(
            handed,
            [(
                1,
                tables(&[
                    ("clicked", 1, &["a", "b"]),
                    ("tracks", 2, &[]),
                    ("viewed", 1, &["n"])
                ])
            )]
        );
        // Held until committed, then released once.
        assert_eq!(queue.committed(BatchId(2)), None, "not handed over yet");
        assert_eq!(queue.committed(BatchId(1)), Some("one"));
        assert_eq!(queue.committed(BatchId(1)), None);
        queue.hand_over(
            |_| false,
            |job| {
                jobs.push(job);
                true
            },
        );
        assert_eq!(jobs.len(), 2);
        assert_eq!(queue.committed(BatchId(2)), Some("two"));
    }

    #[test]
    fn schema_changes_may_open_a_batch_of_their_own() {
        let mut queue: LoadQueue<Time> = LoadQueue::default();
        queue.add_rows(1, 1, rows(&["Clicked"]).into_iter());
        // Differential emitted this change at a later time than any row.
        queue.add_change(change("clicked", "n", 3, 1), |batch| *batch);
        // A retraction is ignored and holds nothing open.
        queue.add_change(change("clicked", "m", 4, -1), |_| panic!("no capability"));
        let mut jobs = Vec::new();
        queue.hand_over(
            |_| false,
            |job| {
                jobs.push(job);
                true
            },
        );
        let batches: Vec<Time> = jobs.iter().map(|job| job.batch.0).collect();
        assert_eq!(batches, [1, 3], "oldest first");
        assert_eq!(
            summary(&jobs[1]).1,
            [("clicked".into(), 0, vec!["n".into()])]
        );
        assert_eq!(queue.committed(BatchId(3)), Some(3));
    }

    #[test]
    fn a_batch_the_loader_cannot_take_is_not_held() {
        let mut queue: LoadQueue<Time> = LoadQueue::default();
        queue.add_rows(1, 1, rows(&["Clicked"]).into_iter());
        queue.hand_over(|_| false, |_| false);
        assert_eq!(queue.committed(BatchId(1)), None);
        assert!(queue.staged.is_empty());
    }
}
