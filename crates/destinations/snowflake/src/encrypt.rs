//! Client-side encryption of files uploaded to an internal stage, as Snowflake's drivers do it:
//! the file is encrypted with AES-CBC (PKCS#7 padding) under a random file key and IV; the file
//! key is wrapped with AES-ECB under the stage's `queryStageMasterKey` from the `PUT` answer.
//! The wrapped key, the IV and the material descriptor travel as object metadata, from which
//! Snowflake decrypts the file when it is copied.

use base64::Engine as _;
use dlt_core::error::{Error, Result};
use serde_json::Value;

/// The `encryptionMaterial` of a `PUT` answer (the first one when it is a list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    /// The stage master key, base64 (16 or 32 bytes).
    pub query_stage_master_key: String,
    /// The query id the material belongs to.
    pub query_id: String,
    /// The master key's id.
    pub smk_id: String,
}

impl Material {
    /// From the `PUT` answer's `encryptionMaterial` (an object, or a list of them); `None` when
    /// the stage does not encrypt.
    pub fn from_answer(v: Option<&Value>) -> Option<Material> {
        let m = match v? {
            Value::Array(a) => a.first()?,
            Value::Null => return None,
            other => other,
        };
        let text = |k: &str| match m.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Some(Material {
            query_stage_master_key: text("queryStageMasterKey")?,
            query_id: text("queryId").unwrap_or_default(),
            smk_id: text("smkId").unwrap_or_default(),
        })
    }
}

/// An encrypted file and what Snowflake needs to decrypt it.
#[derive(Debug, Clone)]
pub struct Encrypted {
    /// The encrypted bytes.
    pub body: Vec<u8>,
    /// The wrapped file key, base64.
    pub key: String,
    /// The IV, base64.
    pub iv: String,
    /// The material descriptor: `{"queryId":…,"smkId":"…","keySize":"256"}`.
    pub matdesc: String,
}

fn crypto_error(what: &str) -> Error {
    Error::Destination {
        destination: "snowflake".into(),
        message: format!("encrypting the file: {what}"),
        transient: false,
    }
}

/// Encrypt `data` for a stage with `material`.
pub fn encrypt(material: &Material, data: &[u8]) -> Result<Encrypted> {
    use aws_lc_rs::cipher::{AES_128, AES_256, EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey};
    use ring::rand::SecureRandom;
    let b64 = base64::engine::general_purpose::STANDARD;
    let master = b64
        .decode(&material.query_stage_master_key)
        .map_err(|e| crypto_error(&format!("the stage master key is not base64: {e}")))?;
    let algorithm = match master.len() {
        16 => &AES_128,
        32 => &AES_256,
        n => return Err(crypto_error(&format!("a stage master key of {n} bytes (expected 16 or 32)"))),
    };
    let rng = ring::rand::SystemRandom::new();
    let mut file_key = vec![0u8; master.len()];
    let mut iv = [0u8; 16];
    rng.fill(&mut file_key).map_err(|_| crypto_error("no random key"))?;
    rng.fill(&mut iv).map_err(|_| crypto_error("no random IV"))?;
    let content_key = UnboundCipherKey::new(algorithm, &file_key).map_err(|_| crypto_error("the file key"))?;
    let mut body = data.to_vec();
    PaddedBlockEncryptingKey::cbc_pkcs7(content_key)
        .and_then(|k| k.less_safe_encrypt(&mut body, EncryptionContext::Iv128(iv.into())))
        .map_err(|_| crypto_error("AES-CBC failed"))?;
    let wrapping_key = UnboundCipherKey::new(algorithm, &master).map_err(|_| crypto_error("the master key"))?;
    let mut wrapped = file_key.clone();
    PaddedBlockEncryptingKey::ecb_pkcs7(wrapping_key)
        .and_then(|k| k.less_safe_encrypt(&mut wrapped, EncryptionContext::None))
        .map_err(|_| crypto_error("wrapping the file key failed"))?;
    let matdesc = serde_json::json!({
        "queryId": material.query_id,
        "smkId": material.smk_id,
        "keySize": (master.len() * 8).to_string(),
    })
    .to_string();
    Ok(Encrypted { body, key: b64.encode(wrapped), iv: b64.encode(iv), matdesc })
}

/// The metadata headers of an encrypted upload to a GCS stage.
pub fn gcs_headers(e: &Encrypted) -> Vec<(String, String)> {
    let data = serde_json::json!({
        "EncryptionMode": "FullBlob",
        "WrappedContentKey": {"KeyId": "symmKey1", "EncryptedKey": e.key, "Algorithm": "AES_CBC_256"},
        "EncryptionAgent": {"Protocol": "1.0", "EncryptionAlgorithm": "AES_CBC_256"},
        "ContentEncryptionIV": e.iv,
        "KeyWrappingMetadata": {"EncryptionLibrary": "Java 5.3.0"},
    });
    vec![("x-goog-meta-encryptiondata".into(), data.to_string()), ("x-goog-meta-matdesc".into(), e.matdesc.clone())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_comes_from_an_object_or_a_list_and_sizes_are_checked() {
        let v = serde_json::json!([{"queryStageMasterKey": "AAAA", "queryId": "q", "smkId": 42}]);
        let m = Material::from_answer(Some(&v)).unwrap();
        assert_eq!((m.query_id.as_str(), m.smk_id.as_str()), ("q", "42"));
        assert!(Material::from_answer(Some(&Value::Null)).is_none());
        let e = encrypt(&m, b"x").unwrap_err().to_string();
        assert!(e.contains("3 bytes"), "{e}");
        let m = Material { query_stage_master_key: base64::engine::general_purpose::STANDARD.encode([7u8; 32]), ..m };
        let out = encrypt(&m, &[1u8; 16]).unwrap();
        // a full block of padding after a whole block, a 48-byte wrapped key
        assert_eq!(out.body.len(), 32);
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(&out.key).unwrap().len(), 48);
        assert!(out.matdesc.contains("\"keySize\":\"256\""), "{}", out.matdesc);
    }
}
