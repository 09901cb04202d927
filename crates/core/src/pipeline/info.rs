//! What a run reports: the load info, and the trace of its steps.

use super::*;

/// Row counts and jobs of a completed run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LoadInfo {
    /// Pipeline name.
    pub pipeline_name: String,
    /// Destination name (`duckdb`).
    pub destination_name: String,
    /// Destination type (`dlt.destinations.duckdb`).
    pub destination_type: String,
    /// Where the data went, without secrets.
    pub destination_location: String,
    /// Dataset.
    pub dataset_name: String,
    /// Packages loaded in this run, oldest first.
    pub load_ids: Vec<String>,
    /// Rows normalized per table in this run.
    pub row_counts: IndexMap<String, u64>,
    /// Jobs loaded.
    pub jobs: Vec<JobInfo>,
    /// Jobs that failed.
    pub failed_jobs: Vec<JobInfo>,
    /// Seconds per step.
    pub timings: IndexMap<String, f64>,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    pub finished_at: String,
    /// Whether this was the pipeline's first run.
    pub first_run: bool,
}

/// One job of a load.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    /// Load id.
    pub load_id: String,
    /// Table.
    pub table: String,
    /// Job file name.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// Error text for failed jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LoadInfo {
    /// Whether any job failed.
    pub fn has_failed_jobs(&self) -> bool {
        !self.failed_jobs.is_empty()
    }
}

impl std::fmt::Display for LoadInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "Pipeline {} load step finished in {:.2} seconds",
            self.pipeline_name,
            self.timings.get("load").copied().unwrap_or(0.0)
        )?;
        writeln!(
            f,
            "{} load package(s) were loaded to destination {} and into dataset {}",
            self.load_ids.len(),
            self.destination_name,
            self.dataset_name
        )?;
        writeln!(
            f,
            "The {} destination used {} location to store data",
            self.destination_name, self.destination_location
        )?;
        for id in &self.load_ids {
            let failed = self.failed_jobs.iter().filter(|j| &j.load_id == id).count();
            if failed == 0 {
                writeln!(f, "Load package {id} is LOADED and contains no failed jobs")?;
            } else {
                writeln!(f, "Load package {id} is LOADED and contains {failed} FAILED job(s)!")?;
            }
        }
        Ok(())
    }
}

/// One step in a trace.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TraceStep {
    /// Step name.
    pub step: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// Seconds.
    pub duration_s: f64,
    /// COMPLETED or FAILED.
    pub status: String,
    /// Error text (never contains secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rows per table (normalize) or load ids (load).
    #[serde(default)]
    pub details: Value,
}

/// The trace of the last run, persisted as `trace.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct Trace {
    /// Pipeline name.
    pub pipeline_name: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    pub finished_at: String,
    /// Steps run.
    pub steps: Vec<TraceStep>,
    /// The load info, when the run got that far.
    #[serde(default)]
    pub load_info: Value,
    /// Config keys resolved for the run, with their providers (never their values).
    #[serde(default)]
    pub resolved_config: Vec<crate::config::Resolved>,
}
