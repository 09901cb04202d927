//! Configuration and secrets, resolved as dlt resolves them:
//! environment variables > `.dlt/secrets.toml` > `.dlt/config.toml` (run dir, then the global dir)
//! > values given in code.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A secret string: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret value. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// An environment variable.
    Env,
    /// A `secrets.toml` file.
    SecretsToml(PathBuf),
    /// A `config.toml` file.
    ConfigToml(PathBuf),
}

/// A resolved value.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    /// From an environment variable (always a string).
    Str(String),
    /// From a TOML file.
    Toml(toml::Value),
}

impl ConfigValue {
    /// As a string (TOML scalars rendered; tables and arrays as TOML text).
    pub fn as_string(&self) -> String {
        match self {
            ConfigValue::Str(s) => s.clone(),
            ConfigValue::Toml(toml::Value::String(s)) => s.clone(),
            ConfigValue::Toml(v) => v.to_string(),
        }
    }

    /// As a bool (`true/false/1/0/yes/no`).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ConfigValue::Toml(toml::Value::Boolean(b)) => Some(*b),
            other => match other.as_string().trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "y" | "on" => Some(true),
                "false" | "0" | "no" | "n" | "off" => Some(false),
                _ => None,
            },
        }
    }

    /// As an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ConfigValue::Toml(toml::Value::Integer(i)) => Some(*i),
            other => other.as_string().trim().parse().ok(),
        }
    }
}

/// A value that was resolved: its key and provider (never the value).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resolved {
    /// Dotted key path that matched (`destination.duckdb.credentials`).
    pub key: String,
    /// `environment`, or the toml file it came from.
    pub provider: String,
}

/// The configuration providers of a run. `Debug` shows where values come from, never values.
#[derive(Clone, Default)]
pub struct Config {
    env: Vec<(String, String)>,
    secrets: Vec<(PathBuf, toml::Table)>,
    configs: Vec<(PathBuf, toml::Table)>,
    /// The active pipeline name (keys prefixed with it are tried first).
    pub pipeline_name: Option<String>,
    resolved: std::sync::Arc<std::sync::Mutex<Vec<Resolved>>>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("env_vars", &self.env.len())
            .field("secrets_files", &self.secrets.iter().map(|(p, _)| p).collect::<Vec<_>>())
            .field("config_files", &self.configs.iter().map(|(p, _)| p).collect::<Vec<_>>())
            .field("pipeline_name", &self.pipeline_name)
            .finish()
    }
}

fn read_toml(path: &Path) -> Result<Option<toml::Table>> {
    match std::fs::read_to_string(path) {
        Ok(s) => s
            .parse::<toml::Table>()
            .map(Some)
            .map_err(|e| Error::Config(format!("cannot parse {}: {}", path.display(), e.message()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

impl Config {
    /// Providers from the process environment, `<run_dir>/.dlt/` and the global dir.
    pub fn load(run_dir: &Path, global_dir: Option<&Path>) -> Result<Config> {
        let mut cfg = Config { env: std::env::vars().collect(), ..Default::default() };
        cfg.resolved = Default::default();
        let mut dirs = vec![run_dir.join(".dlt")];
        if let Some(g) = global_dir {
            dirs.push(g.to_path_buf());
        }
        for d in dirs {
            let s = d.join("secrets.toml");
            if let Some(t) = read_toml(&s)? {
                cfg.secrets.push((s, t));
            }
            let c = d.join("config.toml");
            if let Some(t) = read_toml(&c)? {
                cfg.configs.push((c, t));
            }
        }
        Ok(cfg)
    }

    /// Providers from explicit values only (tests).
    pub fn from_parts(env: Vec<(String, String)>, secrets: Option<toml::Table>, config: Option<toml::Table>) -> Config {
        Config {
            env,
            secrets: secrets.map(|t| vec![(PathBuf::from("secrets.toml"), t)]).unwrap_or_default(),
            configs: config.map(|t| vec![(PathBuf::from("config.toml"), t)]).unwrap_or_default(),
            pipeline_name: None,
            resolved: Default::default(),
        }
    }

    /// The keys resolved so far and their providers (for traces; values are never kept).
    pub fn resolved(&self) -> Vec<Resolved> {
        self.resolved.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn record(&self, path: &[String], provider: &Provider) {
        let provider = match provider {
            Provider::Env => "environment".to_string(),
            Provider::SecretsToml(p) | Provider::ConfigToml(p) => p.display().to_string(),
        };
        let key = path.join(".");
        if let Ok(mut r) = self.resolved.lock()
            && !r.iter().any(|x| x.key == key && x.provider == provider)
        {
            r.push(Resolved { key, provider });
        }
    }

    /// Set the pipeline context.
    pub fn with_pipeline(mut self, name: &str) -> Self {
        self.pipeline_name = Some(name.to_string());
        self
    }

    fn env_get(&self, path: &[&str]) -> Option<String> {
        let key = path.iter().map(|p| p.to_uppercase()).collect::<Vec<_>>().join("__");
        self.env.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    }

    fn toml_get(table: &toml::Table, path: &[&str]) -> Option<toml::Value> {
        Self::toml_get_any(table, path).filter(|v| !v.as_str().is_some_and(is_placeholder))
    }

    fn toml_get_any(table: &toml::Table, path: &[&str]) -> Option<toml::Value> {
        let (last, init) = path.split_last()?;
        let mut cur = table;
        for p in init {
            cur = cur.get(*p)?.as_table()?;
        }
        cur.get(*last).cloned()
    }

    /// Where `key` under `sections` is still a template placeholder such as `<configure me>`
    /// (which, as in dlt, counts as not set): `file [section] key`, for error messages.
    pub fn placeholder(&self, sections: &[&str], key: &[&str]) -> Option<String> {
        let paths = self.candidate_paths(sections, key);
        for (file, t) in self.secrets.iter().chain(&self.configs) {
            for p in &paths {
                let refs: Vec<&str> = p.iter().map(String::as_str).collect();
                if let Some(v) = Self::toml_get_any(t, &refs)
                    && v.as_str().is_some_and(is_placeholder)
                {
                    let (last, init) = p.split_last()?;
                    return Some(format!("{} [{}] {last}", file.display(), init.join(".")));
                }
            }
        }
        None
    }

    /// Where a value under `sections` would go in `.dlt/secrets.toml`, for "missing" errors:
    /// `[destination.postgres.credentials]`.
    pub fn secrets_section(sections: &[&str], key: &[&str]) -> String {
        let all: Vec<&str> = sections.iter().chain(key).copied().collect();
        match all.split_last() {
            Some((last, init)) if !init.is_empty() => {
                format!("`{last}` under [{}] in .dlt/secrets.toml", init.join("."))
            }
            _ => format!("`{}` in .dlt/secrets.toml", all.join(".")),
        }
    }

    /// Candidate key paths for `key` under `sections`, most specific first, as dlt tries them:
    /// the sections are shortened from the end, first with the pipeline-name prefix, then without.
    pub fn candidate_paths(&self, sections: &[&str], key: &[&str]) -> Vec<Vec<String>> {
        let mut out = vec![];
        let mut prefixes: Vec<Option<&str>> = vec![];
        if let Some(p) = &self.pipeline_name {
            prefixes.push(Some(p.as_str()));
        }
        prefixes.push(None);
        for prefix in prefixes {
            for n in (0..=sections.len()).rev() {
                let mut path: Vec<String> = vec![];
                if let Some(p) = prefix {
                    path.push(p.to_string());
                }
                path.extend(sections[..n].iter().map(|s| s.to_string()));
                path.extend(key.iter().map(|s| s.to_string()));
                out.push(path);
            }
        }
        out
    }

    /// Resolve `key` under `sections` through all providers; returns the value and its provider.
    pub fn resolve(&self, sections: &[&str], key: &[&str]) -> Option<(ConfigValue, Provider)> {
        let paths = self.candidate_paths(sections, key);
        for p in &paths {
            let refs: Vec<&str> = p.iter().map(String::as_str).collect();
            if let Some(v) = self.env_get(&refs) {
                self.record(p, &Provider::Env);
                return Some((ConfigValue::Str(v), Provider::Env));
            }
        }
        for (file, t) in &self.secrets {
            for p in &paths {
                let refs: Vec<&str> = p.iter().map(String::as_str).collect();
                if let Some(v) = Self::toml_get(t, &refs) {
                    let prov = Provider::SecretsToml(file.clone());
                    self.record(p, &prov);
                    return Some((ConfigValue::Toml(v), prov));
                }
            }
        }
        for (file, t) in &self.configs {
            for p in &paths {
                let refs: Vec<&str> = p.iter().map(String::as_str).collect();
                if let Some(v) = Self::toml_get(t, &refs) {
                    let prov = Provider::ConfigToml(file.clone());
                    self.record(p, &prov);
                    return Some((ConfigValue::Toml(v), prov));
                }
            }
        }
        None
    }

    /// Resolve a single value.
    pub fn get(&self, sections: &[&str], key: &str) -> Option<ConfigValue> {
        self.resolve(sections, &[key]).map(|(v, _)| v)
    }

    /// Resolve a secret value.
    pub fn secret(&self, sections: &[&str], key: &str) -> Option<Secret> {
        self.get(sections, key).map(|v| Secret::new(v.as_string()))
    }

    /// A human-readable list of the env names tried for a key (for "missing value" errors).
    pub fn tried_env_names(&self, sections: &[&str], key: &[&str]) -> Vec<String> {
        self.candidate_paths(sections, key)
            .into_iter()
            .map(|p| p.iter().map(|s| s.to_uppercase()).collect::<Vec<_>>().join("__"))
            .collect()
    }
}

/// A value left as the template placeholder `"<configure me>"` (as `dlt init` writes it): as in
/// dlt, it counts as not set.
pub fn is_placeholder(v: &str) -> bool {
    v.trim().eq_ignore_ascii_case("<configure me>")
}

/// Mask the password of a URL-like connection string (`scheme://user:pass@host` → `scheme://user:***@host`).
pub fn mask_url(url: &str) -> String {
    if !url.contains("://") && url.contains('=') {
        return mask_key_values(url);
    }
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        // the user info ends at the last `@` before the query: a password may hold `@` or `/`
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!("{}://{}:***@{}", &url[..scheme_end], &userinfo[..colon], &rest[at + 1..]);
            }
        }
    }
    url.to_string()
}

/// libpq's `key=value` connection string with the password's value (quoted or not) masked.
fn mask_key_values(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("password") {
        let (before, after) = rest.split_at(i);
        out.push_str(before);
        let after_key = &after["password".len()..];
        let trimmed = after_key.trim_start();
        let at_word_start = before.is_empty() || before.ends_with(char::is_whitespace);
        if !at_word_start || !trimmed.starts_with('=') {
            out.push_str("password");
            rest = after_key;
            continue;
        }
        out.push_str("password=***");
        let value = trimmed[1..].trim_start();
        // the value ends at the closing quote (backslash escapes) or at whitespace
        let end = if let Some(q) = value.strip_prefix('\'') {
            let mut esc = false;
            q.char_indices()
                .find(|&(_, c)| {
                    let close = c == '\'' && !esc;
                    esc = c == '\\' && !esc;
                    close
                })
                .map_or(value.len(), |(j, _)| j + 2)
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_credentials_mask_the_password() {
        assert_eq!(mask_url("host=h password=s3cret user=u"), "host=h password=*** user=u");
        assert_eq!(mask_url("host=h password = 'a b\\' c' port=1"), "host=h password=*** port=1");
        assert_eq!(mask_url("password=x"), "password=***");
        assert_eq!(mask_url("host=h mypassword=x"), "host=h mypassword=x");
    }

    #[test]
    fn masked_urls_hide_the_whole_password() {
        assert_eq!(mask_url("postgresql://u:p@ss/w@rd@h:5432/db?x=a@b"), "postgresql://u:***@h:5432/db?x=a@b");
        assert_eq!(mask_url("postgresql://u:secret@h/db"), "postgresql://u:***@h/db");
        assert_eq!(mask_url("postgresql://u@h/db"), "postgresql://u@h/db");
        assert_eq!(mask_url("duckdb:///x.duckdb"), "duckdb:///x.duckdb");
    }

    #[test]
    fn order_env_then_secrets_then_config() {
        let secrets: toml::Table = "[destination.postgres.credentials]\npassword = \"from-secrets\"\n".parse().unwrap();
        let config: toml::Table =
            "[destination.postgres.credentials]\npassword = \"from-config\"\nhost = \"h\"\n".parse().unwrap();
        let cfg = Config::from_parts(vec![], Some(secrets.clone()), Some(config.clone()));
        let v = cfg.resolve(&["destination", "postgres"], &["credentials", "password"]).unwrap();
        assert_eq!(v.0.as_string(), "from-secrets");
        assert!(matches!(v.1, Provider::SecretsToml(_)));
        let host = cfg.resolve(&["destination", "postgres"], &["credentials", "host"]).unwrap();
        assert_eq!(host.0.as_string(), "h");
        let cfg = Config::from_parts(
            vec![("DESTINATION__CREDENTIALS__PASSWORD".into(), "from-env".into())],
            Some(secrets),
            Some(config),
        );
        let v = cfg.resolve(&["destination", "postgres"], &["credentials", "password"]).unwrap();
        assert_eq!(v.0.as_string(), "from-env");
        assert_eq!(v.1, Provider::Env);
    }

    #[test]
    fn pipeline_prefix_first() {
        let cfg = Config::from_parts(
            vec![
                ("DESTINATION__DUCKDB__CREDENTIALS".into(), "b.duckdb".into()),
                ("P1__DESTINATION__DUCKDB__CREDENTIALS".into(), "a.duckdb".into()),
            ],
            None,
            None,
        )
        .with_pipeline("p1");
        assert_eq!(cfg.get(&["destination", "duckdb"], "credentials").unwrap().as_string(), "a.duckdb");
        let names = cfg.tried_env_names(&["destination", "postgres"], &["credentials", "password"]);
        assert_eq!(names[0], "P1__DESTINATION__POSTGRES__CREDENTIALS__PASSWORD");
        assert_eq!(names[3], "DESTINATION__POSTGRES__CREDENTIALS__PASSWORD");
        assert_eq!(names[5], "CREDENTIALS__PASSWORD");
        assert_eq!(names.len(), 6);
    }

    #[test]
    fn debug_never_shows_values() {
        let secrets: toml::Table = "[sources.x]\napi_key = \"TOPSECRET\"\n".parse().unwrap();
        let cfg = Config::from_parts(vec![("X__TOKEN".into(), "ENVSECRET".into())], Some(secrets), None);
        assert_eq!(cfg.secret(&["sources", "x"], "api_key").unwrap().expose(), "TOPSECRET");
        let dbg = format!("{cfg:?} {:?}", cfg.resolved());
        assert!(!dbg.contains("TOPSECRET") && !dbg.contains("ENVSECRET"), "{dbg}");
        assert_eq!(cfg.resolved()[0].key, "sources.x.api_key");
    }

    #[test]
    fn secret_is_masked() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(mask_url("postgresql://u:hunter2@h:5432/db"), "postgresql://u:***@h:5432/db");
    }
}
