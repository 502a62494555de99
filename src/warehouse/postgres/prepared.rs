//! prepared: a loader connection's prepared statements, by their text.
//!
//! Sent as text, each load's COPY, bookkeeping insert and column read was parsed
//! again, and the insert planned again, a round trip each, about 600 times per 300k
//! events. Prepared statements belong to the session, not the transaction, so a
//! rolled-back load keeps them; a COPY whose column list grew is a new text. Bounded:
//! past [`Prepared::MAX`] texts (tables × column lists) the cache starts again.

use std::collections::HashMap;

use tokio_postgres::{Statement, Transaction};

use super::connect::{PostgresError, query_error};

#[derive(Default)]
pub(super) struct Prepared(HashMap<String, Statement>);

impl Prepared {
    const MAX: usize = 512;

    /// The statement `text`, prepared on first use; `what` names it in errors.
    pub(super) async fn get(
        &mut self,
        transaction: &Transaction<'_>,
        text: &str,
        what: impl FnOnce() -> String,
    ) -> Result<Statement, PostgresError> {
        if let Some(statement) = self.0.get(text) {
            return Ok(statement.clone());
        }
        let statement = transaction
            .prepare(text)
            .await
            .map_err(|error| query_error(what())(error))?;
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(text.to_owned(), statement.clone());
        Ok(statement)
    }
}
