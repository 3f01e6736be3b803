"""Mints tokens with PyJWT (an independent JOSE implementation) for the interop test.

Prints one JSON object: {"jwks": {...}, "tokens": {"RS256": ..., "ES256": ..., "EdDSA": ...}}.
Keys are fresh each run; the public keys are exported as JWKs by PyJWT itself.
"""
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

now = int(sys.argv[1]) if len(sys.argv) > 1 else int(time.time())
claims = {
    "iss": "https://id.example.com/",
    "aud": ["other", "rampart"],
    "sub": "py-user",
    "tenant": "t-py",
    "scope": "jobs metrics",
    "roles": ["reader"],
    "jti": "py-1",
    "iat": now,
    "nbf": now - 5,
    "exp": now + 600,
}
keys = {
    "RS256": (rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm),
    "ES256": (ec.generate_private_key(ec.SECP256R1()), ECAlgorithm),
    "EdDSA": (ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm),
}
jwks, tokens = [], {}
for alg, (priv, algo) in keys.items():
    kid = "py-" + alg.lower()
    jwk = json.loads(algo.to_jwk(priv.public_key()))
    jwk["kid"] = kid
    jwk["use"] = "sig"
    jwks.append(jwk)
    tokens[alg] = jwt.encode(claims, priv, algorithm=alg, headers={"kid": kid})
print(json.dumps({"jwks": {"keys": jwks}, "tokens": tokens}))
