//! A fault-injecting destination for tests, like dlt's `dummy` destination: wraps a real one and
//! fails package commits with seeded probabilities, transiently (retried) or terminally.

use std::sync::{Arc, Mutex};

use arrow::record_batch::RecordBatch;

use crate::destination::{Capabilities, Destination, DestinationClient, PackageToLoad, SqlClient, StoredState};
use crate::error::{Error, Result};
use crate::schema::Schema;

/// Fault probabilities (0.0–1.0) per package commit, and the seed that makes them repeatable.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultConfig {
    /// Probability of a terminal failure.
    pub fail_prob: f64,
    /// Probability of a transient failure (retried by the loader).
    pub retry_prob: f64,
    /// Seed.
    pub seed: u64,
}

/// A destination whose commits fail as configured; everything else goes to `inner`.
#[derive(Debug)]
pub struct Faulty {
    inner: Arc<dyn Destination>,
    config: FaultConfig,
    rng: Arc<Mutex<u64>>,
    /// Faults injected so far: (transient, terminal).
    pub injected: Arc<Mutex<(u32, u32)>>,
}

impl Faulty {
    /// Wrap a destination.
    pub fn new(inner: Arc<dyn Destination>, config: FaultConfig) -> Self {
        Faulty {
            inner,
            config,
            rng: Arc::new(Mutex::new(config.seed ^ 0x9E37_79B9_7F4A_7C15)),
            injected: Default::default(),
        }
    }
}

fn next(rng: &Mutex<u64>) -> f64 {
    // splitmix64
    let mut s = rng.lock().expect("rng lock");
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 11) as f64) / ((1u64 << 53) as f64)
}

impl Destination for Faulty {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn destination_type(&self) -> String {
        self.inner.destination_type()
    }
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    fn display_location(&self) -> String {
        self.inner.display_location()
    }
    fn client(&self, dataset_name: &str) -> Result<Box<dyn DestinationClient>> {
        Ok(Box::new(FaultyClient {
            inner: self.inner.client(dataset_name)?,
            config: self.config,
            rng: self.rng.clone(),
            injected: self.injected.clone(),
        }))
    }
}

struct FaultyClient {
    inner: Box<dyn DestinationClient>,
    config: FaultConfig,
    rng: Arc<Mutex<u64>>,
    injected: Arc<Mutex<(u32, u32)>>,
}

impl SqlClient for FaultyClient {
    fn execute(&mut self, sql: &str) -> Result<()> {
        self.inner.execute(sql)
    }
    fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.inner.query(sql)
    }
}

impl DestinationClient for FaultyClient {
    fn initialize_storage(&mut self) -> Result<()> {
        self.inner.initialize_storage()
    }
    fn update_stored_schema(&mut self, schema: &Schema, tables: &[String]) -> Result<()> {
        self.inner.update_stored_schema(schema, tables)
    }
    fn is_loaded(&mut self, load_id: &str) -> Result<bool> {
        self.inner.is_loaded(load_id)
    }
    fn commit_package(&mut self, package: &PackageToLoad<'_>) -> Result<()> {
        let r = next(&self.rng);
        if r < self.config.fail_prob {
            self.injected.lock().expect("lock").1 += 1;
            return Err(Error::Destination {
                destination: "faulty".into(),
                message: format!("injected terminal failure for package {}", package.load_id),
                transient: false,
            });
        }
        if r < self.config.fail_prob + self.config.retry_prob {
            self.injected.lock().expect("lock").0 += 1;
            return Err(Error::Destination {
                destination: "faulty".into(),
                message: format!("injected transient failure for package {}", package.load_id),
                transient: true,
            });
        }
        self.inner.commit_package(package)
    }
    fn stored_state(&mut self, pipeline_name: &str) -> Result<Option<StoredState>> {
        self.inner.stored_state(pipeline_name)
    }
    fn stored_schema(&mut self, schema_name: &str) -> Result<Option<String>> {
        self.inner.stored_schema(schema_name)
    }
    fn drop_tables(&mut self, tables: &[String]) -> Result<()> {
        self.inner.drop_tables(tables)
    }
    fn existing_tables(&mut self) -> Result<Vec<String>> {
        self.inner.existing_tables()
    }
}
