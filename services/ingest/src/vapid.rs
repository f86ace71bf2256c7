//! The VAPID public key served at `GET /v1/vapid-public-key`: the
//! `applicationServerKey` browsers subscribe with. A push service accepts
//! a push only when it is signed with the private half of the key its
//! browser subscribed with, so when ingest can see the private key
//! dispatch signs with (`PUSHFLOW_VAPID_PRIVATE_KEY`, or the file
//! `PUSHFLOW_VAPID_PRIVATE_KEY_FILE` names: `pushflow up`,
//! docker-compose.yml) it serves the public key derived from it, and
//! refuses to start with a configured public key that is not that one.

use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use crate::IngestError;

/// The variable holding dispatch's private key (base64url raw P-256 scalar).
pub const PRIVATE_KEY_VAR: &str = "PUSHFLOW_VAPID_PRIVATE_KEY";
/// The variable naming a file that holds what [`PRIVATE_KEY_VAR`] would.
pub const PRIVATE_KEY_FILE_VAR: &str = "PUSHFLOW_VAPID_PRIVATE_KEY_FILE";
/// The variable holding the public key alone (ingest run apart from
/// dispatch, without the private key).
pub const PUBLIC_KEY_VAR: &str = "PUSHFLOW_VAPID_PUBLIC_KEY";

/// The public key to serve, if any: derived from the private key when one
/// is configured, else `PUSHFLOW_VAPID_PUBLIC_KEY`, else the
/// `vapid_public_key` setting. The key file is read here (the one I/O of
/// ingest's validation).
pub fn public_key(
    env: impl Fn(&str) -> Option<String>,
    setting: Option<&str>,
) -> Result<Option<String>, IngestError> {
    let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let (field, configured) = match set(PUBLIC_KEY_VAR) {
        Some(k) => (PUBLIC_KEY_VAR, Some(k)),
        None => ("vapid_public_key", setting.map(str::to_string)),
    };
    let private = match (set(PRIVATE_KEY_VAR), set(PRIVATE_KEY_FILE_VAR)) {
        (Some(_), Some(_)) => {
            return Err(IngestError::config(
                PRIVATE_KEY_VAR,
                format!("set {PRIVATE_KEY_VAR} or {PRIVATE_KEY_FILE_VAR}, not both"),
            ))
        }
        (Some(raw), None) => Some((PRIVATE_KEY_VAR, raw)),
        (None, Some(path)) => {
            let path = path.trim();
            let raw = std::fs::read_to_string(path).map_err(|e| {
                IngestError::config(PRIVATE_KEY_FILE_VAR, format!("cannot read {path}: {e}"))
            })?;
            Some((PRIVATE_KEY_FILE_VAR, raw))
        }
        (None, None) => None,
    };
    let Some((source, raw)) = private else {
        return Ok(configured.map(|k| k.trim().to_string()));
    };
    let derived = derive(&raw).map_err(|m| IngestError::config(source, m))?;
    match configured {
        Some(k) if k.trim().trim_end_matches('=') != derived => Err(IngestError::config(
            field,
            format!(
                "{k:?} is not the public key of the private key in {source} ({derived}); \
                 leave it unset and ingest serves the right one"
            ),
        )),
        _ => Ok(Some(derived)),
    }
}

/// The uncompressed public point of a base64url raw P-256 scalar, base64url.
fn derive(private_b64: &str) -> Result<String, String> {
    let scalar = B64
        .decode(private_b64.trim().trim_end_matches('='))
        .map_err(|e| format!("not base64url: {e}"))?;
    let private = PrivateKey::from_private_key(&ECDH_P256, &scalar)
        .map_err(|e| format!("not a 32-byte P-256 scalar ({e})"))?;
    let public = private
        .compute_public_key()
        .map_err(|_| "cannot derive the public key".to_string())?;
    Ok(B64.encode(public.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8291, Appendix A: the application server's key pair.
    const PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const PUBLIC: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";

    fn env(pairs: &[(&'static str, String)]) -> impl Fn(&str) -> Option<String> {
        let pairs = pairs.to_vec();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn serves_the_public_half_of_the_private_key_from_the_variable_or_the_file() {
        let path =
            std::env::temp_dir().join(format!("pushflow-ingest-vapid-{}", std::process::id()));
        std::fs::write(&path, format!("{PRIVATE}\n")).unwrap();
        let path = path.to_str().unwrap().to_string();
        let from_file = public_key(env(&[(PRIVATE_KEY_FILE_VAR, path.clone())]), None).unwrap();
        assert_eq!(from_file.as_deref(), Some(PUBLIC));
        let from_var = public_key(env(&[(PRIVATE_KEY_VAR, PRIVATE.into())]), None).unwrap();
        assert_eq!(from_var.as_deref(), Some(PUBLIC));
        // A public key configured as well must be that key's.
        let agreeing = public_key(
            env(&[
                (PRIVATE_KEY_FILE_VAR, path.clone()),
                (PUBLIC_KEY_VAR, PUBLIC.into()),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(agreeing.as_deref(), Some(PUBLIC));
        let e = public_key(
            env(&[(PRIVATE_KEY_FILE_VAR, path.clone())]),
            Some("BSomeOtherKey"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`vapid_public_key`") && e.contains(PUBLIC),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
        let e = public_key(env(&[(PRIVATE_KEY_FILE_VAR, path.clone())]), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(PRIVATE_KEY_FILE_VAR) && e.contains("cannot read"),
            "{e}"
        );
    }

    #[test]
    fn without_a_private_key_the_configured_public_key_is_served() {
        assert_eq!(public_key(env(&[]), None).unwrap(), None);
        assert_eq!(
            public_key(env(&[]), Some("BFromSettings"))
                .unwrap()
                .as_deref(),
            Some("BFromSettings")
        );
        assert_eq!(
            public_key(
                env(&[(PUBLIC_KEY_VAR, "BFromEnv".into())]),
                Some("BFromSettings")
            )
            .unwrap()
            .as_deref(),
            Some("BFromEnv")
        );
        let e = public_key(env(&[(PRIVATE_KEY_VAR, "abc".into())]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(PRIVATE_KEY_VAR) && e.contains("P-256"), "{e}");
        let e = public_key(
            env(&[
                (PRIVATE_KEY_VAR, PRIVATE.into()),
                (PRIVATE_KEY_FILE_VAR, "/k".into()),
            ]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not both"), "{e}");
    }
}
