//! Restoring state and schemas from the destination before a run.

use super::*;

impl Pipeline {
    /// Restore state and schemas from the destination, as dlt's `sync_destination` does: the
    /// destination's newest state (of a completed load) replaces the local one when its
    /// `_state_version` is at least the local one and its hash differs — so a dataset another
    /// tool (Python dlt, or dlt-rs on another machine) loaded since wins over a stale working
    /// dir — and schemas the state names that are missing locally are fetched. Returns whether
    /// the state was replaced. A destination that cannot be read is an error: extracting on an
    /// empty or stale state would load rows again.
    pub fn sync_destination(&mut self) -> Result<bool> {
        let local_exists = self.working_dir.join("state.json").exists();
        let mut client = block_on(self.destination.client(&self.dataset_name))?;
        let stored = block_on(client.stored_state(&self.name))?;
        let Some(stored) = stored else {
            let local_dataset = self.state.get("dataset_name").and_then(Value::as_str).unwrap_or_default();
            if local_exists && !local_dataset.is_empty() && local_dataset != self.dataset_name {
                // another dataset than the last run's, without this pipeline's state: it starts
                // from fresh schemas (as dlt does)
                let dir = self.working_dir.join("schemas");
                for f in crate::package::list_files(&dir)? {
                    fs::remove_file(&f).at(&f)?;
                }
            }
            return Ok(false);
        };
        let mut remote = PipelineState::decode_from_destination(&stored.state)?;
        let replace = !local_exists
            || (remote.version() >= self.state.version() && remote.version_hash() != self.state.version_hash());
        let names: Vec<String> = if replace { &remote } else { &self.state }
            .get("schema_names")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let mut schemas = vec![];
        for n in names {
            if !replace && self.schema_path(&n).exists() {
                continue;
            }
            if let Some(doc) = block_on(client.stored_schema(&n))? {
                schemas.push(Schema::from_str_any(&doc)?);
            }
        }
        drop(client);
        if replace {
            if local_exists {
                tracing::info!(
                    "the destination holds a newer state of pipeline {} (version {} against the local {}): \
                     restoring it and its schemas",
                    self.name,
                    remote.version(),
                    self.state.version()
                );
                let dir = self.working_dir.join("schemas");
                for f in crate::package::list_files(&dir)? {
                    fs::remove_file(&f).at(&f)?;
                }
            }
            // the local section stays this machine's
            let local = self.state.local_mut().clone();
            *remote.local_mut() = local;
            remote.local_mut().insert("first_run".into(), json!(false));
            self.state = remote;
        }
        for schema in &schemas {
            self.save_schema(schema)?;
        }
        if replace {
            self.save_state()?;
        }
        Ok(replace)
    }

    /// How transient destination errors are retried: `load.raise_on_max_retries` (5) retries,
    /// waits from `load.retry_backoff_ms` (250) doubling per attempt.
    pub(super) fn retry_settings(&self) -> (u32, u64) {
        let max_retries =
            self.config.get(&["load"], "raise_on_max_retries").and_then(|v| v.as_i64()).unwrap_or(5).max(0) as u32;
        let backoff_ms =
            self.config.get(&["load"], "retry_backoff_ms").and_then(|v| v.as_i64()).unwrap_or(250).max(0) as u64;
        (max_retries, backoff_ms)
    }

    /// [`Pipeline::sync_destination`], with transient errors (a destination that is briefly
    /// unreachable or locked) retried as the load step retries them.
    pub(super) fn sync_with_retries(&mut self) -> Result<bool> {
        let (max_retries, backoff_ms) = self.retry_settings();
        let mut attempt = 0u32;
        loop {
            match self.sync_destination() {
                Err(e) if e.is_transient() && attempt < max_retries => {
                    attempt += 1;
                    tracing::warn!("restoring state from the destination failed, retry {attempt}/{max_retries}: {e}");
                    backoff(backoff_ms, attempt);
                }
                r => return r,
            }
        }
    }
}

/// Wait before retry `attempt` (1-based): `backoff_ms` doubled per attempt.
pub(super) fn backoff(backoff_ms: u64, attempt: u32) {
    std::thread::sleep(backoff_duration(backoff_ms, attempt));
}

/// The pause before retry number `attempt`: `backoff_ms` doubled per retry.
pub(super) fn backoff_duration(backoff_ms: u64, attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis(backoff_ms.saturating_mul(1 << attempt.min(10)))
}
