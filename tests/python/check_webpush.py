#!/usr/bin/env python3
"""Independent check of one web push produced by pushflow's dispatch.

Input: a JSON file with the raw request body (base64url), the
Authorization header, the subscriber's private key (raw P-256 scalar,
base64url), auth secret and public key, and the push service's origin.

Decrypts the aes128gcm body with http_ece (RFC 8291) and verifies the
VAPID JWT (RFC 8292: ES256 over the k= key, aud, exp <= 24 h, sub) with
cryptography and py_vapid's key handling. Prints the payload JSON; exits
non-zero on any mismatch. Code nobody on pushflow wrote does the crypto.
"""
import base64
import json
import sys
import time

try:
    import http_ece
except ImportError:
    sys.exit("missing pip package http_ece (pip install http_ece)")
try:
    import py_vapid  # noqa: F401  (its presence is part of the contract)
except ImportError:
    sys.exit("missing pip package py_vapid (pip install py_vapid)")
try:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
except ImportError:
    sys.exit("missing pip package cryptography (pip install cryptography)")


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def main(path):
    data = json.load(open(path))
    # Decrypt with the subscriber's keys.
    scalar = int.from_bytes(b64d(data["private_key"]), "big")
    private = ec.derive_private_key(scalar, ec.SECP256R1())
    public = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    assert public == b64d(data["public_key"]), "private key does not match the subscription's p256dh"
    body = b64d(data["body"])
    plain = http_ece.decrypt(body, private_key=private, auth_secret=b64d(data["auth"]), version="aes128gcm")
    payload = json.loads(plain)
    for field in ("notification_id", "campaign_id", "title", "body", "url", "ping_token"):
        assert field in payload, f"payload lacks {field}: {payload}"

    # Verify the VAPID JWT.
    auth = data["authorization"]
    assert auth.startswith("vapid "), auth
    params = dict(p.strip().split("=", 1) for p in auth[len("vapid "):].split(","))
    token, key = params["t"], params["k"]
    header_b64, claims_b64, sig_b64 = token.split(".")
    header = json.loads(b64d(header_b64))
    assert header["alg"] == "ES256", header
    claims = json.loads(b64d(claims_b64))
    sig = b64d(sig_b64)
    assert len(sig) == 64, "ES256 signature must be raw r||s (64 bytes)"
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    vapid_pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64d(key))
    vapid_pub.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    assert claims["aud"] == data["audience"], (claims["aud"], data["audience"])
    now = time.time()
    assert now < claims["exp"] <= now + 24 * 3600 + 60, claims
    assert claims.get("sub", "").startswith(("mailto:", "https:")), claims
    print(json.dumps({"payload": payload, "jwt_claims": claims}))


if __name__ == "__main__":
    main(sys.argv[1])
