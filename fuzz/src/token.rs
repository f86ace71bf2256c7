//! `ping_token`: any text as the `token` of `POST /v1/pings`, verified with
//! the keys ingest holds (`PingKeys::verify`), and as a
//! `PUSHFLOW_PING_KEYS` value (`PingKeys::parse`).
//!
//! Properties of `verify` (ingest answers a refusal with 401 and its
//! reason: malformed, unknown key, bad signature, expired):
//!
//! - only a token minted with one of the keys verifies: an accepted token
//!   is byte-identical to minting its claims again with the key its `kid`
//!   names, so any mutation of a valid token is refused or is that token;
//! - expiry is the only thing that depends on the time: a token refused
//!   for anything else is refused the same way at any time, and a valid
//!   one is accepted exactly until its `exp`;
//! - an unknown key id is reported as the id the token carries.
//!
//! Properties of `parse`: a key set it accepts signs with the first key
//! listed (the current one) and verifies what it mints; a refusal names
//! the key entry.

use pushflow_runtime::token::{PingClaims, PingKeys, TokenError};
use std::sync::OnceLock;

/// The keys ingest holds in this check, current first, as
/// `PUSHFLOW_PING_KEYS` has them.
pub const KEYS: &str = "k2:0123456789abcdef-new,k1:0123456789abcdef-old";

/// The key set of [`KEYS`].
pub fn keys() -> &'static PingKeys {
    static KEYS_PARSED: OnceLock<PingKeys> = OnceLock::new();
    KEYS_PARSED.get_or_init(|| PingKeys::parse(KEYS).expect("the check's keys parse"))
}

/// The key set holding only `kid`'s entry of [`KEYS`] (that key current).
pub fn only(kid: &str) -> Option<PingKeys> {
    let entry = KEYS
        .split(',')
        .find(|e| e.split_once(':').map(|(k, _)| k) == Some(kid))?;
    Some(PingKeys::parse(entry).expect("an entry of the check's keys parses"))
}

/// Checks the properties of the module doc for one input.
pub fn check(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    verify(&text);
    parse(&text);
    // Whatever the claims hold, what the keys mint they verify.
    let claims = claims_from(&text);
    let minted = keys().mint(&claims);
    assert_eq!(keys().verify(&minted, claims.exp), Ok(claims.clone()));
    verify(&minted);
}

fn verify(token: &str) {
    let keys = keys();
    match keys.verify(token, i64::MIN) {
        Ok(claims) => {
            let kid = token.split('.').nth(1).unwrap_or_default();
            let signer = only(kid)
                .unwrap_or_else(|| panic!("accepted a token of key id {kid:?}, not one of ours"));
            assert_eq!(
                signer.mint(&claims),
                token,
                "accepted a token that is not what the key mints for its claims"
            );
            for now in [
                0,
                claims.exp.saturating_sub(1),
                claims.exp,
                claims.exp.saturating_add(1),
                i64::MAX,
            ] {
                let want = if now <= claims.exp {
                    Ok(claims.clone())
                } else {
                    Err(TokenError::Expired)
                };
                assert_eq!(keys.verify(token, now), want, "at {now}");
            }
        }
        Err(e) => {
            assert_ne!(e, TokenError::Expired, "nothing expires before i64::MIN");
            for now in [0, i64::MAX] {
                assert_eq!(keys.verify(token, now), Err(e.clone()), "at {now}");
            }
            if let TokenError::UnknownKey(kid) = &e {
                assert!(only(kid).is_none(), "key id {kid:?} is ours");
                assert_eq!(token.split('.').nth(1), Some(kid.as_str()));
            }
            assert!(!e.to_string().is_empty() && !e.reason().is_empty());
        }
    }
}

fn parse(spec: &str) {
    match PingKeys::parse(spec) {
        Ok(parsed) => {
            let first = spec
                .split(',')
                .map(str::trim)
                .find(|p| !p.is_empty())
                .expect("an accepted spec has an entry");
            let current = PingKeys::parse(first).expect("the first entry alone parses");
            let claims = claims_from(spec);
            let minted = parsed.mint(&claims);
            assert_eq!(
                minted,
                current.mint(&claims),
                "{spec:?}: does not sign with the first key listed"
            );
            assert_eq!(parsed.verify(&minted, claims.exp), Ok(claims));
        }
        Err(message) => assert!(
            message.contains("ping key"),
            "{spec:?}: refusal names no key entry: {message}"
        ),
    }
}

fn claims_from(text: &str) -> PingClaims {
    let mut parts = text.splitn(4, '.');
    let mut next = || parts.next().unwrap_or_default().to_string();
    let exp = text.len() as i64 * 1_000_003 - 7;
    PingClaims {
        notification_id: next(),
        campaign_id: next(),
        store_id: next(),
        subscriber_id: next(),
        exp,
        iat: text.len().is_multiple_of(2).then_some(exp / 2),
    }
}
