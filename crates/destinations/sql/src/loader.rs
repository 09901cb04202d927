//! [`SqlLoader`]: a dialect and a connection made into a destination client.

use std::collections::HashMap;

use arrow::record_batch::RecordBatch;
use dlt_core::destination::{
    DestinationClient, FollowUpJob, JobFile, JobStatus, PackageToLoad, ReplaceStrategy, SqlClient, StoredState,
};
use dlt_core::error::{Error, Result};
use dlt_core::schema::{LOADS_TABLE, STATE_TABLE, Schema, VERSION_TABLE};

use crate::{Dialect, MergeContext, SqlConnection, cell_strings, first_line};

/// The load sequence, the system tables and state restore for one dataset of a SQL
/// destination, over a [`SqlConnection`] and a [`Dialect`].
///
/// With `transactional` set (the destination's
/// [`supports_transactions`](dlt_core::destination::Capabilities::supports_transactions)), a
/// package's data, state row and `_dlt_loads` row commit in one transaction. Without it, the
/// steps run one by one, each re-runnable, and the `_dlt_loads` row is written last: a package
/// interrupted half-way has no `_dlt_loads` row, so its state is not restored and the package
/// is loaded again.
pub struct SqlLoader<C, D> {
    destination: String,
    dialect: D,
    conn: C,
    dataset: String,
    transactional: bool,
    search_path_set: bool,
    /// A package's transaction is open.
    in_transaction: bool,
    /// The dialect's keep-insertion-order setting is on (rows being staged).
    insertion_order_kept: bool,
    /// The staging plan of the package being loaded (by load id).
    plan: Option<(String, crate::StagingPlan)>,
}

impl<C: SqlConnection, D: Dialect> SqlLoader<C, D> {
    /// A loader for `dataset` of the destination named `destination`.
    pub fn new(destination: impl Into<String>, dialect: D, conn: C, dataset: impl Into<String>) -> Self {
        SqlLoader {
            destination: destination.into(),
            dialect,
            conn,
            dataset: dataset.into(),
            transactional: true,
            search_path_set: false,
            in_transaction: false,
            insertion_order_kept: false,
            plan: None,
        }
    }

    /// Whether packages commit in one transaction (default) or by the idempotent protocol.
    pub fn with_transactions(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// The connection underneath.
    pub fn connection(&mut self) -> &mut C {
        &mut self.conn
    }

    /// The dataset.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    fn q(&self, table: &str) -> String {
        format!("{}.{}", self.dialect.quote(&self.dataset), self.dialect.quote(table))
    }

    fn sq(&self, staging: &str, table: &str) -> String {
        format!("{}.{}", self.dialect.quote(staging), self.dialect.quote(table))
    }

    fn lit(&self, s: &str) -> String {
        self.dialect.literal(s)
    }

    async fn exec(&mut self, sql: &str) -> Result<()> {
        tracing::info!(target: "dlt::sql", destination = %self.destination, "{sql}");
        self.conn.execute(sql).await
    }

    async fn exec_all(&mut self, stmts: &[String]) -> Result<()> {
        for s in stmts {
            self.exec(s).await?;
        }
        Ok(())
    }

    async fn rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        tracing::info!(target: "dlt::sql", destination = %self.destination, "{sql}");
        let batches = self.conn.query(sql).await?;
        cell_strings(&batches)
    }

    async fn count(&mut self, sql: &str) -> Result<i64> {
        let rows = self.rows(sql).await?;
        let v = rows.first().and_then(|r| r.first().cloned().flatten()).unwrap_or_default();
        v.parse().map_err(|_| self.error(format!("expected a count from `{}`, got `{v}`", first_line(sql))))
    }

    fn error(&self, message: String) -> Error {
        Error::Destination { destination: self.destination.clone(), message, transient: false }
    }

    async fn dataset_exists(&mut self) -> Result<bool> {
        let sql = self.dialect.dataset_exists_query(&self.dataset);
        Ok(self.count(&sql).await? > 0)
    }

    async fn table_columns(&mut self) -> Result<HashMap<String, Vec<String>>> {
        let sql = self.dialect.columns_query(&self.dataset);
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for r in self.rows(&sql).await? {
            if let [Some(t), Some(c), ..] = &r[..] {
                out.entry(t.clone()).or_default().push(c.clone());
            }
        }
        Ok(out)
    }

    /// Open a transaction (and take the dataset lock) when `on`.
    async fn begin(&mut self, on: bool) -> Result<()> {
        if !on {
            return Ok(());
        }
        let begin = self.dialect.begin();
        self.exec(begin).await?;
        if let Some(lock) = self.dialect.lock_dataset(&self.dataset) {
            self.exec(&lock).await?;
        }
        Ok(())
    }

    /// Commit when `on` and `r` is Ok, roll back when `on` and `r` failed.
    async fn finish(&mut self, on: bool, r: Result<()>) -> Result<()> {
        if !on {
            return r;
        }
        match r {
            Ok(()) => self.exec("COMMIT;").await,
            Err(e) => {
                if let Err(rb) = self.conn.execute("ROLLBACK;").await {
                    tracing::warn!("rolling back after `{e}` failed too: {rb}");
                }
                Err(e)
            }
        }
    }

    async fn set_search_path(&mut self) -> Result<()> {
        if !self.search_path_set && self.dataset_exists().await? {
            let sql = self.dialect.set_search_path(&self.dataset);
            self.conn.execute(&sql).await?;
            self.search_path_set = true;
        }
        Ok(())
    }

    async fn migrate(&mut self, schema: &Schema, tables: &[String]) -> Result<()> {
        let existing = self.table_columns().await?;
        let stmts = crate::schema_update_sql(&self.dialect, &self.dataset, schema, tables, &existing);
        let known = self
            .count(&format!(
                "SELECT count(*) FROM {} WHERE {} = {}",
                self.q(VERSION_TABLE),
                self.dialect.quote("version_hash"),
                self.lit(&schema.version_hash)
            ))
            .await?;
        self.exec_all(&stmts).await?;
        if known == 0 {
            let cols = ["version", "engine_version", "inserted_at", "schema_name", "version_hash", "schema"]
                .map(|c| self.dialect.quote(c))
                .join(", ");
            let sql = format!(
                "INSERT INTO {} ({cols}) VALUES ({}, {}, {}, {}, {}, {});",
                self.q(VERSION_TABLE),
                schema.version,
                schema.engine_version,
                self.dialect.now(),
                self.lit(&schema.name),
                self.lit(&schema.version_hash),
                self.lit(&schema.to_json()),
            );
            self.exec(&sql).await?;
        }
        Ok(())
    }

    /// The package's staging plan (computed once per package).
    fn plan(&mut self, package: &PackageToLoad<'_>) -> &crate::StagingPlan {
        if self.plan.as_ref().is_none_or(|(id, _)| id != package.load_id) {
            let plan = crate::staging_plan(package.schema, package.jobs, package.replace_strategy);
            self.plan = Some((package.load_id.to_string(), plan));
        }
        &self.plan.as_ref().expect("just set").1
    }

    fn staging_dataset(&self) -> String {
        format!("{}_staging", self.dataset)
    }

    async fn begin_package_inner(&mut self, package: &PackageToLoad<'_>) -> Result<()> {
        // a resumed package (no transactions) keeps what its completed jobs loaded
        if package.resumed {
            return Ok(());
        }
        let existing = self.table_columns().await?;
        let staged = self.plan(package).staged.clone();
        let via_staging = package.replace_strategy != ReplaceStrategy::TruncateAndInsert;
        let staging = self.staging_dataset();
        if !via_staging {
            for t in package.truncate_tables.iter().filter(|t| existing.contains_key(*t)) {
                self.exec(&format!("DELETE FROM {} WHERE 1=1;", self.q(t))).await?;
            }
        }
        if !staged.is_empty() {
            self.exec(&format!("CREATE SCHEMA IF NOT EXISTS {};", self.dialect.quote(&staging))).await?;
            for t in &staged {
                // tables swapped in by staging-optimized keep every constraint and index
                let swapped = package.replace_strategy == ReplaceStrategy::StagingOptimized
                    && package.truncate_tables.contains(t);
                let sql = self.dialect.create_staging_table(&self.sq(&staging, t), &self.q(t), swapped);
                self.exec(&sql).await?;
            }
        }
        Ok(())
    }

    async fn load_job_inner(&mut self, package: &PackageToLoad<'_>, job: &JobFile) -> Result<()> {
        let table = package.schema.tables.get(&job.table).ok_or_else(|| {
            Error::Package(format!("job {} loads table `{}` that its schema lacks", job.path.display(), job.table))
        })?;
        let to_staging = self.plan(package).staged.contains(&job.table);
        let target = if to_staging { self.sq(&self.staging_dataset(), &job.table) } else { self.q(&job.table) };
        // staged rows keep their file order: in-load dedup picks the first (or last) row
        if to_staging
            && !self.insertion_order_kept
            && let Some(sql) = self.dialect.keep_insertion_order(true)
        {
            self.exec(&sql).await?;
            self.insertion_order_kept = true;
        }
        // a staged copy is loaded where there is one (the state job is never staged)
        match package.staged_file(job) {
            Some(file) => {
                tracing::info!(target: "dlt::sql", destination = %self.destination, "load {} into {target}", file.url);
                self.conn.load_staged(&target, table, file).await
            }
            None => {
                tracing::info!(
                    target: "dlt::sql", destination = %self.destination, "load {} into {target}", job.path.display()
                );
                self.conn.load_job(&target, table, job).await
            }
        }
    }

    /// The statements of one follow-up job, built against the tables that exist now.
    async fn follow_up_sql(&mut self, package: &PackageToLoad<'_>, job: &FollowUpJob) -> Result<Vec<String>> {
        let existing = self.table_columns().await?;
        let crate::StagingPlan { staged, .. } = self.plan(package).clone();
        let staging = self.staging_dataset();
        let mut present: Vec<String> = existing.keys().cloned().collect();
        present.extend(staged.iter().cloned());
        let ctx = MergeContext {
            dialect: &self.dialect,
            schema: package.schema,
            dataset: &self.dataset,
            staging: &staging,
            load_id: package.load_id,
            staged: &staged,
            existing: &present,
        };
        let mut stmts = vec![];
        match job.kind.as_str() {
            REPLACE => {
                let swap = package.replace_strategy == ReplaceStrategy::StagingOptimized;
                let mut copied = vec![];
                for t in replaced_in_chain(package, &job.table) {
                    let swapped = swap && staged.contains(&t);
                    match self.dialect.swap_table(
                        &self.sq(&staging, &t),
                        &self.q(&t),
                        &self.dialect.quote(&self.dataset),
                    ) {
                        Some(sql) if swapped => stmts.push(sql),
                        _ => copied.push(t),
                    }
                }
                stmts.extend(crate::replace_from_staging(&ctx, &copied));
            }
            MERGE => stmts.extend(crate::merge_statements(&ctx, &job.table)?),
            other => return Err(self.error(format!("unknown follow-up job `{other}` for table {}", job.table))),
        }
        Ok(stmts)
    }

    async fn run_follow_up_inner(&mut self, package: &PackageToLoad<'_>, job: &FollowUpJob) -> Result<()> {
        let what = match job.kind.as_str() {
            REPLACE => format!("replacing table {} from staging", job.table),
            _ => format!("merging table {}", job.table),
        };
        let mut stmts = self.follow_up_sql(package, job).await.map_err(|e| e.context(&what))?;
        if self.dialect.follow_up_as_script() && !stmts.is_empty() {
            stmts = vec![stmts.join("\n")];
        }
        for sql in stmts {
            tracing::info!(target: "dlt::sql", destination = %self.destination, "{sql}");
            self.conn.execute(&sql).await.map_err(|e| e.context(&what))?;
        }
        Ok(())
    }

    async fn complete_package_inner(&mut self, package: &PackageToLoad<'_>) -> Result<()> {
        if self.insertion_order_kept
            && let Some(sql) = self.dialect.keep_insertion_order(false)
        {
            self.exec(&sql).await?;
            self.insertion_order_kept = false;
        }
        let cols = ["load_id", "schema_name", "status", "inserted_at", "schema_version_hash"]
            .map(|c| self.dialect.quote(c))
            .join(", ");
        let sql = format!(
            "INSERT INTO {} ({cols}) VALUES ({}, {}, 0, {}, {});",
            self.q(LOADS_TABLE),
            self.lit(package.load_id),
            self.lit(&package.schema.name),
            self.dialect.now(),
            self.lit(&package.schema.version_hash)
        );
        self.exec(&sql).await?;
        dlt_core::fault::hit("load.in_transaction");
        Ok(())
    }
}

const REPLACE: &str = "replace";
const MERGE: &str = "merge";

/// The replaced tables of the chain under root table `root`, nested first.
fn replaced_in_chain(package: &PackageToLoad<'_>, root: &str) -> Vec<String> {
    package.truncate_tables.iter().filter(|t| package.schema.root_table_name(t) == root).cloned().collect()
}

#[async_trait::async_trait]
impl<C: SqlConnection, D: Dialect> DestinationClient for SqlLoader<C, D> {
    async fn initialize_storage(&mut self) -> Result<()> {
        let ddl = self.transactional && self.dialect.transactional_ddl();
        self.begin(ddl).await?;
        let stmts = crate::system_tables_sql(&self.dialect, &self.dataset);
        let r = self.exec_all(&stmts).await.map_err(|e| e.context("creating the dataset"));
        self.finish(ddl, r).await
    }

    async fn update_stored_schema(&mut self, schema: &Schema, tables: &[String]) -> Result<()> {
        // DDL of concurrent pipelines on one dataset is serialised (the dialect's lock); what
        // exists is read inside the transaction
        let ddl = self.transactional && self.dialect.transactional_ddl();
        self.begin(ddl).await?;
        let r = self.migrate(schema, tables).await;
        self.finish(ddl, r).await
    }

    async fn is_loaded(&mut self, load_id: &str) -> Result<bool> {
        if !self.dataset_exists().await? {
            return Ok(false);
        }
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {} = {}",
            self.q(LOADS_TABLE),
            self.dialect.quote("load_id"),
            self.lit(load_id)
        );
        Ok(self.count(&sql).await? > 0)
    }

    async fn begin_package(&mut self, package: &PackageToLoad<'_>) -> Result<()> {
        if self.transactional {
            let begin = self.dialect.begin();
            self.exec(begin).await?;
            self.in_transaction = true;
        }
        self.begin_package_inner(package).await
    }

    async fn load_job(&mut self, package: &PackageToLoad<'_>, job: &JobFile) -> JobStatus {
        JobStatus::from_result(self.load_job_inner(package, job).await)
    }

    async fn follow_up_jobs(&mut self, package: &PackageToLoad<'_>) -> Result<Vec<FollowUpJob>> {
        let mut jobs = vec![];
        if package.replace_strategy != ReplaceStrategy::TruncateAndInsert {
            for t in package.truncate_tables {
                let root = package.schema.root_table_name(t);
                if !jobs.iter().any(|j: &FollowUpJob| j.table == root) {
                    jobs.push(FollowUpJob::new(root, REPLACE));
                }
            }
        }
        for root in self.plan(package).merge_roots.clone() {
            jobs.push(FollowUpJob::new(root, MERGE));
        }
        Ok(jobs)
    }

    async fn run_follow_up(&mut self, package: &PackageToLoad<'_>, job: &FollowUpJob) -> JobStatus {
        JobStatus::from_result(self.run_follow_up_inner(package, job).await)
    }

    async fn complete_package(&mut self, package: &PackageToLoad<'_>) -> Result<()> {
        let r = self.complete_package_inner(package).await;
        let tx = std::mem::take(&mut self.in_transaction);
        self.finish(tx, r).await
    }

    async fn abort_package(&mut self) {
        if std::mem::take(&mut self.in_transaction)
            && let Err(e) = self.conn.execute("ROLLBACK;").await
        {
            tracing::warn!("rolling back an aborted package failed: {e}");
        }
    }

    async fn stored_state(&mut self, pipeline_name: &str) -> Result<Option<StoredState>> {
        if !self.dataset_exists().await? || !self.table_columns().await?.contains_key(STATE_TABLE) {
            return Ok(None);
        }
        let c = |n: &str| self.dialect.quote(n);
        let sql = format!(
            "SELECT s.{}, s.{}, s.{}, s.{}, s.{} FROM {} AS s JOIN {} AS l ON l.{} = s.{} \
             WHERE s.{} = {} AND l.{} = 0 ORDER BY l.{} DESC LIMIT 1",
            c("version"),
            c("engine_version"),
            c("pipeline_name"),
            c("state"),
            c("_dlt_load_id"),
            self.q(STATE_TABLE),
            self.q(LOADS_TABLE),
            c("load_id"),
            c("_dlt_load_id"),
            c("pipeline_name"),
            self.lit(pipeline_name),
            c("status"),
            c("load_id"),
        );
        let Some(row) = self.rows(&sql).await?.into_iter().next() else { return Ok(None) };
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let num = |i: usize| -> Result<i64> {
            text(i).parse().map_err(|_| self.error(format!("the stored state has a bad version `{}`", text(i))))
        };
        Ok(Some(StoredState {
            version: num(0)?,
            engine_version: num(1)?,
            pipeline_name: text(2),
            state: text(3),
            load_id: text(4),
        }))
    }

    async fn stored_schema(&mut self, schema_name: &str) -> Result<Option<String>> {
        if !self.dataset_exists().await? {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = {} ORDER BY {} DESC LIMIT 1",
            self.dialect.quote("schema"),
            self.q(VERSION_TABLE),
            self.dialect.quote("schema_name"),
            self.lit(schema_name),
            self.dialect.quote("inserted_at"),
        );
        Ok(self.rows(&sql).await?.into_iter().next().and_then(|r| r.into_iter().next().flatten()))
    }

    async fn drop_tables(&mut self, tables: &[String]) -> Result<()> {
        let existing = self.table_columns().await?;
        let ddl = self.transactional && self.dialect.transactional_ddl();
        self.begin(ddl).await?;
        let stmts: Vec<String> =
            tables.iter().filter(|t| existing.contains_key(*t)).map(|t| format!("DROP TABLE {};", self.q(t))).collect();
        let r = self.exec_all(&stmts).await;
        self.finish(ddl, r).await
    }

    async fn existing_tables(&mut self) -> Result<Vec<String>> {
        let mut v: Vec<String> = self.table_columns().await?.into_keys().collect();
        v.sort();
        Ok(v)
    }

    fn sql(&mut self) -> Option<&mut dyn SqlClient> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl<C: SqlConnection, D: Dialect> SqlClient for SqlLoader<C, D> {
    async fn execute(&mut self, sql: &str) -> Result<()> {
        self.set_search_path().await?;
        self.exec(sql).await
    }

    async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.set_search_path().await?;
        tracing::info!(target: "dlt::sql", destination = %self.destination, "{sql}");
        self.conn.query(sql).await
    }
}
