#!/usr/bin/env python3
"""Keys and tokens for bench/jwt.sh (rampart vs HAProxy jwt_verify).

Writes into OUT: jwks.json (RS256 + ES256 public keys, with kids), rs256.pub.pem and
es256.pub.pem (the same keys for HAProxy), and per algorithm:
  ALG.one.txt     one valid token (the repeated-token runs)
  ALG.fresh.txt   N distinct valid tokens (each request of a fresh-token run takes the next)
  ALG.badsig.txt  one token whose signature was made by another key of the same type
Claims: iss, aud, sub, exp (far ahead), iat, jti. Uses `cryptography` (PyPI) only, and both
cores (minting RS256 is the slow part; it runs before anything is measured).
"""
import base64
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISS = "https://id.bench.example/"
AUD = "rampart"


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def uint(n: int, size: int) -> str:
    return b64(n.to_bytes(size, "big"))


def sign(alg, key, data: bytes) -> bytes:
    if alg == "RS256":
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def token(alg, kid, key, i: int, exp: int) -> str:
    header = b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}, separators=(",", ":")).encode())
    claims = {"iss": ISS, "aud": AUD, "sub": f"user-{i % 1000}", "iat": exp - 86400 * 365,
              "exp": exp, "jti": f"{alg}-{i}", "scope": "jobs metrics", "tenant": "acme"}
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    return f"{header}.{payload}.{b64(sign(alg, key, signing_input))}"


def load(out, name):
    with open(os.path.join(out, name), "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


def chunk(args):
    out, alg, kid, start, count, exp = args
    key = load(out, f"{alg.lower()}.key.pem")
    return [token(alg, kid, key, i, exp) for i in range(start, start + count)]


def main():
    os.umask(0o077)
    out, n = sys.argv[1], int(sys.argv[2])
    os.makedirs(out, exist_ok=True)
    keys = {"RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES256": ec.generate_private_key(ec.SECP256R1())}
    others = {"RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
              "ES256": ec.generate_private_key(ec.SECP256R1())}
    jwks = []
    for alg, key in keys.items():
        with open(os.path.join(out, f"{alg.lower()}.key.pem"), "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        with open(os.path.join(out, f"{alg.lower()}.pub.pem"), "wb") as f:
            f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
        pub = key.public_key().public_numbers()
        if alg == "RS256":
            jwks.append({"kty": "RSA", "kid": "bench-rs", "alg": alg, "use": "sig",
                         "n": uint(pub.n, 256), "e": uint(pub.e, 3)})
        else:
            jwks.append({"kty": "EC", "kid": "bench-es", "alg": alg, "use": "sig", "crv": "P-256",
                         "x": uint(pub.x, 32), "y": uint(pub.y, 32)})
    with open(os.path.join(out, "jwks.json"), "w") as f:
        json.dump({"keys": jwks}, f)

    exp = int(time.time()) + 86400 * 30
    kids = {"RS256": "bench-rs", "ES256": "bench-es"}
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for alg in keys:
            kid = kids[alg]
            with open(os.path.join(out, f"{alg}.one.txt"), "w") as f:
                f.write(token(alg, kid, keys[alg], 10**9, exp) + "\n")
            with open(os.path.join(out, f"{alg}.badsig.txt"), "w") as f:
                f.write(token(alg, kid, others[alg], 10**9 + 1, exp) + "\n")
            step = 2000
            jobs = [(out, alg, kid, s, min(step, n - s), exp) for s in range(0, n, step)]
            with open(os.path.join(out, f"{alg}.fresh.txt"), "w") as f:
                for part in pool.map(chunk, jobs):
                    f.write("\n".join(part) + "\n")


if __name__ == "__main__":
    main()
