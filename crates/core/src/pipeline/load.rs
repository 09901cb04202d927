//! The load step: normalized packages into the destination, with retries, committed once.

use super::*;
use crate::destination::{JobStatus, ReplaceStrategy, StagedFile, Staging};
use crate::package::COMPLETED_JOBS;
use sync::backoff_duration;

impl Pipeline {
    pub(super) fn load_inner(&mut self, info: &mut LoadInfo) -> Result<()> {
        for load_id in self.storage.list(PackageStage::Normalized)? {
            self.report(|p| p.step_started(Step::Load, &load_id));
            let r = self.load_package(&load_id, info);
            self.report(|p| p.step_finished(Step::Load));
            r.map_err(|e| step_err(Step::Load, Some(&load_id), e))?;
        }
        Ok(())
    }

    pub(super) fn load_package(&mut self, load_id: &str, info: &mut LoadInfo) -> Result<()> {
        let dir = self.storage.normalized_dir().join(load_id);
        let mut pstate = read_package_state(&dir)?;
        let schema = Schema::from_str_any(&fs::read_to_string(dir.join(SCHEMA_FILE)).at(dir.join(SCHEMA_FILE))?)?;
        // transient errors (connection lost, lock timeouts) are retried with exponential backoff,
        // one retry budget per package; terminal ones leave the package pending with the reason
        // in failed_jobs/
        let (max_retries, backoff_ms) = self.retry_settings();
        let mut run = PackageRun {
            destination: self.destination.as_ref(),
            staging: self.staging.as_ref().and_then(|s| s.as_staging()),
            dataset: &self.dataset_name,
            dir: &dir,
            schema: &schema,
            replace_strategy: self.replace_strategy()?,
            transactional: self.destination.capabilities().supports_transactions,
            max_retries,
            backoff_ms,
            retries: 0,
        };
        loop {
            match block_on(run.attempt(&mut pstate)) {
                Ok(()) => break,
                Err(e) if e.is_transient() && run.retries < max_retries => {
                    run.retries += 1;
                    tracing::warn!(
                        "load of package {load_id} failed with a transient error, retry {}/{max_retries}: {e}",
                        run.retries
                    );
                    backoff(backoff_ms, run.retries);
                }
                Err(e) => {
                    let failed = dir.join(FAILED_JOBS);
                    let _ = fs::create_dir_all(&failed);
                    let note =
                        if e.is_transient() { format!(" (after {} retries)", run.retries) } else { String::new() };
                    let _ = fs::write(failed.join("package.exception"), format!("{e}{note}\n"));
                    return Err(e);
                }
            }
        }
        crate::fault::hit("load.after_commit");
        let done = self.storage.complete_load(load_id)?;
        for j in list_jobs(&done, COMPLETED_JOBS)? {
            info.jobs.push(JobInfo {
                load_id: load_id.to_string(),
                table: j.table.clone(),
                file: j.path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string(),
                size: fs::metadata(&j.path).map(|m| m.len()).unwrap_or(0),
                error: None,
            });
        }
        pstate.loaded_at = Some(Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true));
        write_package_state(&done, &pstate)?;
        // local state advances only after the destination committed
        if let Some(st) = pstate.pipeline_state {
            let mut st = PipelineState(st);
            st.local_mut().insert("first_run".into(), json!(false));
            self.state = st;
        } else {
            self.state.local_mut().insert("first_run".into(), json!(false));
        }
        self.save_state()?;
        info.load_ids.push(load_id.to_string());
        Ok(())
    }

    /// `destination.replace_strategy` (dlt's `DESTINATION__REPLACE_STRATEGY`), checked against
    /// what the destination supports.
    pub(super) fn replace_strategy(&self) -> Result<crate::destination::ReplaceStrategy> {
        let Some(v) = self.config.get(&["destination"], "replace_strategy") else {
            return Ok(Default::default());
        };
        let name = v.as_string();
        let s = crate::destination::ReplaceStrategy::parse(&name).ok_or_else(|| {
            Error::Config(format!(
                "unknown replace strategy `{name}` (truncate-and-insert, insert-from-staging, staging-optimized)"
            ))
        })?;
        let caps = self.destination.capabilities();
        if !caps.replace_strategies.contains(&s) {
            return Err(Error::Config(format!(
                "destination {} does not support the replace strategy `{name}` (it supports: {})",
                self.destination.name(),
                caps.replace_strategies.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(s)
    }
}

/// One package on its way into the destination: what every attempt needs.
struct PackageRun<'a> {
    destination: &'a dyn Destination,
    staging: Option<&'a dyn Staging>,
    dataset: &'a str,
    dir: &'a Path,
    schema: &'a Schema,
    replace_strategy: ReplaceStrategy,
    transactional: bool,
    max_retries: u32,
    backoff_ms: u64,
    /// Retries used so far (one budget for the package and its jobs).
    retries: u32,
}

impl PackageRun<'_> {
    /// One attempt: connect, skip a package that is already committed, migrate the schema, then
    /// the job protocol of [`DestinationClient`]. A failed attempt is aborted (rolled back).
    async fn attempt(&mut self, pstate: &mut PackageState) -> Result<()> {
        let pending = list_jobs(self.dir, NEW_JOBS)?;
        let mut jobs = list_jobs(self.dir, COMPLETED_JOBS)?;
        let first_pending = jobs.len();
        jobs.extend(pending.iter().cloned());
        // staged first (uploads are idempotent: a retry writes the same files)
        let staged = match self.staging {
            Some(st) => st.upload_jobs(self.dataset, &self.schema.name, &pstate.load_id, &pending).await?,
            None => vec![],
        };
        let mut client = self.destination.client(self.dataset).await?;
        client.initialize_storage().await?;
        if client.is_loaded(&pstate.load_id).await? {
            return Ok(());
        }
        client.update_stored_schema(self.schema, &ddl_tables(self.schema, pstate)).await?;
        let r = self.run_jobs(client.as_mut(), &mut jobs, first_pending, &staged, pstate).await;
        if r.is_err() {
            client.abort_package().await;
        }
        r
    }

    /// The package as the client sees it: `jobs` with their current paths (a job moves to
    /// `completed_jobs` or to its next retry number as it goes).
    fn package<'p>(
        &'p self,
        pstate: &'p PackageState,
        jobs: &'p [JobFile],
        staged: &'p [StagedFile],
    ) -> PackageToLoad<'p> {
        PackageToLoad {
            load_id: &pstate.load_id,
            schema: self.schema,
            jobs,
            truncate_tables: &pstate.truncate_tables,
            replace_strategy: self.replace_strategy,
            staged,
            resumed: pstate.begun,
        }
    }

    async fn run_jobs(
        &mut self,
        client: &mut dyn DestinationClient,
        jobs: &mut [JobFile],
        first_pending: usize,
        staged: &[StagedFile],
        pstate: &mut PackageState,
    ) -> Result<()> {
        client.begin_package(&self.package(pstate, jobs, staged)).await?;
        if !self.transactional && !pstate.begun {
            pstate.begun = true;
            write_package_state(self.dir, pstate)?;
        }
        for i in first_pending..jobs.len() {
            loop {
                let status = client.load_job(&self.package(pstate, jobs, staged), &jobs[i]).await;
                let job = &mut jobs[i];
                match status {
                    JobStatus::Completed => break,
                    JobStatus::Retry(e) => {
                        if !self.take_retry(&format!("job {}", job_name(job)), &e) {
                            return Err(e);
                        }
                        // only this job runs again: renamed to its next retry number, as dlt does
                        let to = job.path.with_file_name(JobFile::file_name(
                            &job.table,
                            &job.file_id,
                            job.retry + 1,
                            job.format,
                        ));
                        fs::rename(&job.path, &to).at(&to)?;
                        job.retry += 1;
                        job.path = to;
                        tokio::time::sleep(backoff_duration(self.backoff_ms, self.retries)).await;
                    }
                    JobStatus::Failed(e) => return Err(self.job_failed(&job_name(job), e)),
                }
            }
            if !self.transactional {
                // recorded: a later attempt does not load it again
                let job = &mut jobs[i];
                let done = self.dir.join(COMPLETED_JOBS);
                fs::create_dir_all(&done).at(&done)?;
                let to = done.join(job_name(job));
                fs::rename(&job.path, &to).at(&to)?;
                job.path = to;
                crate::fault::hit_nth("load.after_job", (i - first_pending) as u64 + 1);
            }
        }
        for f in client.follow_up_jobs(&self.package(pstate, jobs, staged)).await? {
            let key = f.key();
            if pstate.completed_follow_ups.contains(&key) {
                continue;
            }
            loop {
                match client.run_follow_up(&self.package(pstate, jobs, staged), &f).await {
                    JobStatus::Completed => break,
                    JobStatus::Retry(e) => {
                        if !self.take_retry(&format!("follow-up job {key}"), &e) {
                            return Err(e);
                        }
                        tokio::time::sleep(backoff_duration(self.backoff_ms, self.retries)).await;
                    }
                    JobStatus::Failed(e) => return Err(self.job_failed(&format!("{key}.followup"), e)),
                }
            }
            if !self.transactional {
                pstate.completed_follow_ups.push(key);
                write_package_state(self.dir, pstate)?;
            }
        }
        client.complete_package(&self.package(pstate, jobs, staged)).await
    }

    /// Whether a job that asked for a retry runs again here: only without transactions (a
    /// transactional attempt is retried whole) and while the package's budget lasts. Counts
    /// the retry.
    fn take_retry(&mut self, job: &str, e: &Error) -> bool {
        if self.transactional || self.retries >= self.max_retries {
            return false;
        }
        self.retries += 1;
        tracing::warn!("{job} failed with a transient error, retry {}: {e}", self.retries);
        true
    }

    /// A job that failed for good: its reason goes to `failed_jobs/<job>.exception`; the job
    /// file stays, so the package loads whole once the cause is fixed.
    fn job_failed(&self, name: &str, e: Error) -> Error {
        let failed = self.dir.join(FAILED_JOBS);
        let _ = fs::create_dir_all(&failed);
        let _ = fs::write(failed.join(format!("{name}.exception")), format!("{e}\n"));
        Error::JobFailed { job: name.to_string(), source: Box::new(e) }
    }
}

fn job_name(job: &JobFile) -> String {
    job.path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string()
}

/// The tables a package creates or alters: every table with jobs or replaced, with its parents
/// (parents first).
fn ddl_tables(schema: &Schema, pstate: &PackageState) -> Vec<String> {
    let mut ddl_tables: Vec<String> = vec![];
    for t in pstate.tables_with_jobs.iter().chain(pstate.truncate_tables.iter()) {
        let mut chain = vec![t.clone()];
        let mut cur = t.as_str();
        while let Some(p) = schema.tables.get(cur).and_then(|x| x.parent.as_deref()) {
            chain.push(p.to_string());
            cur = p;
        }
        for c in chain.into_iter().rev() {
            if !ddl_tables.contains(&c) {
                ddl_tables.push(c);
            }
        }
    }
    ddl_tables
}
