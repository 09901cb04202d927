//! Pipeline state: the local `state.json` and the `_dlt_pipeline_state` encoding.

use std::io::{Read, Write};

use base64::Engine;
use serde_json::{Map, Value, json};
use sha3::Digest;

use crate::error::{Error, Result};
use crate::schema::to_sorted_json;

/// State engine version dlt 1.31 writes.
pub const STATE_ENGINE_VERSION: u64 = 4;

/// The pipeline state document (dlt's keys).
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineState(pub Map<String, Value>);

impl PipelineState {
    /// A fresh state for a pipeline.
    pub fn new(pipeline_name: &str) -> Self {
        let mut m = Map::new();
        m.insert("_state_version".into(), json!(0));
        m.insert("_state_engine_version".into(), json!(STATE_ENGINE_VERSION));
        m.insert("_local".into(), json!({"first_run": true, "_dev_mode": false}));
        m.insert("pipeline_name".into(), json!(pipeline_name));
        m.insert("_version_hash".into(), json!(""));
        PipelineState(m)
    }

    /// Parse `state.json`.
    pub fn from_json(s: &str) -> Result<Self> {
        match serde_json::from_str(s)? {
            Value::Object(m) => Ok(PipelineState(m)),
            _ => Err(Error::Pipeline("state.json is not an object".into())),
        }
    }

    /// Serialize for `state.json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&Value::Object(self.0.clone())).unwrap_or_default()
    }

    /// Set a top-level key.
    pub fn set(&mut self, key: &str, v: Value) {
        self.0.insert(key.to_string(), v);
    }

    /// A top-level key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The `_local` section.
    pub fn local_mut(&mut self) -> &mut Map<String, Value> {
        let e = self.0.entry("_local").or_insert_with(|| json!({}));
        if !e.is_object() {
            *e = json!({});
        }
        e.as_object_mut().expect("object")
    }

    /// The state of a source (`sources.<name>`), created on demand.
    pub fn source_state_mut(&mut self, source: &str) -> &mut Map<String, Value> {
        let sources = self.0.entry("sources").or_insert_with(|| json!({}));
        if !sources.is_object() {
            *sources = json!({});
        }
        let s = sources.as_object_mut().expect("object").entry(source.to_string()).or_insert_with(|| json!({}));
        if !s.is_object() {
            *s = json!({});
        }
        s.as_object_mut().expect("object")
    }

    /// The state without `_local`, as stored in the destination.
    pub fn without_local(&self) -> Map<String, Value> {
        let mut m = self.0.clone();
        m.shift_remove("_local");
        m
    }

    /// dlt's `_version_hash`: SHA3-256 of the sorted compact JSON without version fields and `_local`.
    pub fn compute_hash(&self) -> String {
        let mut m = self.0.clone();
        for k in ["_state_version", "_state_engine_version", "_version_hash", "_local"] {
            m.shift_remove(k);
        }
        let mut h = sha3::Sha3_256::new();
        h.update(to_sorted_json(&Value::Object(m)).as_bytes());
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    }

    /// Stored hash.
    pub fn version_hash(&self) -> &str {
        self.0.get("_version_hash").and_then(Value::as_str).unwrap_or("")
    }

    /// Stored state version.
    pub fn version(&self) -> i64 {
        self.0.get("_state_version").and_then(Value::as_i64).unwrap_or(0)
    }

    /// Recompute the hash and bump the version if the content changed. Returns whether it did.
    pub fn bump_version(&mut self) -> bool {
        let h = self.compute_hash();
        if h != self.version_hash() {
            let v = self.version() + 1;
            self.0.insert("_state_version".into(), json!(v));
            self.0.insert("_version_hash".into(), json!(h));
            true
        } else {
            false
        }
    }

    /// `base64(zlib(compact JSON without _local))`, as `_dlt_pipeline_state.state` holds it.
    pub fn encode_for_destination(&self) -> String {
        let json = serde_json::to_string(&Value::Object(self.without_local())).unwrap_or_default();
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(json.as_bytes()).expect("in-memory write");
        let bytes = enc.finish().expect("in-memory write");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Decode a `_dlt_pipeline_state.state` value.
    pub fn decode_from_destination(s: &str) -> Result<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| Error::Pipeline(format!("stored state is not base64: {e}")))?;
        let mut dec = flate2::read::ZlibDecoder::new(&bytes[..]);
        let mut json = String::new();
        dec.read_to_string(&mut json).map_err(|e| Error::Pipeline(format!("stored state is not zlib: {e}")))?;
        Self::from_json(&json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_roundtrip_and_hash() {
        let mut s = PipelineState::new("p");
        assert!(s.bump_version());
        assert!(!s.bump_version());
        s.local_mut().insert("x".into(), json!(1));
        assert!(!s.bump_version(), "_local does not count");
        s.source_state_mut("src").insert("k".into(), json!("v"));
        assert!(s.bump_version());
        let enc = s.encode_for_destination();
        assert!(enc.starts_with("eN"));
        let back = PipelineState::decode_from_destination(&enc).unwrap();
        assert!(back.get("_local").is_none());
        assert_eq!(back.compute_hash(), s.compute_hash());
    }
}
