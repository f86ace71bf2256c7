//! What a push service does with a request's cryptography: check the
//! VAPID JWT (RFC 8292) and decrypt the aes128gcm body (RFC 8291) with the
//! subscriber's private key and auth secret. Written on aws-lc-rs, without
//! sharing code with dispatch, so the two check each other.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::hkdf::{self, KeyType, Salt, HKDF_SHA256};
use aws_lc_rs::signature::{self, ECDSA_P256_SHA256_FIXED};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

use crate::SimError;

/// A simulated browser's push subscription keys.
pub struct SubscriberKeys {
    private: PrivateKey,
    /// Uncompressed P-256 public key (65 bytes), RFC 8291 `ua_public`.
    pub public: Vec<u8>,
    /// 16-byte auth secret.
    pub auth: [u8; 16],
}

impl SubscriberKeys {
    /// Fresh keys.
    pub fn generate() -> SubscriberKeys {
        let private = PrivateKey::generate(&ECDH_P256).expect("P-256 key generation");
        let public = private
            .compute_public_key()
            .expect("public key")
            .as_ref()
            .to_vec();
        let mut auth = [0u8; 16];
        aws_lc_rs::rand::fill(&mut auth).expect("random auth secret");
        SubscriberKeys {
            private,
            public,
            auth,
        }
    }

    /// Keys from a raw private scalar (32 bytes) and an auth secret.
    pub fn from_raw(private: &[u8], auth: [u8; 16]) -> Result<SubscriberKeys, SimError> {
        let private = PrivateKey::from_private_key(&ECDH_P256, private)
            .map_err(|_| SimError::BadKey("not a P-256 private scalar".into()))?;
        let public = private
            .compute_public_key()
            .map_err(|_| SimError::BadKey("cannot derive the public key".into()))?
            .as_ref()
            .to_vec();
        Ok(SubscriberKeys {
            private,
            public,
            auth,
        })
    }

    /// The raw private scalar (32 bytes), for independent checkers.
    pub fn private_raw(&self) -> Vec<u8> {
        let bin: aws_lc_rs::encoding::EcPrivateKeyBin<'_> =
            self.private.as_be_bytes().expect("private key bytes");
        bin.as_ref().to_vec()
    }

    /// `p256dh` as a subscription carries it (base64url).
    pub fn p256dh(&self) -> String {
        B64.encode(&self.public)
    }

    /// `auth` as a subscription carries it (base64url).
    pub fn auth_b64(&self) -> String {
        B64.encode(self.auth)
    }

    /// Decrypts an aes128gcm body (RFC 8188 framing, RFC 8291 keys),
    /// returning the plaintext without padding.
    pub fn decrypt(&self, body: &[u8]) -> Result<Vec<u8>, SimError> {
        let bad = |m: &str| SimError::Decrypt(m.to_string());
        if body.len() < 21 {
            return Err(bad("body shorter than the aes128gcm header"));
        }
        let salt = &body[..16];
        let rs = u32::from_be_bytes(body[16..20].try_into().expect("4 bytes")) as usize;
        let idlen = body[20] as usize;
        if idlen != 65 || body.len() < 21 + idlen + 17 {
            return Err(bad("keyid must be the sender's 65-byte P-256 public key"));
        }
        let as_public = &body[21..21 + idlen];
        let ciphertext = &body[21 + idlen..];
        if ciphertext.len() > rs {
            return Err(bad(
                "more than one record: push messages are a single record",
            ));
        }
        let ecdh = agreement::agree(
            &self.private,
            UnparsedPublicKey::new(&ECDH_P256, as_public),
            SimError::Decrypt("ECDH with the sender's key failed".into()),
            |s| Ok(s.to_vec()),
        )?;
        let mut info = Vec::with_capacity(144);
        info.extend_from_slice(b"WebPush: info\0");
        info.extend_from_slice(&self.public);
        info.extend_from_slice(as_public);
        let mut ikm = [0u8; 32];
        hkdf_fill(&self.auth, &ecdh, &info, &mut ikm)?;
        let mut cek = [0u8; 16];
        let mut nonce = [0u8; 12];
        hkdf_fill(salt, &ikm, b"Content-Encoding: aes128gcm\0", &mut cek)?;
        hkdf_fill(salt, &ikm, b"Content-Encoding: nonce\0", &mut nonce)?;
        let key = aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_128_GCM, &cek)
                .map_err(|_| bad("bad content key"))?,
        );
        let mut buf = ciphertext.to_vec();
        let plain = key
            .open_in_place(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::empty(),
                &mut buf,
            )
            .map_err(|_| bad("AES-128-GCM authentication failed (wrong keys or corrupted body)"))?;
        let end = plain
            .iter()
            .rposition(|b| *b != 0)
            .ok_or_else(|| bad("record is all padding"))?;
        if plain[end] != 2 {
            return Err(bad("last record must end with padding delimiter 0x02"));
        }
        Ok(plain[..end].to_vec())
    }
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf_fill(salt: &[u8], secret: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), SimError> {
    Salt::new(HKDF_SHA256, salt)
        .extract(secret)
        .expand(&[info], Len(out.len()))
        .and_then(|okm: hkdf::Okm<'_, Len>| okm.fill(out))
        .map_err(|_| SimError::Decrypt("HKDF failed".into()))
}

/// The claims a VAPID JWT must carry.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct VapidClaims {
    /// Audience: the push service's origin.
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Contact (`mailto:` or `https:`).
    pub sub: Option<String>,
}

/// Splits `Authorization: vapid t=<jwt>, k=<key>` into (jwt, key).
pub fn parse_vapid_header(value: &str) -> Result<(&str, &str), SimError> {
    let rest = value.strip_prefix("vapid ").ok_or_else(|| {
        SimError::Vapid("Authorization must use the `vapid` scheme (RFC 8292)".into())
    })?;
    let (mut t, mut k) = (None, None);
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("t=") {
            t = Some(v);
        } else if let Some(v) = part.strip_prefix("k=") {
            k = Some(v);
        }
    }
    match (t, k) {
        (Some(t), Some(k)) => Ok((t, k)),
        _ => Err(SimError::Vapid("vapid header needs both t= and k=".into())),
    }
}

/// Verifies a VAPID JWT signed ES256 by `key` (base64url uncompressed
/// point) for audience `origin` at `now` (Unix seconds).
pub fn verify_vapid(jwt: &str, key: &str, origin: &str, now: i64) -> Result<VapidClaims, SimError> {
    let bad = |m: String| SimError::Vapid(m);
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("JWT must have three parts".into()));
    };
    let header: serde_json::Value =
        serde_json::from_slice(&B64.decode(h).map_err(|e| bad(format!("JWT header: {e}")))?)
            .map_err(|e| bad(format!("JWT header: {e}")))?;
    if header["alg"] != "ES256" {
        return Err(bad(format!("JWT alg must be ES256, got {}", header["alg"])));
    }
    let key = B64
        .decode(key)
        .map_err(|e| bad(format!("k= is not base64url: {e}")))?;
    let sig = B64
        .decode(s)
        .map_err(|e| bad(format!("JWT signature: {e}")))?;
    let signed = &jwt[..h.len() + 1 + c.len()];
    signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| bad("JWT signature does not verify with the k= public key".into()))?;
    let claims: VapidClaims =
        serde_json::from_slice(&B64.decode(c).map_err(|e| bad(format!("JWT claims: {e}")))?)
            .map_err(|e| bad(format!("JWT claims: {e}")))?;
    if claims.aud != origin {
        return Err(bad(format!(
            "JWT aud {:?} is not this push service's origin {origin:?}",
            claims.aud
        )));
    }
    if claims.exp <= now {
        return Err(bad("JWT expired".into()));
    }
    if claims.exp > now + 24 * 3600 + 60 {
        return Err(bad("JWT exp is more than 24 hours ahead (RFC 8292)".into()));
    }
    if claims.sub.as_deref().unwrap_or("").is_empty() {
        return Err(bad("JWT has no sub claim (contact)".into()));
    }
    Ok(claims)
}

/// A fresh VAPID key pair: (private raw scalar, public uncompressed point), base64url.
pub fn vapid_keys() -> (String, String) {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let pair =
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation");
    let private = pair.private_key().as_be_bytes().expect("private key bytes");
    (
        B64.encode(private.as_ref()),
        B64.encode(pair.public_key().as_ref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use pushflow_testkit::hex;

    #[test]
    fn decrypts_the_rfc_8291_example() {
        let ua = SubscriberKeys::from_raw(
            &B64.decode("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94")
                .unwrap(),
            B64.decode("BTBZMqHH6r4Tts7J_aSIgg")
                .unwrap()
                .try_into()
                .unwrap(),
        )
        .unwrap();
        let body = hex("0c6bfaadad67958803092d454676f397000010004104fe33f4ab0dea71914db55823f73b54948f41306d920732dbb9a59a53286482200e597a7b7bc260ba1c227998580992e93973002f3012a28ae8f06bbb78e5ec0ff297de5b429bba7153d3a4ae0caa091fd425f3b4b5414add8ab37a19c1bbb05cf5cb5b2a2e0562d558635641ec52812c6c8ff42e95ccb86be7cd");
        let plain = ua.decrypt(&body).unwrap();
        assert_eq!(plain, b"When I grow up, I want to be a watermelon");
        let mut tampered = body.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(ua.decrypt(&tampered).is_err());
    }

    #[test]
    fn refuses_malformed_vapid() {
        assert!(parse_vapid_header("WebPush abc").is_err());
        let (t, k) = parse_vapid_header("vapid t=a.b.c, k=xyz").unwrap();
        assert_eq!((t, k), ("a.b.c", "xyz"));
        assert!(verify_vapid("a.b", "xyz", "http://x", 0).is_err());
    }
}
