//! Key-pair JWTs checked by an independent implementation: Python's `cryptography` (installed
//! with Snowflake's connector beside fakesnow) makes the RSA keys, then verifies the token's
//! RS256 signature and claims, computing the public key's fingerprint itself. A login with the key
//! goes through fakesnow (which accepts any credentials: the login path, not the check).

use std::process::Command;
use std::time::Duration;

use dlt_core::runtime::block_on;
use dlt_snowflake::jwt::key_pair_jwt;
use dlt_snowflake::{Client, Credentials};

fn python() -> Option<std::path::PathBuf> {
    let bin = dlt_testkit::services::installed("DLT_TEST_FAKESNOW", "fakesnow/bin/fakesnow")?;
    let py = bin.with_file_name("python");
    if py.exists() {
        Some(py)
    } else {
        dlt_testkit::services::skip_or_fail("fakesnow's Python", format!("not found at {}", py.display()));
        None
    }
}

fn run_py(py: &std::path::Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(py).arg("-c").arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const MAKE_KEY: &str = r#"
import sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
fmt = serialization.PrivateFormat.PKCS8 if sys.argv[1] == "pkcs8" else serialization.PrivateFormat.TraditionalOpenSSL
sys.stdout.write(k.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode())
"#;

const VERIFY: &str = r#"
import base64, hashlib, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
pem, token = sys.argv[1].encode(), sys.argv[2]
pub = serialization.load_pem_private_key(pem, password=None).public_key()
der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
fp = base64.b64encode(hashlib.sha256(der).digest()).decode()
h, p, s = token.split(".")
pad = lambda x: x + "=" * (-len(x) % 4)
pub.verify(base64.urlsafe_b64decode(pad(s)), f"{h}.{p}".encode(), padding.PKCS1v15(), hashes.SHA256())
print(json.dumps({"header": json.loads(base64.urlsafe_b64decode(pad(h))),
                  "claims": json.loads(base64.urlsafe_b64decode(pad(p))), "fingerprint": fp}))
"#;

#[test]
fn key_pair_tokens_verify_with_the_public_key_and_carry_snowflakes_claims() {
    let Some(py) = python() else { return };
    for form in ["pkcs8", "pkcs1"] {
        let pem = run_py(&py, MAKE_KEY, &[form]);
        let token = key_pair_jwt("xy12345.eu-central-1", "loader", &pem, false, 1_700_000_000).unwrap();
        let v: serde_json::Value = serde_json::from_str(&run_py(&py, VERIFY, &[&pem, &token])).unwrap();
        assert_eq!(v["header"], serde_json::json!({"alg": "RS256", "typ": "JWT"}), "{form}");
        let fp = v["fingerprint"].as_str().unwrap();
        assert_eq!(v["claims"]["iss"], format!("XY12345.LOADER.SHA256:{fp}"), "{form}");
        assert_eq!(v["claims"]["sub"], "XY12345.LOADER", "{form}");
        assert_eq!(v["claims"]["iat"], 1_700_000_000u64, "{form}");
        assert_eq!(v["claims"]["exp"], 1_700_003_540u64, "{form}");
    }
}

#[test]
fn a_key_pair_login_goes_through() {
    let Some(py) = python() else { return };
    let Some(server) = dlt_testkit::services::fakesnow() else { return };
    let pem = run_py(&py, MAKE_KEY, &["pkcs8"]);
    let mut f = dlt_snowflake::credentials::Fields {
        host: Some("testacct".into()),
        username: Some("loader".into()),
        database: Some("DLT_DATA".into()),
        private_key: Some(dlt_core::config::Secret::new(pem.clone())),
        ..Default::default()
    };
    f.authenticator = Some("snowflake_jwt".into());
    let opts = vec![
        ("host".to_string(), "127.0.0.1".to_string()),
        ("port".to_string(), server.port.to_string()),
        ("protocol".to_string(), "http".to_string()),
    ];
    let c = Credentials::from_fields(f, opts).unwrap();
    assert!(!format!("{c:?}").contains("PRIVATE KEY"));
    block_on(async {
        let client = Client::login(&c, None, Duration::from_secs(30)).await.unwrap();
        let r = client.query("SELECT 1").await.unwrap();
        assert_eq!(r.num_rows(), 1);
    });
}
