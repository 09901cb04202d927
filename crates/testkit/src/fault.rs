//! A fault-injecting destination: wraps a real one and fails package commits, either as a
//! script (one [`Fault`] per commit attempt, in order) or with seeded probabilities, like
//! dlt's `dummy` destination. Everything else goes to the real destination, so what a failed
//! or retried commit leaves behind is read back from the real storage.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use dlt_core::destination::{Capabilities, Destination, DestinationClient, PackageToLoad, SqlClient, StoredState};
use dlt_core::error::{Error, Result};
use dlt_core::schema::Schema;

/// What one commit attempt does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Commit normally.
    Pass,
    /// Fail with a transient error before anything reaches the destination (retried).
    TransientBefore,
    /// Fail with a terminal error before anything reaches the destination (the package stays
    /// pending).
    TerminalBefore,
    /// Commit, then report a transient error: the acknowledgement was lost (the loader must
    /// find the package committed and not load it twice).
    TransientAfter,
}

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
    script: Arc<Mutex<VecDeque<Fault>>>,
    rng: Arc<Mutex<u64>>,
    /// Faults injected so far: (transient, terminal).
    pub injected: Arc<Mutex<(u32, u32)>>,
}

impl Faulty {
    /// Wrap a destination; commits fail with the probabilities of `config`.
    pub fn new(inner: Arc<dyn Destination>, config: FaultConfig) -> Self {
        Faulty {
            inner,
            config,
            script: Default::default(),
            rng: Arc::new(Mutex::new(config.seed ^ 0x9E37_79B9_7F4A_7C15)),
            injected: Default::default(),
        }
    }

    /// Wrap a destination; the first commit attempts do what `script` says, in order, and
    /// the ones after it pass.
    pub fn scripted(inner: Arc<dyn Destination>, script: impl IntoIterator<Item = Fault>) -> Self {
        let f = Faulty::new(inner, FaultConfig::default());
        *f.script.lock().expect("script lock") = script.into_iter().collect();
        f
    }

    /// Faults injected so far: (transient, terminal).
    pub fn injected(&self) -> (u32, u32) {
        *self.injected.lock().expect("lock")
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

#[async_trait::async_trait]
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
    async fn client(&self, dataset_name: &str) -> Result<Box<dyn DestinationClient>> {
        Ok(Box::new(FaultyClient {
            inner: self.inner.client(dataset_name).await?,
            config: self.config,
            script: self.script.clone(),
            rng: self.rng.clone(),
            injected: self.injected.clone(),
        }))
    }
}

struct FaultyClient {
    inner: Box<dyn DestinationClient>,
    config: FaultConfig,
    script: Arc<Mutex<VecDeque<Fault>>>,
    rng: Arc<Mutex<u64>>,
    injected: Arc<Mutex<(u32, u32)>>,
}

#[async_trait::async_trait]
impl DestinationClient for FaultyClient {
    async fn initialize_storage(&mut self) -> Result<()> {
        self.inner.initialize_storage().await
    }
    async fn update_stored_schema(&mut self, schema: &Schema, tables: &[String]) -> Result<()> {
        self.inner.update_stored_schema(schema, tables).await
    }
    async fn is_loaded(&mut self, load_id: &str) -> Result<bool> {
        self.inner.is_loaded(load_id).await
    }
    async fn commit_package(&mut self, package: &PackageToLoad<'_>) -> Result<()> {
        let scripted = self.script.lock().expect("script lock").pop_front();
        let fault = scripted.unwrap_or_else(|| {
            let r = next(&self.rng);
            if r < self.config.fail_prob {
                Fault::TerminalBefore
            } else if r < self.config.fail_prob + self.config.retry_prob {
                Fault::TransientBefore
            } else {
                Fault::Pass
            }
        });
        let injected = |transient: bool, when: &str| {
            let mut n = self.injected.lock().expect("lock");
            if transient {
                n.0 += 1
            } else {
                n.1 += 1
            }
            Error::Destination {
                destination: "faulty".into(),
                message: format!(
                    "injected {} failure {when} package {}",
                    if transient { "transient" } else { "terminal" },
                    package.load_id
                ),
                transient,
            }
        };
        match fault {
            Fault::Pass => self.inner.commit_package(package).await,
            Fault::TransientBefore => Err(injected(true, "before committing")),
            Fault::TerminalBefore => Err(injected(false, "before committing")),
            Fault::TransientAfter => {
                self.inner.commit_package(package).await?;
                Err(injected(true, "after committing"))
            }
        }
    }
    async fn stored_state(&mut self, pipeline_name: &str) -> Result<Option<StoredState>> {
        self.inner.stored_state(pipeline_name).await
    }
    async fn stored_schema(&mut self, schema_name: &str) -> Result<Option<String>> {
        self.inner.stored_schema(schema_name).await
    }
    async fn drop_tables(&mut self, tables: &[String]) -> Result<()> {
        self.inner.drop_tables(tables).await
    }
    async fn existing_tables(&mut self) -> Result<Vec<String>> {
        self.inner.existing_tables().await
    }
    fn sql(&mut self) -> Option<&mut dyn SqlClient> {
        self.inner.sql()
    }
}
