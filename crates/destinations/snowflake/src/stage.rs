//! Uploads to a stage's cloud storage as the `PUT` answer describes it. S3: the stage's bucket
//! and path (`location`), `region`, an optional `endPoint`, and temporary credentials (`creds`:
//! `AWS_KEY_ID`, `AWS_SECRET_KEY`, `AWS_TOKEN`); an encrypted file carries its wrapped key, IV
//! and material descriptor as the object metadata `x-amz-key`, `x-amz-iv`, `x-amz-matdesc`, the
//! names Snowflake's drivers use.

use dlt_core::error::{Error, Result};
use object_store::aws::AmazonS3Builder;
use object_store::{Attribute, AttributeValue, Attributes, ObjectStore, PutOptions, PutPayload};
use serde_json::Value;

use crate::encrypt::Encrypted;

fn bad(m: String) -> Error {
    Error::Destination { destination: "snowflake".into(), message: m, transient: false }
}

/// Upload `name` (the file's bytes, or its encrypted form) into the S3 stage `info` describes.
pub async fn put_s3(info: &Value, name: &str, data: Vec<u8>, encrypted: Option<Encrypted>) -> Result<()> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let location = text(info.get("location")).ok_or_else(|| bad("the S3 stage has no location".into()))?;
    let (bucket, prefix) = location.split_once('/').unwrap_or((location.as_str(), ""));
    let creds = info.get("creds").cloned().unwrap_or(Value::Null);
    let key_id = text(creds.get("AWS_KEY_ID")).ok_or_else(|| bad("the S3 stage has no AWS_KEY_ID".into()))?;
    let secret = text(creds.get("AWS_SECRET_KEY")).ok_or_else(|| bad("the S3 stage has no AWS_SECRET_KEY".into()))?;
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_access_key_id(key_id)
        .with_secret_access_key(secret)
        .with_region(text(info.get("region")).unwrap_or_else(|| "us-east-1".into()));
    if let Some(t) = text(creds.get("AWS_TOKEN")) {
        b = b.with_token(t);
    }
    if let Some(e) = text(info.get("endPoint")) {
        let url = if e.contains("://") { e } else { format!("https://{e}") };
        b = b.with_allow_http(url.starts_with("http://")).with_endpoint(url);
    }
    let store = b.build().map_err(|e| bad(format!("the S3 stage: {e}")))?;
    let key = format!(
        "{}{name}",
        if prefix.is_empty() || prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") }
    );
    let (body, attributes) = match encrypted {
        Some(e) => {
            let attrs: Attributes = [
                (Attribute::Metadata("x-amz-key".into()), AttributeValue::from(e.key.clone())),
                (Attribute::Metadata("x-amz-iv".into()), AttributeValue::from(e.iv.clone())),
                (Attribute::Metadata("x-amz-matdesc".into()), AttributeValue::from(e.matdesc.clone())),
            ]
            .into_iter()
            .collect();
            (e.body, attrs)
        }
        None => (data, Attributes::new()),
    };
    let opts = PutOptions { attributes, ..Default::default() };
    store.put_opts(&object_store::path::Path::from(key.as_str()), PutPayload::from(body), opts).await.map_err(|e| {
        Error::Destination {
            destination: "snowflake".into(),
            message: format!("uploading to s3://{bucket}/{key}: {e}"),
            transient: !matches!(
                e,
                object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
            ),
        }
    })?;
    Ok(())
}
