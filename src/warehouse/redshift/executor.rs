//! executor: how a Redshift session's statements reach the server.
//!
//! The loader speaks Redshift's SQL and hands every statement to an [`Executor`].
//! In production that is [`Direct`]: the statement goes to the cluster as written.
//! Tests put a PostgreSQL behind another executor that performs `COPY ... FROM 's3://'`
//! itself, so the loader's statements meet real data without a cluster; that stand-in
//! lives outside this crate, and a pipeline file cannot select it.

use futures_util::future::BoxFuture;
use tokio_postgres::{Client, SimpleQueryMessage};

/// A statement's failure, as an executor reports it.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The server refused the statement or the connection failed.
    #[error(transparent)]
    Query(#[from] tokio_postgres::Error),
    /// The executor itself failed, with the class of the failure.
    #[error("{message}")]
    Other {
        message: String,
        class: crate::warehouse::FailureClass,
    },
}

/// Runs a session's statements (simple-query protocol, one statement at a time).
pub trait Executor: Send + Sync + 'static {
    /// Runs once on each new connection, before its first statement.
    fn open<'a>(&'a self, client: &'a Client) -> BoxFuture<'a, Result<(), ExecutorError>> {
        let _ = client;
        Box::pin(async { Ok(()) })
    }

    /// Runs one statement; returns what the server sent back.
    fn send<'a>(
        &'a self,
        client: &'a Client,
        statement: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SimpleQueryMessage>, ExecutorError>>;
}

/// Sends every statement to the cluster as written.
#[derive(Debug, Default, Clone, Copy)]
pub struct Direct;

impl Executor for Direct {
    fn send<'a>(
        &'a self,
        client: &'a Client,
        statement: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SimpleQueryMessage>, ExecutorError>> {
        Box::pin(async move { Ok(client.simple_query(statement).await?) })
    }
}
