//! RFC 8291 message encryption (aes128gcm, RFC 8188 framing) on aws-lc-rs.
//!
//! The web-push crate encrypts through `ece` on OpenSSL; this is the same
//! construction on a faster library (one P-256 key generation, one ECDH,
//! four HMACs and one AES-128-GCM record per message). Checked against the
//! RFC's worked example byte for byte (the vector `ece` itself is tested
//! with), against `ece`'s decryption, and against push-sim's decryption.
//! Padding follows `ece`: the padded plaintext is a multiple of 128 bytes,
//! so payload lengths leak only coarsely.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::hkdf::{KeyType, Salt, HKDF_SHA256};

use crate::DispatchError;

/// Record size announced in the header (one record carries the message).
pub const RECORD_SIZE: u32 = 4096;
/// Padding block: the padded plaintext is a multiple of this.
pub const PAD_BLOCK: usize = 128;
/// Largest plaintext that fits one 4096-byte record with padding and tag.
pub const MAX_PLAINTEXT: usize = 3993;

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(salt: &[u8], secret: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<(), DispatchError> {
    Salt::new(HKDF_SHA256, salt)
        .extract(secret)
        .expand(info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| DispatchError::Crypto("HKDF failed".into()))
}

/// Encrypts `plaintext` for the subscription (`ua_public`: 65-byte
/// uncompressed point, `auth`: 16-byte secret) with a fresh sender key and
/// random salt.
pub fn encrypt(ua_public: &[u8], auth: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, DispatchError> {
    let sender = PrivateKey::generate(&ECDH_P256)
        .map_err(|_| DispatchError::Crypto("P-256 key generation failed".into()))?;
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| DispatchError::Crypto("no randomness".into()))?;
    let pad = PAD_BLOCK - plaintext.len() % PAD_BLOCK;
    encrypt_with(&sender, &salt, pad, ua_public, auth, plaintext)
}

/// Encrypts with a given sender key, salt and padding length (≥ 1,
/// delimiter included); [`encrypt`] picks them. Deterministic, for tests.
pub fn encrypt_with(
    sender: &PrivateKey,
    salt: &[u8; 16],
    pad: usize,
    ua_public: &[u8],
    auth: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, DispatchError> {
    let invalid = |m: &str| DispatchError::InvalidSubscription(m.to_string());
    if ua_public.len() != 65 || ua_public[0] != 4 {
        return Err(invalid("p256dh must be a 65-byte uncompressed P-256 point"));
    }
    if auth.len() != 16 {
        return Err(invalid("auth must be 16 bytes"));
    }
    let pad = pad.max(1);
    if plaintext.len() + pad + 16 > RECORD_SIZE as usize {
        return Err(DispatchError::Crypto(format!(
            "payload of {} bytes does not fit one {RECORD_SIZE}-byte record",
            plaintext.len()
        )));
    }
    let as_public = sender
        .compute_public_key()
        .map_err(|_| DispatchError::Crypto("sender public key".into()))?;
    let as_public = as_public.as_ref();
    let ecdh = agreement::agree(
        sender,
        UnparsedPublicKey::new(&ECDH_P256, ua_public),
        invalid("p256dh is not a point on P-256"),
        |s| Ok(<[u8; 32]>::try_from(s).unwrap_or([0; 32])),
    )?;
    let mut ikm = [0u8; 32];
    hkdf(
        auth,
        &ecdh,
        &[b"WebPush: info\0", ua_public, as_public],
        &mut ikm,
    )?;
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    hkdf(salt, &ikm, &[b"Content-Encoding: aes128gcm\0"], &mut cek)?;
    hkdf(salt, &ikm, &[b"Content-Encoding: nonce\0"], &mut nonce)?;
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_128_GCM, &cek).map_err(|_| DispatchError::Crypto("AES key".into()))?,
    );

    let header_len = 16 + 4 + 1 + 65;
    let mut out = Vec::with_capacity(header_len + plaintext.len() + pad + 16);
    out.extend_from_slice(salt);
    out.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    out.push(65);
    out.extend_from_slice(as_public);
    out.extend_from_slice(plaintext);
    out.push(2);
    out.resize(out.len() + pad - 1, 0);
    let mut record = out.split_off(header_len);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        &mut record,
    )
    .map_err(|_| DispatchError::Crypto("AES-128-GCM seal failed".into()))?;
    out.extend_from_slice(&record);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;

    use pushflow_testkit::hex;

    /// RFC 8291 section 5, the vector `ece` is tested with (padding 1).
    #[test]
    fn matches_the_rfc_8291_example_byte_for_byte() {
        let sender = PrivateKey::from_private_key(
            &ECDH_P256,
            &hex("c9f58f89813e9f8e872e71f42aa64e1757c9254dcc62b72ddc010bb4043ea11c"),
        )
        .unwrap();
        let ua_public = hex("042571b2becdfde360551aaf1ed0f4cd366c11cebe555f89bcb7b186a53339173168ece2ebe018597bd30479b86e3c8f8eced577ca59187e9246990db682008b0e");
        let auth = hex("05305932a1c7eabe13b6cec9fda48882");
        let salt: [u8; 16] = hex("0c6bfaadad67958803092d454676f397").try_into().unwrap();
        let out = encrypt_with(
            &sender,
            &salt,
            1,
            &ua_public,
            &auth,
            b"When I grow up, I want to be a watermelon",
        )
        .unwrap();
        let expected = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";
        assert_eq!(B64.encode(&out), expected);
    }

    #[test]
    fn the_web_push_crates_ece_decrypts_ours() {
        let (ua, auth) = ece::generate_keypair_and_auth_secret().unwrap();
        let comps = ua.raw_components().unwrap();
        let msg = br#"{"title":"hello"}"#;
        let out = encrypt(comps.public_key(), &auth, msg).unwrap();
        assert!(
            (out.len() - 86 - 16).is_multiple_of(PAD_BLOCK),
            "padded to a multiple of {PAD_BLOCK}"
        );
        assert_eq!(ece::decrypt(&comps, &auth, &out).unwrap(), msg.to_vec());
    }

    #[test]
    fn refuses_bad_subscriptions() {
        assert!(matches!(
            encrypt(&[4; 10], &[0; 16], b"x"),
            Err(DispatchError::InvalidSubscription(_))
        ));
        let mut p = vec![4u8; 65];
        p[1] = 7;
        assert!(matches!(
            encrypt(&p, &[0; 16], b"x"),
            Err(DispatchError::InvalidSubscription(_))
        ));
        assert!(encrypt(&p, &[0; 3], b"x").is_err());
    }
}
