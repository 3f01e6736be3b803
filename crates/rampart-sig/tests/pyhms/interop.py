"""Interop oracle: PyPI http-message-signatures (3.x) signs or verifies a request.

Driven by crates/rampart-sig/tests/interop.rs. Reads one JSON object on stdin:
  {"mode": "sign"|"verify", "alg": "hmac-sha256"|"ed25519", "keyid": ...,
   "secret_b64" | "private_pem" | "public_pem": ..., "method": ..., "url": ...,
   "headers": [[name, value], ...], "body_b64": optional, "nonce": ..., "created": int}
sign   -> prints {"headers": [[name, value], ...]} with Signature-Input and Signature added
verify -> prints {"label": ..., "keyid": ...}; exits 1 with the reason on stderr if refused
"""

import base64
import datetime
import json
import sys

from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException, InvalidSignature


class Request:
    def __init__(self, method, url, headers):
        self.method = method
        self.url = url
        self.headers = headers


class Headers(dict):
    """Field lines in order; repeated names are joined as RFC 9110 allows."""


class Keys(HTTPSignatureKeyResolver):
    def __init__(self, spec):
        self.spec = spec

    def _check(self, key_id):
        if key_id != self.spec["keyid"]:
            raise InvalidSignature("unknown keyid")

    def resolve_public_key(self, key_id):
        self._check(key_id)
        if "secret_b64" in self.spec:
            return base64.b64decode(self.spec["secret_b64"])
        return load_pem_public_key(self.spec["public_pem"].encode())

    def resolve_private_key(self, key_id):
        self._check(key_id)
        if "secret_b64" in self.spec:
            return base64.b64decode(self.spec["secret_b64"])
        return load_pem_private_key(self.spec["private_pem"].encode(), password=None)


ALGS = {"hmac-sha256": algorithms.HMAC_SHA256, "ed25519": algorithms.ED25519}


def main():
    spec = json.load(sys.stdin)
    headers = Headers()
    for name, value in spec["headers"]:
        headers[name] = value if name not in headers else headers[name] + ", " + value
    req = Request(spec["method"], spec["url"], headers)
    body = base64.b64decode(spec["body_b64"]) if spec.get("body_b64") is not None else None
    alg = ALGS[spec["alg"]]
    if spec["mode"] == "sign":
        signer = HTTPMessageSigner(signature_algorithm=alg, key_resolver=Keys(spec))
        signer.sign(
            req,
            key_id=spec["keyid"],
            created=datetime.datetime.fromtimestamp(spec["created"], tz=datetime.timezone.utc),
            nonce=spec["nonce"],
            label="pyhms",
            covered_component_ids=("@method", "@target-uri"),
            body=body,
        )
        json.dump({"headers": [[k, v] for k, v in req.headers.items()]}, sys.stdout)
        return 0
    verifier = HTTPMessageVerifier(signature_algorithm=alg, key_resolver=Keys(spec))
    try:
        results = verifier.verify(
            req,
            max_age=datetime.timedelta(minutes=5),
            require_components=("@method", "@target-uri"),
            body=body,
        )
    except (InvalidSignature, HTTPMessageSignaturesException) as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    r = results[0]
    if body is not None and r.body is None and body != b"":
        print("refused: body not covered by a digest", file=sys.stderr)
        return 1
    json.dump({"label": r.label, "keyid": r.parameters["keyid"], "nonce": r.nonce}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
