//! Ping tokens: dispatch mints one per notification and puts it in the
//! push payload; ingest verifies it when the service worker pings back.
//! One implementation, here, so neither component depends on the other.
//!
//! Format: `v1.<kid>.<claims>.<sig>`, where `claims` is base64url JSON
//! `{"n","c","s","u","exp","iat"}` (notification, campaign, store,
//! subscriber, expiry and issue time in Unix seconds) and `sig` is base64url
//! HMAC-SHA256 over `v1.<kid>.<claims>` with the key named `kid`. Keys
//! rotate by adding a new current key while old ones still verify.
//!
//! `iat` is optional: tokens minted before it existed carry none and still
//! verify. It is the earliest moment the notification can have been shown,
//! so ingest uses it to bound the event time (`at`) a service worker
//! reports; for a token without `iat` ingest has no such bound and uses its
//! own clock instead (see `pushflow_ingest::pings`).
//!
//! Guarantee: a token whose claims or signature were changed, that is
//! signed with an unknown key, or that expired, is refused; nothing else is
//! (replays are harmless: billing counts each (notification, kind) once).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::HashMap;

type HmacSha256 = Hmac<Sha256>;

/// What a ping token claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingClaims {
    /// notification_id
    #[serde(rename = "n")]
    pub notification_id: String,
    /// campaign_id
    #[serde(rename = "c")]
    pub campaign_id: String,
    /// store_id
    #[serde(rename = "s")]
    pub store_id: String,
    /// subscriber_id
    #[serde(rename = "u")]
    pub subscriber_id: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issue time, Unix seconds (when dispatch minted it). `None` in tokens
    /// minted before the claim existed; left out of the JSON then, so such
    /// tokens keep their exact bytes and signatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

/// Why a token was refused (also the `reason` label of the metric).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not `v1.<kid>.<claims>.<sig>` with valid base64url/JSON.
    #[error("malformed ping token: expected v1.<kid>.<claims>.<sig>")]
    Malformed,
    /// Signed with a key id this service does not have.
    #[error("ping token signed with unknown key id {0:?}")]
    UnknownKey(String),
    /// The signature does not match (forged or tampered).
    #[error("ping token signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("ping token expired")]
    Expired,
}

impl TokenError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::UnknownKey(_) => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
        }
    }
}

/// The signing keys: the current one signs, all of them verify.
#[derive(Clone)]
pub struct PingKeys {
    current: String,
    keys: HashMap<String, Vec<u8>>,
}

impl std::fmt::Debug for PingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("PingKeys")
            .field("current", &self.current)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PingKeys {
    /// Parses `kid:secret[,kid:secret…]` (the first is current; key ids
    /// are unique; secrets are at least 16 bytes of text), as in
    /// `PUSHFLOW_PING_KEYS`.
    pub fn parse(spec: &str) -> Result<PingKeys, String> {
        let mut current = None;
        let mut keys = HashMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kid, secret) = part
                .split_once(':')
                .ok_or_else(|| format!("ping key {part:?} is not kid:secret"))?;
            if kid.is_empty() || kid.contains('.') {
                return Err(format!(
                    "ping key id {kid:?} must be non-empty and contain no '.'"
                ));
            }
            if secret.len() < 16 {
                return Err(format!("ping key {kid:?} is shorter than 16 bytes"));
            }
            current.get_or_insert_with(|| kid.to_string());
            if keys
                .insert(kid.to_string(), secret.as_bytes().to_vec())
                .is_some()
            {
                // Else the later secret would silently replace the earlier
                // one, and a current key listed first might not sign.
                return Err(format!(
                    "ping key id {kid:?} is given twice: give each key a new id"
                ));
            }
        }
        let current = current.ok_or("no ping keys given (expected kid:secret)")?;
        Ok(PingKeys { current, keys })
    }

    /// The keys from `PUSHFLOW_PING_KEYS`, or a fixed development key
    /// (logged as a warning) when it is unset.
    pub fn from_env() -> Result<PingKeys, String> {
        match std::env::var("PUSHFLOW_PING_KEYS") {
            Ok(s) if !s.trim().is_empty() => PingKeys::parse(&s),
            _ => {
                tracing::warn!("PUSHFLOW_PING_KEYS is unset: using the development ping key; set it in production");
                PingKeys::parse("dev:pushflow-development-ping-key")
            }
        }
    }

    fn mac(&self, kid: &str) -> Option<HmacSha256> {
        self.keys
            .get(kid)
            .map(|k| HmacSha256::new_from_slice(k).expect("HMAC takes any key length"))
    }

    /// Signs `claims` with the current key.
    pub fn mint(&self, claims: &PingClaims) -> String {
        let body = B64.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signed = format!("v1.{}.{body}", self.current);
        let mut mac = self.mac(&self.current).expect("current key exists");
        mac.update(signed.as_bytes());
        format!("{signed}.{}", B64.encode(mac.finalize().into_bytes()))
    }

    /// Verifies `token` at time `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<PingClaims, TokenError> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(kid), Some(body), Some(sig), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        let mut mac = self
            .mac(kid)
            .ok_or_else(|| TokenError::UnknownKey(kid.to_string()))?;
        mac.update(format!("v1.{kid}.{body}").as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: PingClaims = B64
            .decode(body)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.exp < now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> PingClaims {
        PingClaims {
            notification_id: "n1".into(),
            campaign_id: "c1".into(),
            store_id: "s1".into(),
            subscriber_id: "u1".into(),
            exp: 2_000,
            iat: Some(500),
        }
    }

    #[test]
    fn tokens_without_an_issue_time_still_verify() {
        let keys = PingKeys::parse("k1:0123456789abcdef-old").unwrap();
        let old = PingClaims {
            iat: None,
            ..claims()
        };
        let t = keys.mint(&old);
        let body = B64.decode(t.split('.').nth(2).unwrap()).unwrap();
        // The JSON an older dispatch signed: no `iat` key at all.
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"n":"n1","c":"c1","s":"s1","u":"u1","exp":2000}"#
        );
        assert_eq!(keys.verify(&t, 1_000).unwrap(), old);
        let new = keys.mint(&claims());
        assert_eq!(keys.verify(&new, 1_000).unwrap().iat, Some(500));
    }

    #[test]
    fn mints_and_verifies() {
        let keys = PingKeys::parse("k2:0123456789abcdef-new,k1:0123456789abcdef-old").unwrap();
        let t = keys.mint(&claims());
        assert!(t.starts_with("v1.k2."));
        assert_eq!(keys.verify(&t, 1_000).unwrap(), claims());
    }

    #[test]
    fn old_keys_still_verify_after_rotation() {
        let old = PingKeys::parse("k1:0123456789abcdef-old").unwrap();
        let rotated = PingKeys::parse("k2:0123456789abcdef-new,k1:0123456789abcdef-old").unwrap();
        assert_eq!(
            rotated.verify(&old.mint(&claims()), 1_000).unwrap(),
            claims()
        );
    }

    #[test]
    fn refuses_forged_tampered_expired_and_unknown() {
        let keys = PingKeys::parse("k1:0123456789abcdef-old").unwrap();
        let other = PingKeys::parse("k1:another-secret-of-16b").unwrap();
        let t = keys.mint(&claims());
        assert_eq!(
            keys.verify(&other.mint(&claims()), 1_000),
            Err(TokenError::BadSignature)
        );
        let mut forged_claims = claims();
        forged_claims.store_id = "victim".into();
        let forged_body = B64.encode(serde_json::to_vec(&forged_claims).unwrap());
        let parts: Vec<&str> = t.split('.').collect();
        let tampered = format!("v1.k1.{forged_body}.{}", parts[3]);
        assert_eq!(keys.verify(&tampered, 1_000), Err(TokenError::BadSignature));
        assert_eq!(keys.verify(&t, 2_001), Err(TokenError::Expired));
        let unknown = PingKeys::parse("k9:0123456789abcdef-old")
            .unwrap()
            .mint(&claims());
        assert_eq!(
            keys.verify(&unknown, 1_000),
            Err(TokenError::UnknownKey("k9".into()))
        );
        assert_eq!(keys.verify("garbage", 1_000), Err(TokenError::Malformed));
        assert_eq!(
            keys.verify("v1.k1.x.y.z", 1_000),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn refuses_weak_keys() {
        assert!(PingKeys::parse("k1:short").is_err());
        assert!(PingKeys::parse("").is_err());
        assert!(PingKeys::parse("noseparator").is_err());
    }

    #[test]
    fn refuses_a_key_id_given_twice() {
        // "k1:new,k1:old" would make k1 current but sign with the old
        // secret (the later entry replaced the first).
        let e = PingKeys::parse("k1:0123456789abcdef-new,k1:0123456789abcdef-old").unwrap_err();
        assert_eq!(
            e,
            "ping key id \"k1\" is given twice: give each key a new id"
        );
    }
}
