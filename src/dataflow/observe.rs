//! Observe: reduces the observations each worker's objects made in a batch to the
//! distinct ones, as differential updates; `distinct_total` after it keeps those never
//! seen before, the batch's schema changes.

use std::collections::HashSet;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use super::Time;
use crate::columns::Observation;

/// The Observe operator: each batch's distinct `observations`, each added once (`+1`)
/// at its batch.
pub fn observe<'scope>(
    observations: StreamVec<'scope, Time, Observation>,
) -> StreamVec<'scope, Time, (Observation, Time, isize)> {
    observations.unary::<CapacityContainerBuilder<Vec<(Observation, Time, isize)>>, _, _, _>(
        Pipeline,
        "Observe",
        |_, _| {
            move |input, output| {
                input.for_each_stamp(|stamp, observations| {
                    let Some(&time) = stamp.least() else { return };
                    let seen = distinct(observations.flat_map(|batch| batch.drain(..)));
                    output
                        .session(&stamp)
                        .give_iterator(seen.into_iter().map(|observation| (observation, time, 1)));
                });
            }
        },
    )
}

/// The distinct `observations`: every object sends its own, and a batch's objects
/// mostly observe the same columns, so this spares `distinct_total` most of its input.
fn distinct(
    observations: impl IntoIterator<Item = Observation>,
) -> HashSet<Observation, foldhash::fast::RandomState> {
    observations.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::ColumnType;
    use crate::route::naming::{column_name, table_name};

    #[test]
    fn each_observation_goes_once() {
        let observation = |table: &str, column: &str, column_type| {
            (table_name(table), column_name(column), column_type)
        };
        let seen = distinct([
            observation("clicked", "n", ColumnType::BigInt),
            observation("clicked", "n", ColumnType::BigInt),
            observation("clicked", "n", ColumnType::Double),
            observation("viewed", "n", ColumnType::BigInt),
        ]);
        assert_eq!(seen.len(), 3);
        assert!(seen.contains(&observation("clicked", "n", ColumnType::Double)));
    }
}
