//! A warehouse that only counts: for measuring the dataflow without a database's cost.
//! Not a test double — benches use it to separate tracktable's own overhead from the
//! warehouse's.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tracktable::warehouse::{LoadReport, Loader, ObjectId, TableBatch, Warehouse};

#[derive(Debug, Default, Clone)]
pub struct CountingWarehouse {
    rows: Arc<AtomicU64>,
    objects: Arc<Mutex<HashSet<ObjectId>>>,
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

    async fn loaded_objects(
        &self,
        objects: Vec<ObjectId>,
    ) -> Result<HashSet<ObjectId>, Self::Error> {
        let known = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(objects
            .into_iter()
            .filter(|object| known.contains(object))
            .collect())
    }

    async fn record_objects(&self, objects: Vec<ObjectId>) -> Result<(), Self::Error> {
        self.objects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(objects);
        Ok(())
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
