//! The destination's configuration, resolved as dlt resolves it (env > secrets.toml >
//! config.toml > the pipeline file's `[destination]` table) under `destination.filesystem`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use dlt_core::config::{Config, ConfigValue, Secret};
use dlt_core::destination::FileFormat;

use crate::error::{FsError, FsResult};
use crate::layout::DEFAULT_LAYOUT;
use crate::storage::Credentials;

/// Settings of the filesystem destination. `Debug` never shows secrets.
#[derive(Debug, Clone)]
pub struct FilesystemConfig {
    /// Where datasets go: a local path, `file://`, `memory://`, `s3://`, `gs://`, `az://`,
    /// `abfss://`. Relative local paths resolve against `base_dir`.
    pub bucket_url: String,
    /// Folder relative local bucket paths resolve against.
    pub base_dir: PathBuf,
    /// File layout below `<bucket_url>/<dataset_name>/`.
    pub layout: String,
    /// Extra layout placeholders with fixed values.
    pub extra_placeholders: BTreeMap<String, String>,
    /// Fixed time for the date placeholders (default: the load package's creation time).
    pub current_datetime: Option<DateTime<Utc>>,
    /// Format of the data files: parquet (default), jsonl or csv.
    pub loader_file_format: FileFormat,
    /// Gzip jsonl/csv files (default true, as dlt's `data_writer.disable_compression=false`).
    pub compression: bool,
    /// State files kept per pipeline (dlt's default 100; 0 or less keeps all).
    pub max_state_files: i64,
    /// Table format: `None` (plain files) or `delta` (not available in this build).
    pub table_format: Option<String>,
    /// Credentials of the bucket.
    pub credentials: Credentials,
}

impl FilesystemConfig {
    /// A configuration for `bucket_url` with dlt's defaults (parquet files).
    pub fn new(bucket_url: impl Into<String>) -> Self {
        FilesystemConfig {
            bucket_url: bucket_url.into(),
            base_dir: std::env::current_dir().unwrap_or_default(),
            layout: DEFAULT_LAYOUT.into(),
            extra_placeholders: BTreeMap::new(),
            current_datetime: None,
            loader_file_format: FileFormat::Parquet,
            compression: true,
            max_state_files: 100,
            table_format: None,
            credentials: Credentials::default(),
        }
    }
}

const SECTIONS: &[&str] = &["destination", "filesystem"];

fn toml_str(v: &toml::Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

/// Resolve the configuration from the providers and the pipeline file's `[destination]` table.
pub fn resolve(config: &Config, explicit: Option<&toml::Table>, run_dir: &Path) -> FsResult<FilesystemConfig> {
    let get = |key: &str| -> Option<ConfigValue> {
        config.get(SECTIONS, key).or_else(|| explicit.and_then(|t| t.get(key)).cloned().map(ConfigValue::Toml))
    };
    let get_str = |key: &str| get(key).map(|v| v.as_string());
    let bucket_url = get_str("bucket_url").filter(|s| !s.trim().is_empty()).ok_or_else(|| {
        FsError::Config(format!(
            "bucket_url is missing: set one of {} (or [destination.filesystem] bucket_url in .dlt/config.toml)",
            config.tried_env_names(SECTIONS, &["bucket_url"]).join(", ")
        ))
    })?;
    let mut c = FilesystemConfig::new(bucket_url);
    c.base_dir = run_dir.to_path_buf();
    if let Some(l) = get_str("layout") {
        c.layout = l;
    }
    if let Some(v) = get("extra_placeholders") {
        c.extra_placeholders = match v {
            ConfigValue::Toml(toml::Value::Table(t)) => t.iter().map(|(k, v)| (k.clone(), toml_str(v))).collect(),
            other => {
                let s = other.as_string();
                let j: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&s).map_err(|e| {
                    FsError::Config(format!("extra_placeholders must be a table or a JSON object of strings: {e}"))
                })?;
                j.into_iter().map(|(k, v)| (k, v.as_str().map(str::to_string).unwrap_or(v.to_string()))).collect()
            }
        };
    }
    if let Some(s) = get_str("current_datetime") {
        let t = DateTime::parse_from_rfc3339(s.trim()).map_err(|e| {
            FsError::Config(format!("current_datetime `{s}` is not an ISO 8601 date-time with offset: {e}"))
        })?;
        c.current_datetime = Some(t.with_timezone(&Utc));
    }
    if let Some(f) = get_str("loader_file_format").or_else(|| get_str("file_format")) {
        c.loader_file_format = FileFormat::from_extension(f.trim()).ok_or_else(|| {
            FsError::Config(format!("loader_file_format `{f}` is not supported (parquet, jsonl or csv)"))
        })?;
    }
    // dlt: data_writer.disable_compression (also per stage, normalize.data_writer.…)
    let disable = config
        .get(&["normalize", "data_writer"], "disable_compression")
        .or_else(|| config.get(&["data_writer"], "disable_compression"))
        .and_then(|v| v.as_bool());
    if let Some(d) = disable {
        c.compression = !d;
    }
    if let Some(v) = get("compression") {
        c.compression = match v.as_string().trim().to_ascii_lowercase().as_str() {
            "gzip" | "true" | "1" | "yes" => true,
            "none" | "false" | "0" | "no" | "" => false,
            other => return Err(FsError::Config(format!("compression `{other}` is not supported (gzip or none)"))),
        };
    }
    if let Some(v) = get("max_state_files") {
        c.max_state_files = v
            .as_i64()
            .ok_or_else(|| FsError::Config(format!("max_state_files must be a number, got `{}`", v.as_string())))?;
    }
    if let Some(t) = get_str("table_format").filter(|s| !s.is_empty()) {
        c.table_format = Some(t);
    }
    c.credentials = credentials(config, explicit);
    Ok(c)
}

fn credentials(config: &Config, explicit: Option<&toml::Table>) -> Credentials {
    let explicit_creds = explicit.and_then(|t| t.get("credentials")).and_then(|v| v.as_table());
    let field = |key: &str| -> Option<String> {
        config
            .resolve(SECTIONS, &["credentials", key])
            .map(|(v, _)| v.as_string())
            .or_else(|| explicit_creds.and_then(|t| t.get(key)).map(toml_str))
            .filter(|s| !s.is_empty())
    };
    let secret = |key: &str| field(key).map(Secret::new);
    Credentials {
        aws_access_key_id: field("aws_access_key_id"),
        aws_secret_access_key: secret("aws_secret_access_key"),
        aws_session_token: secret("aws_session_token"),
        region_name: field("region_name"),
        endpoint_url: field("endpoint_url"),
        azure_storage_account_name: field("azure_storage_account_name"),
        azure_storage_account_key: secret("azure_storage_account_key"),
        azure_storage_sas_token: secret("azure_storage_sas_token"),
        azure_client_id: field("azure_client_id"),
        azure_client_secret: secret("azure_client_secret"),
        azure_tenant_id: field("azure_tenant_id"),
        project_id: field("project_id"),
        client_email: field("client_email"),
        private_key: secret("private_key"),
        private_key_id: field("private_key_id"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_beats_files_and_secrets_stay_hidden() {
        let secrets: toml::Table =
            "[destination.filesystem.credentials]\naws_access_key_id = \"AKIAFROMSECRETS\"\naws_secret_access_key = \"TOPSECRETVALUE\"\n"
                .parse()
                .unwrap();
        let cfg = Config::from_parts(
            vec![
                ("DESTINATION__FILESYSTEM__BUCKET_URL".into(), "s3://bkt/path".into()),
                ("DESTINATION__FILESYSTEM__CREDENTIALS__ENDPOINT_URL".into(), "http://127.0.0.1:9".into()),
                ("DESTINATION__FILESYSTEM__CREDENTIALS__REGION_NAME".into(), "eu-west-1".into()),
                ("DESTINATION__FILESYSTEM__LOADER_FILE_FORMAT".into(), "jsonl".into()),
                ("DATA_WRITER__DISABLE_COMPRESSION".into(), "true".into()),
                ("DESTINATION__FILESYSTEM__EXTRA_PLACEHOLDERS".into(), r#"{"env": "prod"}"#.into()),
            ],
            Some(secrets),
            None,
        );
        let c = resolve(&cfg, None, Path::new("/run")).unwrap();
        assert_eq!(c.bucket_url, "s3://bkt/path");
        assert_eq!(c.credentials.aws_access_key_id.as_deref(), Some("AKIAFROMSECRETS"));
        assert_eq!(c.credentials.aws_secret_access_key.as_ref().unwrap().expose(), "TOPSECRETVALUE");
        assert_eq!(c.credentials.endpoint_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(c.credentials.region_name.as_deref(), Some("eu-west-1"));
        assert_eq!(c.loader_file_format, FileFormat::Jsonl);
        assert!(!c.compression);
        assert_eq!(c.extra_placeholders["env"], "prod");
        assert!(!format!("{c:?}").contains("TOPSECRETVALUE"));
    }

    #[test]
    fn explicit_table_and_missing_bucket() {
        let cfg = Config::from_parts(vec![], None, None);
        let e = resolve(&cfg, None, Path::new("/run")).unwrap_err();
        assert!(e.to_string().contains("DESTINATION__FILESYSTEM__BUCKET_URL"), "{e}");
        let t: toml::Table = "bucket_url = \"data\"\nlayout = \"{table_name}/{load_id}.{file_id}.{ext}\"\nmax_state_files = 3\n[credentials]\naws_access_key_id = \"k\"\n[extra_placeholders]\nx = \"1\"\n".parse().unwrap();
        let c = resolve(&cfg, Some(&t), Path::new("/run")).unwrap();
        assert_eq!(c.bucket_url, "data");
        assert_eq!(c.max_state_files, 3);
        assert_eq!(c.extra_placeholders["x"], "1");
        assert_eq!(c.credentials.aws_access_key_id.as_deref(), Some("k"));
        assert_eq!(c.base_dir, Path::new("/run"));
    }
}
