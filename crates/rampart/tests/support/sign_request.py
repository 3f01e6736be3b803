"""Signs one request with PyPI http-message-signatures (3.x), the independent RFC 9421
implementation, for crates/rampart/tests/signature.rs (scripts/test installs it).

Reads one JSON object on stdin:
  {"mode": "genkey"} -> {"private_pem": ..., "public_pem": ..., "openssh": ...} (Ed25519)
  {"mode": "sign", "alg": "hmac-sha256"|"ed25519", "keyid": ...,
   "secret_b64url" | "private_pem": ..., "method": ..., "url": ...,
   "headers": [[name, value], ...], "body_b64": optional, "nonce": ..., "created": int,
   "covered": optional list of component ids, "include_alg": optional bool}
  -> {"headers": [[name, value], ...]} with Signature-Input, Signature (and
     Content-Digest when a body is given) added.
"""

import base64
import datetime
import json
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms


class Request:
    def __init__(self, method, url, headers):
        self.method = method
        self.url = url
        self.headers = headers


class Keys(HTTPSignatureKeyResolver):
    def __init__(self, spec):
        self.spec = spec

    def resolve_public_key(self, key_id):
        raise NotImplementedError

    def resolve_private_key(self, key_id):
        if "secret_b64url" in self.spec:
            s = self.spec["secret_b64url"]
            return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
        return serialization.load_pem_private_key(self.spec["private_pem"].encode(), password=None)


ALGS = {"hmac-sha256": algorithms.HMAC_SHA256, "ed25519": algorithms.ED25519}


def main():
    spec = json.load(sys.stdin)
    if spec["mode"] == "genkey":
        k = Ed25519PrivateKey.generate()
        out = {
            "private_pem": k.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "public_pem": k.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode(),
            "openssh": k.public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode(),
        }
        json.dump(out, sys.stdout)
        return 0
    headers = {}
    for name, value in spec["headers"]:
        headers[name] = value
    req = Request(spec["method"], spec["url"], headers)
    body = base64.b64decode(spec["body_b64"]) if spec.get("body_b64") is not None else None
    covered = spec.get("covered") or ["@method", "@target-uri"]
    if body is not None and "content-digest" not in covered and spec.get("cover_digest", True):
        covered = covered + ["content-digest"]
    signer = HTTPMessageSigner(signature_algorithm=ALGS[spec["alg"]], key_resolver=Keys(spec))
    signer.sign(
        req,
        key_id=spec["keyid"],
        created=datetime.datetime.fromtimestamp(spec["created"], tz=datetime.timezone.utc),
        nonce=spec["nonce"],
        label="sig1",
        include_alg=spec.get("include_alg", True),
        covered_component_ids=tuple(covered),
        body=body,
    )
    json.dump({"headers": [[k, v] for k, v in req.headers.items()]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
