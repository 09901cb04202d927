//! Key-pair authentication: the JWT Snowflake takes as `TOKEN` with `AUTHENTICATOR =
//! SNOWFLAKE_JWT`, signed RS256 with the user's RSA private key.
//!
//! Claims, as Snowflake documents them: `iss` = `<ACCOUNT>.<USER>.SHA256:<fingerprint>` (the
//! base64 SHA-256 of the public key's DER `SubjectPublicKeyInfo`), `sub` = `<ACCOUNT>.<USER>`,
//! `iat` and `exp` (at most an hour later). The account is upper-cased and cut at its first `.`
//! (a locator such as `xy12345.eu-central-1` names the account `XY12345`).
//!
//! Keys: PEM `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY` (PKCS#1), unencrypted. An encrypted key
//! (`ENCRYPTED PRIVATE KEY`, with `private_key_passphrase`) is refused with an error that says how
//! to decrypt it (`openssl pkcs8 -in key.p8 -out key.pem -nocrypt`); reading it needs a PBES2
//! implementation that ring does not have.

use base64::Engine as _;
use dlt_core::error::{Error, Result};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

/// How long a token is valid (Snowflake accepts at most an hour).
const LIFETIME_SECS: u64 = 3540;

fn bad(m: impl std::fmt::Display) -> Error {
    Error::Config(format!("snowflake private_key: {m}"))
}

/// The DER of the first PEM block and its label.
fn pem_der(pem: &str) -> Result<(String, Vec<u8>)> {
    let begin = pem.find("-----BEGIN ").ok_or_else(|| bad("not a PEM key (no `-----BEGIN …-----` line)"))?;
    let rest = &pem[begin + 11..];
    let label_end = rest.find("-----").ok_or_else(|| bad("a broken PEM header"))?;
    let label = rest[..label_end].to_string();
    let body_start = label_end + 5;
    let end = rest.find("-----END ").ok_or_else(|| bad(format!("no `-----END {label}-----` line")))?;
    let b64: String = rest[body_start..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| bad(format!("the PEM body: {e}")))?;
    Ok((label, der))
}

/// A DER length.
fn der_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        vec![n as u8]
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        let mut v = vec![0x80 | bytes.len() as u8];
        v.extend(bytes);
        v
    }
}

fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(der_len(body.len()));
    v.extend_from_slice(body);
    v
}

/// The `SubjectPublicKeyInfo` DER of a PKCS#1 `RSAPublicKey`.
fn spki(rsa_public_key: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }
    const ALG: &[u8] = &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    let mut bits = vec![0u8];
    bits.extend_from_slice(rsa_public_key);
    let mut body = ALG.to_vec();
    body.extend(der(0x03, &bits));
    der(0x30, &body)
}

/// The account part of a JWT claim.
fn claim_account(account: &str) -> String {
    account.split('.').next().unwrap_or(account).to_uppercase()
}

/// The key-pair JWT for `user` of `account`, issued at `now` (Unix seconds).
pub fn key_pair_jwt(account: &str, user: &str, pem: &str, encrypted_with: bool, now: u64) -> Result<String> {
    let (label, der) = pem_der(pem)?;
    let key = match label.as_str() {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der).map_err(|e| bad(format!("not an RSA PKCS#8 key: {e}")))?,
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der).map_err(|e| bad(format!("not an RSA PKCS#1 key: {e}")))?,
        "ENCRYPTED PRIVATE KEY" => {
            return Err(bad(format!(
                "the key is encrypted{}; dlt-rs reads unencrypted keys only so far: decrypt it with \
                 `openssl pkcs8 -in key.p8 -out key.pem -nocrypt` and keep the result as a secret",
                if encrypted_with { " (private_key_passphrase given)" } else { "" }
            )));
        }
        other => return Err(bad(format!("a PEM `{other}` block is not a private key"))),
    };
    let fingerprint = base64::engine::general_purpose::STANDARD
        .encode(ring::digest::digest(&ring::digest::SHA256, &spki(key.public().as_ref())));
    let sub = format!("{}.{}", claim_account(account), user.to_uppercase());
    let claims = serde_json::json!({
        "iss": format!("{sub}.SHA256:{fingerprint}"),
        "sub": sub,
        "iat": now,
        "exp": now + LIFETIME_SECS,
    });
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let signing_input = format!("{}.{}", b64(br#"{"alg":"RS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), signing_input.as_bytes(), &mut sig)
        .map_err(|_| bad("signing the token failed"))?;
    Ok(format!("{signing_input}.{}", b64(&sig)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_and_claim_accounts() {
        assert_eq!(der_len(5), vec![5]);
        assert_eq!(der_len(0x1234), vec![0x82, 0x12, 0x34]);
        assert_eq!(claim_account("xy12345.eu-central-1"), "XY12345");
        assert_eq!(claim_account("myorg-acct"), "MYORG-ACCT");
        let e = key_pair_jwt(
            "a",
            "u",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----",
            true,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("encrypted") && e.contains("openssl pkcs8"), "{e}");
        assert!(key_pair_jwt("a", "u", "no pem here", false, 0).unwrap_err().to_string().contains("not a PEM"));
    }
}
