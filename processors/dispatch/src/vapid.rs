//! VAPID (RFC 8292): one ES256-signed JWT per push-service origin, reused
//! until it is within [`REFRESH_BEFORE`] of its expiry, so a campaign signs
//! a handful of JWTs instead of one per message.

use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use pushflow_runtime::component::ConfigError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::DispatchError;

/// A JWT is re-signed when less than this is left of its life.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(3600);

/// The application server's VAPID key pair.
pub struct VapidKey {
    pair: EcdsaKeyPair,
    /// Uncompressed public key, base64url (the `k=` parameter and the
    /// `applicationServerKey` browsers subscribe with).
    pub public_b64: String,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.public_b64)
            .finish()
    }
}

impl VapidKey {
    /// From a raw P-256 private scalar, base64url (`PUSHFLOW_VAPID_PRIVATE_KEY`).
    pub fn from_base64url(raw: &str) -> Result<VapidKey, DispatchError> {
        let bad = |m: String| DispatchError::Config(format!("VAPID private key: {m}"));
        let scalar = B64
            .decode(raw.trim().trim_end_matches('='))
            .map_err(|e| bad(format!("not base64url: {e}")))?;
        let private = aws_lc_rs::agreement::PrivateKey::from_private_key(
            &aws_lc_rs::agreement::ECDH_P256,
            &scalar,
        )
        .map_err(|e| bad(format!("not a 32-byte P-256 scalar ({e})")))?;
        let public = private
            .compute_public_key()
            .map_err(|_| bad("cannot derive the public key".into()))?;
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &scalar,
            public.as_ref(),
        )
        .map_err(|e| bad(e.to_string()))?;
        Ok(VapidKey::wrap(pair))
    }

    /// From a PEM file (SEC1 `EC PRIVATE KEY` or PKCS#8 `PRIVATE KEY`).
    pub fn from_pem(text: &str) -> Result<VapidKey, DispatchError> {
        let b64: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        let der = STANDARD
            .decode(b64)
            .map_err(|e| DispatchError::Config(format!("VAPID PEM: not base64: {e}")))?;
        let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|e| {
                DispatchError::Config(format!("VAPID PEM: not a P-256 private key ({e})"))
            })?;
        Ok(VapidKey::wrap(pair))
    }

    /// A fresh key pair.
    pub fn generate() -> VapidKey {
        VapidKey::wrap(
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation"),
        )
    }

    fn wrap(pair: EcdsaKeyPair) -> VapidKey {
        let public_b64 = B64.encode(pair.public_key().as_ref());
        VapidKey { pair, public_b64 }
    }

    /// The raw private scalar, base64url (what `PUSHFLOW_VAPID_PRIVATE_KEY` takes).
    pub fn private_b64(&self) -> String {
        let bin = self
            .pair
            .private_key()
            .as_be_bytes()
            .expect("private key bytes");
        B64.encode(bin.as_ref())
    }

    /// Signs a JWT for `aud` valid until `exp` (Unix seconds).
    pub fn sign_jwt(&self, aud: &str, sub: &str, exp: i64) -> Result<String, DispatchError> {
        let header = B64.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims =
            B64.encode(serde_json::json!({"aud": aud, "exp": exp, "sub": sub}).to_string());
        let signing_input = format!("{header}.{claims}");
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| DispatchError::Crypto("ES256 signing failed".into()))?;
        Ok(format!("{signing_input}.{}", B64.encode(sig.as_ref())))
    }
}

/// The variable holding the private key: base64url raw P-256 scalar.
pub const PRIVATE_KEY_VAR: &str = "PUSHFLOW_VAPID_PRIVATE_KEY";
/// The variable naming a file that holds what [`PRIVATE_KEY_VAR`] would
/// (a Docker volume or secret), read at every start so the key pair, and
/// with it every browser's subscription, survives restarts.
pub const PRIVATE_KEY_FILE_VAR: &str = "PUSHFLOW_VAPID_PRIVATE_KEY_FILE";

/// The private key the environment configures: [`PRIVATE_KEY_VAR`], or
/// the file [`PRIVATE_KEY_FILE_VAR`] names (not both; empty counts as
/// unset); `None` when neither is set. The error names the variable.
pub fn key_from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<VapidKey>, ConfigError> {
    let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let fail = |var: &str, m: String| ConfigError::new(var, m);
    match (set(PRIVATE_KEY_VAR), set(PRIVATE_KEY_FILE_VAR)) {
        (Some(_), Some(_)) => Err(fail(
            PRIVATE_KEY_VAR,
            format!("set {PRIVATE_KEY_VAR} or {PRIVATE_KEY_FILE_VAR}, not both"),
        )),
        (Some(raw), None) => VapidKey::from_base64url(&raw)
            .map(Some)
            .map_err(|e| fail(PRIVATE_KEY_VAR, e.to_string())),
        (None, Some(path)) => {
            let path = path.trim();
            let raw = std::fs::read_to_string(path)
                .map_err(|e| fail(PRIVATE_KEY_FILE_VAR, format!("cannot read {path}: {e}")))?;
            VapidKey::from_base64url(&raw)
                .map(Some)
                .map_err(|e| fail(PRIVATE_KEY_FILE_VAR, format!("{path}: {e}")))
        }
        (None, None) => Ok(None),
    }
}

/// Per origin: the `Authorization` header and its JWT's expiry (Unix seconds).
type Headers = HashMap<String, (Arc<str>, i64)>;

/// The `Authorization` header for each origin, re-signed near expiry.
#[derive(Clone)]
pub struct VapidCache {
    key: Arc<VapidKey>,
    subject: String,
    lifetime: Duration,
    headers: Arc<Mutex<Headers>>,
}

impl VapidCache {
    /// JWTs of `lifetime` (≤ 24 h) with `sub` = `subject`.
    pub fn new(key: Arc<VapidKey>, subject: &str, lifetime: Duration) -> VapidCache {
        VapidCache {
            key,
            subject: subject.to_string(),
            lifetime: lifetime.min(Duration::from_secs(24 * 3600)),
            headers: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The key.
    pub fn key(&self) -> &VapidKey {
        &self.key
    }

    /// `vapid t=<jwt>, k=<key>` for `origin` at `now` (Unix seconds).
    pub fn header(&self, origin: &str, now: i64) -> Result<Arc<str>, DispatchError> {
        if let Some((h, exp)) = self.headers.lock().unwrap().get(origin) {
            if *exp - REFRESH_BEFORE.as_secs() as i64 > now {
                return Ok(h.clone());
            }
        }
        let exp = now + self.lifetime.as_secs() as i64;
        let jwt = self.key.sign_jwt(origin, &self.subject, exp)?;
        let h: Arc<str> = format!("vapid t={jwt}, k={}", self.key.public_b64).into();
        metrics::counter!("pushflow_dispatch_vapid_signatures_total").increment(1);
        self.headers
            .lock()
            .unwrap()
            .insert(origin.to_string(), (h.clone(), exp));
        Ok(h)
    }
}

/// The origin of an endpoint URL, with a non-default port kept
/// (`https://push.example:8443`), as the JWT's `aud` must be.
pub fn origin_of(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_one_jwt_per_origin_until_near_expiry() {
        let cache = VapidCache::new(
            Arc::new(VapidKey::generate()),
            "mailto:ops@example.com",
            Duration::from_secs(12 * 3600),
        );
        let a1 = cache.header("http://127.0.0.1:8090", 1_000).unwrap();
        let a2 = cache.header("http://127.0.0.1:8090", 2_000).unwrap();
        let b = cache.header("https://fcm.googleapis.com", 2_000).unwrap();
        assert!(Arc::ptr_eq(&a1, &a2));
        assert_ne!(a1, b);
        let later = cache
            .header("http://127.0.0.1:8090", 1_000 + 12 * 3600 - 100)
            .unwrap();
        assert_ne!(a1, later, "re-signed within an hour of expiry");
    }

    #[test]
    fn reads_a_pkcs8_pem() {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(doc.as_ref())
        );
        let k = VapidKey::from_pem(&pem).unwrap();
        assert_eq!(
            VapidKey::from_base64url(&k.private_b64())
                .unwrap()
                .public_b64,
            k.public_b64
        );
        assert!(
            VapidKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .is_err()
        );
    }

    #[test]
    fn the_key_comes_from_the_variable_or_the_file_it_names() {
        let k = VapidKey::generate();
        let path = std::env::temp_dir().join(format!("pushflow-vapid-{}", std::process::id()));
        std::fs::write(&path, format!("{}\n", k.private_b64())).unwrap();
        let path = path.to_str().unwrap().to_string();
        let env = |pairs: Vec<(&'static str, String)>| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
            }
        };
        let from_file = key_from_env(env(vec![(PRIVATE_KEY_FILE_VAR, path.clone())]))
            .unwrap()
            .unwrap();
        assert_eq!(from_file.public_b64, k.public_b64, "the same key pair");
        let from_var = key_from_env(env(vec![(PRIVATE_KEY_VAR, k.private_b64())]))
            .unwrap()
            .unwrap();
        assert_eq!(from_var.public_b64, k.public_b64);
        // Unset or empty: none configured (dispatch then makes a fresh one).
        assert!(key_from_env(env(vec![])).unwrap().is_none());
        assert!(key_from_env(env(vec![(PRIVATE_KEY_FILE_VAR, " ".into())]))
            .unwrap()
            .is_none());
        // Mistakes name the variable.
        let both = key_from_env(env(vec![
            (PRIVATE_KEY_VAR, k.private_b64()),
            (PRIVATE_KEY_FILE_VAR, path.clone()),
        ]))
        .unwrap_err();
        assert!(both.message.contains("not both"), "{both:?}");
        let missing =
            key_from_env(env(vec![(PRIVATE_KEY_FILE_VAR, format!("{path}.absent"))])).unwrap_err();
        assert_eq!(missing.field, PRIVATE_KEY_FILE_VAR);
        assert!(missing.message.contains("cannot read"), "{missing:?}");
        std::fs::write(&path, "not a key").unwrap();
        let bad = key_from_env(env(vec![(PRIVATE_KEY_FILE_VAR, path.clone())])).unwrap_err();
        assert_eq!(bad.field, PRIVATE_KEY_FILE_VAR);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn keys_round_trip_and_origins_keep_ports() {
        let k = VapidKey::generate();
        let back = VapidKey::from_base64url(&k.private_b64()).unwrap();
        assert_eq!(k.public_b64, back.public_b64);
        assert!(VapidKey::from_base64url("abc").is_err());
        let u = reqwest::Url::parse("http://127.0.0.1:8090/push/x").unwrap();
        assert_eq!(origin_of(&u), "http://127.0.0.1:8090");
        let u = reqwest::Url::parse("https://push.example:443/x").unwrap();
        assert_eq!(origin_of(&u), "https://push.example");
    }
}
