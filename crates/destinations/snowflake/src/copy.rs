//! The `COPY INTO` statements, as dlt 1.31 writes them for Snowflake:
//!
//! - a job file `PUT` into a stage (the table's own stage `@"DS"."%T"` by default, or the named
//!   `stage_name`): `COPY INTO t FROM @stage/<file>`;
//! - a file of a staging bucket (the filesystem destination as `staging`), through a named stage
//!   whose location is the bucket (`FROM @stage FILES = ('<path under the stage>')`), or straight
//!   from the bucket with the staging credentials: S3 with an access key
//!   (`CREDENTIALS=(AWS_KEY_ID=… AWS_SECRET_KEY=… [AWS_TOKEN=…])`), Azure Blob Storage with a SAS
//!   token (`CREDENTIALS=(AZURE_SAS_TOKEN=…)`, the URL in Snowflake's
//!   `azure://<account>.blob.core.windows.net/<container>/<path>` form). GCS buckets need a
//!   named stage (a storage integration), as in dlt.
//!
//! Parquet is read with dlt's options ([`PARQUET_COPY_OPTIONS`]). Statements that carry
//! credentials are logged and quoted in errors with them masked ([`mask_credentials`]).

use dlt_core::config::Secret;
use dlt_core::error::{Error, Result};

/// How `COPY INTO` reads a parquet job file, as dlt 1.31 does: binary columns stay binary, the
/// files' logical types (timestamps, decimals, dates) are used, columns are matched by name
/// whatever their case. The options are separated by spaces, the form of Snowflake's reference
/// (dlt separates them with commas, which Snowflake also takes and fakesnow does not).
pub const PARQUET_COPY_OPTIONS: &str = "FILE_FORMAT = (TYPE = 'PARQUET' BINARY_AS_TEXT = FALSE USE_LOGICAL_TYPE = TRUE) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE";

/// The credentials Snowflake reads a staging bucket with when no named stage is configured
/// (dlt takes them from the staging destination's credentials).
#[derive(Clone)]
pub enum StagingCredentials {
    /// An S3 access key (and session token).
    Aws {
        /// `aws_access_key_id`.
        access_key_id: String,
        /// `aws_secret_access_key`.
        secret_access_key: Secret,
        /// `aws_session_token`, for temporary credentials.
        session_token: Option<Secret>,
    },
    /// An Azure storage account and a SAS token.
    AzureSas {
        /// `azure_storage_account_name`.
        account_name: String,
        /// `azure_storage_sas_token` (with or without the leading `?`).
        sas_token: Secret,
        /// `azure_account_host` (default `<account>.blob.core.windows.net`).
        account_host: Option<String>,
    },
}

impl std::fmt::Debug for StagingCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StagingCredentials::Aws { access_key_id, .. } => {
                f.debug_struct("Aws").field("access_key_id", access_key_id).finish_non_exhaustive()
            }
            StagingCredentials::AzureSas { account_name, .. } => {
                f.debug_struct("AzureSas").field("account_name", account_name).finish_non_exhaustive()
            }
        }
    }
}

/// Where job files go and where staged files are read from (dlt's `stage_name`,
/// `keep_staged_files` and the staging destination's bucket and credentials).
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// A named stage (`[db.]schema.stage`, as written in SQL) instead of the table's own stage for
    /// job files; for staged files, a stage whose location is the staging bucket.
    pub stage_name: Option<String>,
    /// Keep job files in the stage after their `COPY` (dlt's default); `false` removes each one.
    pub keep_staged_files: bool,
    /// The staging bucket's URL: a named stage's location is the bucket, so a staged file's path
    /// under the stage is its path with the bucket's path removed.
    pub staging_bucket_url: Option<String>,
    /// How Snowflake reads the staging bucket without a named stage.
    pub staging_credentials: Option<StagingCredentials>,
}

impl Default for StageOptions {
    fn default() -> Self {
        StageOptions { stage_name: None, keep_staged_files: true, staging_bucket_url: None, staging_credentials: None }
    }
}

/// A Snowflake string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `COPY INTO target` from a job file `file_name` that was `PUT` into `stage` (`@…`).
pub fn copy_from_stage(target: &str, stage: &str, file_name: &str) -> String {
    format!("COPY INTO {target} FROM {stage}/{file_name} {PARQUET_COPY_OPTIONS}")
}

/// Removes a job file from the stage it was `PUT` into (`keep_staged_files = false`).
pub fn remove_from_stage(stage: &str, file_name: &str) -> String {
    format!("REMOVE {stage}/{file_name}")
}

/// The scheme, host (bucket or container) and path of a URL.
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Some((scheme, host, path))
}

/// `COPY INTO target` from a staged file's `url` (see the module docs).
pub fn copy_from_bucket(target: &str, url: &str, opts: &StageOptions) -> Result<String> {
    let Some((scheme, host, path)) = split_url(url) else {
        return Err(Error::Config(format!("snowflake: the staged file {url} has no scheme")));
    };
    if scheme == "file" {
        return Err(Error::Config(format!(
            "snowflake cannot load staged files from a local folder ({url}): stage on s3://, az:// or gs:// (with \
             stage_name), or load without a staging destination (job files are PUT into a stage)"
        )));
    }
    if let Some(stage) = &opts.stage_name {
        let mut relative = path.trim_start_matches('/');
        if let Some((_, _, prefix)) = opts.staging_bucket_url.as_deref().and_then(split_url) {
            let prefix = prefix.trim_matches('/');
            if !prefix.is_empty()
                && let Some(rest) = relative.strip_prefix(prefix)
            {
                relative = rest.trim_start_matches('/');
            }
        }
        return Ok(format!("COPY INTO {target} FROM @{stage} FILES = ({}) {PARQUET_COPY_OPTIONS}", literal(relative)));
    }
    let hint = "or set stage_name to a stage on the bucket (destination.snowflake.stage_name)";
    match (scheme, &opts.staging_credentials) {
        ("s3" | "s3a", Some(StagingCredentials::Aws { access_key_id, secret_access_key, session_token })) => {
            let mut creds =
                format!("AWS_KEY_ID={} AWS_SECRET_KEY={}", literal(access_key_id), literal(secret_access_key.expose()));
            if let Some(t) = session_token {
                creds.push_str(&format!(" AWS_TOKEN={}", literal(t.expose())));
            }
            Ok(format!("COPY INTO {target} FROM {} CREDENTIALS=({creds}) {PARQUET_COPY_OPTIONS}", literal(url)))
        }
        ("s3" | "s3a", _) => Err(Error::Config(format!(
            "snowflake cannot load the staged file {url} without credentials: set the staging destination's \
             aws_access_key_id and aws_secret_access_key (destination.filesystem.credentials), {hint}"
        ))),
        ("az" | "abfs" | "abfss", Some(StagingCredentials::AzureSas { account_name, sas_token, account_host })) => {
            // az://container/path, abfss://container@account.dfs.core.windows.net/path
            let container = host.split_once('@').map_or(host, |(c, _)| c);
            let account_host = account_host.clone().unwrap_or_else(|| format!("{account_name}.blob.core.windows.net"));
            let azure = format!("azure://{account_host}/{container}/{}", path.trim_start_matches('/'));
            let sas = sas_token.expose().trim_start_matches('?');
            Ok(format!(
                "COPY INTO {target} FROM {} CREDENTIALS=(AZURE_SAS_TOKEN={}) {PARQUET_COPY_OPTIONS}",
                literal(&azure),
                literal(&format!("?{sas}"))
            ))
        }
        ("az" | "abfs" | "abfss", _) => Err(Error::Config(format!(
            "snowflake cannot load the staged file {url} without credentials: set the staging destination's \
             azure_storage_account_name and azure_storage_sas_token (destination.filesystem.credentials), {hint}"
        ))),
        _ => Err(Error::Config(format!(
            "snowflake loads the staged file {url} only through a named stage: set stage_name to a stage on the \
             bucket (destination.snowflake.stage_name; for GCS, a stage with a storage integration)"
        ))),
    }
}

/// A statement as logs and errors may show it: what follows `CREDENTIALS=(` up to its `)` is
/// replaced by `***`.
pub fn mask_credentials(sql: &str) -> std::borrow::Cow<'_, str> {
    let Some(start) = sql.find("CREDENTIALS=(") else { return sql.into() };
    let open = start + "CREDENTIALS=(".len();
    // the closing parenthesis outside quotes
    let (mut quoted, mut end, mut escaped) = (false, sql.len(), false);
    for (i, c) in sql[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '\'' => quoted = !quoted,
            ')' if !quoted => {
                end = open + i;
                break;
            }
            _ => {}
        }
    }
    format!("{}***{}", &sql[..open], &sql[end..]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(token: bool) -> StageOptions {
        StageOptions {
            staging_credentials: Some(StagingCredentials::Aws {
                access_key_id: "AKIA1".into(),
                secret_access_key: Secret::new("sec'ret"),
                session_token: token.then(|| Secret::new("tok")),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn job_files_load_from_their_stage_and_may_be_removed_after() {
        assert_eq!(
            copy_from_stage("\"DS\".\"T\"", "@\"DS\".\"%T\"", "t.abc.0.parquet"),
            format!("COPY INTO \"DS\".\"T\" FROM @\"DS\".\"%T\"/t.abc.0.parquet {PARQUET_COPY_OPTIONS}")
        );
        assert_eq!(remove_from_stage("@PUBLIC.S", "t.abc.0.parquet"), "REMOVE @PUBLIC.S/t.abc.0.parquet");
    }

    #[test]
    fn staged_files_load_through_a_named_stage_with_the_buckets_path_removed() {
        let opts = StageOptions {
            stage_name: Some("PUBLIC.MY_S3_STAGE".into()),
            staging_bucket_url: Some("s3://bucket/data/".into()),
            ..Default::default()
        };
        let sql = copy_from_bucket("\"DS\".\"T\"", "s3://bucket/data/ds/t/1.abc.parquet", &opts).unwrap();
        assert_eq!(
            sql,
            format!(
                "COPY INTO \"DS\".\"T\" FROM @PUBLIC.MY_S3_STAGE FILES = ('ds/t/1.abc.parquet') {PARQUET_COPY_OPTIONS}"
            )
        );
        // a GCS bucket works only so
        let gs = StageOptions { staging_bucket_url: Some("gs://b".into()), ..opts };
        let sql = copy_from_bucket("\"DS\".\"T\"", "gs://b/ds/t/x.parquet", &gs).unwrap();
        assert!(sql.contains("FILES = ('ds/t/x.parquet')"), "{sql}");
        let e = copy_from_bucket("t", "gs://b/x.parquet", &StageOptions::default()).unwrap_err().to_string();
        assert!(e.contains("stage_name"), "{e}");
    }

    #[test]
    fn s3_files_load_with_the_staging_credentials_which_logs_never_show() {
        let sql = copy_from_bucket("\"DS\".\"T\"", "s3://bucket/ds/t/x.parquet", &aws(true)).unwrap();
        assert_eq!(
            sql,
            format!(
                "COPY INTO \"DS\".\"T\" FROM 's3://bucket/ds/t/x.parquet' CREDENTIALS=(AWS_KEY_ID='AKIA1' \
                 AWS_SECRET_KEY='sec\\'ret' AWS_TOKEN='tok') {PARQUET_COPY_OPTIONS}"
            )
        );
        let masked = mask_credentials(&sql);
        assert!(!masked.contains("sec") && !masked.contains("AKIA1") && !masked.contains("tok"), "{masked}");
        assert!(masked.contains("CREDENTIALS=(***) FILE_FORMAT"), "{masked}");
        assert!(!copy_from_bucket("t", "s3://b/x", &aws(false)).unwrap().contains("AWS_TOKEN"));
        let e = copy_from_bucket("t", "s3://b/x.parquet", &StageOptions::default()).unwrap_err().to_string();
        assert!(e.contains("aws_access_key_id") && e.contains("stage_name"), "{e}");
        let e = copy_from_bucket("t", "file:///tmp/x.parquet", &aws(false)).unwrap_err().to_string();
        assert!(e.contains("local folder"), "{e}");
        assert_eq!(mask_credentials("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn azure_files_load_with_a_sas_token_from_snowflakes_url_form() {
        let opts = StageOptions {
            staging_credentials: Some(StagingCredentials::AzureSas {
                account_name: "acct".into(),
                sas_token: Secret::new("?sv=1&sig=x"),
                account_host: None,
            }),
            ..Default::default()
        };
        for url in ["az://cont/ds/t/x.parquet", "abfss://cont@acct.dfs.core.windows.net/ds/t/x.parquet"] {
            let sql = copy_from_bucket("t", url, &opts).unwrap();
            assert!(
                sql.contains(
                    "FROM 'azure://acct.blob.core.windows.net/cont/ds/t/x.parquet' CREDENTIALS=(AZURE_SAS_TOKEN='?sv=1&sig=x')"
                ),
                "{sql}"
            );
        }
    }
}
