//! A warehouse that only counts: for measuring the dataflow without a database's cost.
//! Not a test double — benches use it to separate tracktable's own overhead from the
//! warehouse's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{LoadReport, Loader, TableBatch, Warehouse};

#[derive(Debug, Default, Clone)]
pub struct CountingWarehouse {
    rows: Arc<AtomicU64>,
}

impl CountingWarehouse {
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
}

impl Warehouse for CountingWarehouse {
    type Error = std::convert::Infallible;
    type Loader = CountingWarehouse;

    async fn prepare(&self) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn loader(&self) -> Result<CountingWarehouse, Self::Error> {
        Ok(self.clone())
    }
}

impl Loader for CountingWarehouse {
    type Error = std::convert::Infallible;

    async fn load(&mut self, batch: &TableBatch) -> Result<LoadReport, Self::Error> {
        let rows = batch.rows.len() as u64;
        self.rows.fetch_add(rows, Ordering::Relaxed);
        Ok(LoadReport {
            rows_loaded: rows,
            ..LoadReport::default()
        })
    }
}
