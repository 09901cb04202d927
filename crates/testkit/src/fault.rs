//! A fault-injecting destination: wraps a real one and fails package attempts, either as a
//! script (one [`Fault`] per package attempt, in order) or with seeded probabilities, like
//! dlt's `dummy` destination, and fails single jobs from a second script (one [`JobFault`]
//! per job run). Everything else goes to the real destination, so what a failed or retried
//! load leaves behind is read back from the real storage.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use dlt_core::destination::{
    Capabilities, Destination, DestinationClient, FollowUpJob, JobFile, JobStatus, PackageToLoad, SqlClient,
    StoredState,
};
use dlt_core::error::{Error, Result};
use dlt_core::schema::Schema;

/// What one run of a data job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFault {
    /// Load it normally.
    Pass,
    /// Report a transient failure without loading it (the job is run again).
    RetryBefore,
    /// Load it, then report a transient failure: the job ran but its acknowledgement was lost,
    /// so it runs again and must not load its rows twice.
    RetryAfter,
    /// Report a terminal failure (the package stops and stays pending).
    Fail,
}

/// What one package attempt does.
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
    jobs: Arc<Mutex<VecDeque<JobFault>>>,
    rng: Arc<Mutex<u64>>,
    /// Faults injected so far: (transient, terminal).
    pub injected: Arc<Mutex<(u32, u32)>>,
    job_runs: Arc<std::sync::atomic::AtomicU32>,
}

impl Faulty {
    /// Wrap a destination; commits fail with the probabilities of `config`.
    pub fn new(inner: Arc<dyn Destination>, config: FaultConfig) -> Self {
        Faulty {
            inner,
            config,
            script: Default::default(),
            jobs: Default::default(),
            rng: Arc::new(Mutex::new(config.seed ^ 0x9E37_79B9_7F4A_7C15)),
            injected: Default::default(),
            job_runs: Default::default(),
        }
    }

    /// Wrap a destination; the first commit attempts do what `script` says, in order, and
    /// the ones after it pass.
    pub fn scripted(inner: Arc<dyn Destination>, script: impl IntoIterator<Item = Fault>) -> Self {
        let f = Faulty::new(inner, FaultConfig::default());
        *f.script.lock().expect("script lock") = script.into_iter().collect();
        f
    }

    /// The first data jobs run (over all packages and attempts) do what `script` says, in
    /// order, and the ones after it pass.
    pub fn with_job_faults(self, script: impl IntoIterator<Item = JobFault>) -> Self {
        *self.jobs.lock().expect("job script lock") = script.into_iter().collect();
        self
    }

    /// Data jobs run so far (each retry counts).
    pub fn job_runs(&self) -> u32 {
        self.job_runs.load(std::sync::atomic::Ordering::SeqCst)
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
            jobs: self.jobs.clone(),
            rng: self.rng.clone(),
            injected: self.injected.clone(),
            job_runs: self.job_runs.clone(),
            fail_after: false,
        }))
    }
}

struct FaultyClient {
    inner: Box<dyn DestinationClient>,
    config: FaultConfig,
    script: Arc<Mutex<VecDeque<Fault>>>,
    jobs: Arc<Mutex<VecDeque<JobFault>>>,
    rng: Arc<Mutex<u64>>,
    injected: Arc<Mutex<(u32, u32)>>,
    job_runs: Arc<std::sync::atomic::AtomicU32>,
    /// This attempt reports a transient failure after completing.
    fail_after: bool,
}

impl FaultyClient {
    fn injected(&self, transient: bool, what: String) -> Error {
        let mut n = self.injected.lock().expect("lock");
        if transient {
            n.0 += 1
        } else {
            n.1 += 1
        }
        Error::Destination {
            destination: "faulty".into(),
            message: format!("injected {} failure {what}", if transient { "transient" } else { "terminal" }),
            transient,
        }
    }
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
    async fn begin_package(&mut self, package: &PackageToLoad<'_>) -> Result<()> {
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
        let id = package.load_id;
        match fault {
            Fault::Pass => {}
            Fault::TransientBefore => return Err(self.injected(true, format!("before loading package {id}"))),
            Fault::TerminalBefore => return Err(self.injected(false, format!("before loading package {id}"))),
            Fault::TransientAfter => self.fail_after = true,
        }
        self.inner.begin_package(package).await
    }
    async fn load_job(&mut self, package: &PackageToLoad<'_>, job: &JobFile) -> JobStatus {
        self.job_runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let fault = self.jobs.lock().expect("job script lock").pop_front().unwrap_or(JobFault::Pass);
        let name = job.path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        match fault {
            JobFault::Pass => self.inner.load_job(package, job).await,
            JobFault::RetryBefore => JobStatus::Retry(self.injected(true, format!("before loading job {name}"))),
            JobFault::Fail => JobStatus::Failed(self.injected(false, format!("loading job {name}"))),
            JobFault::RetryAfter => match self.inner.load_job(package, job).await {
                JobStatus::Completed => JobStatus::Retry(self.injected(true, format!("after loading job {name}"))),
                other => other,
            },
        }
    }
    async fn follow_up_jobs(&mut self, package: &PackageToLoad<'_>) -> Result<Vec<FollowUpJob>> {
        self.inner.follow_up_jobs(package).await
    }
    async fn run_follow_up(&mut self, package: &PackageToLoad<'_>, job: &FollowUpJob) -> JobStatus {
        self.inner.run_follow_up(package, job).await
    }
    async fn complete_package(&mut self, package: &PackageToLoad<'_>) -> Result<()> {
        self.inner.complete_package(package).await?;
        if std::mem::take(&mut self.fail_after) {
            return Err(self.injected(true, format!("after committing package {}", package.load_id)));
        }
        Ok(())
    }
    async fn abort_package(&mut self) {
        self.fail_after = false;
        self.inner.abort_package().await
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
