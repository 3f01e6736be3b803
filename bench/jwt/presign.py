#!/usr/bin/env python3
"""Pre-signed requests for bench/jwt.sh's signed-request runs (RFC 9421, signed by PyPI
http-message-signatures, the independent implementation the tests interoperate with).

  presign.py OUT N URL
writes OUT/device.key.pem + OUT/device.pub (an Ed25519 device key, OpenSSH line),
and, once rampart has created the HMAC device and printed its secret into OUT/hmac.secret,
  presign.py OUT N URL sign
writes OUT/hmac.signed.txt and OUT/ed25519.signed.txt: N lines of
"Signature-Input<TAB>Signature", each with its own nonce and `created` = now, covering
@method, @target-uri, created, nonce and keyid (devices `bench-hmac`, `bench-ed`).
"""
import base64
import datetime
import os
import sys
from concurrent.futures import ProcessPoolExecutor

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms


class Req:
    def __init__(self, url):
        self.method = "GET"
        self.url = url
        self.headers = {}


class Keys(HTTPSignatureKeyResolver):
    def __init__(self, key):
        self.key = key

    def resolve_public_key(self, key_id):
        raise NotImplementedError

    def resolve_private_key(self, key_id):
        return self.key


def load_keys(out):
    with open(os.path.join(out, "hmac.secret")) as f:
        s = f.read().strip()
    hmac = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    with open(os.path.join(out, "device.key.pem"), "rb") as f:
        ed = serialization.load_pem_private_key(f.read(), password=None)
    return hmac, ed


def chunk(args):
    out, url, alg, start, count = args
    hmac, ed = load_keys(out)
    if alg == "hmac":
        signer = HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=Keys(hmac))
        keyid = "bench-hmac"
    else:
        signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=Keys(ed))
        keyid = "bench-ed"
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    lines = []
    for i in range(start, start + count):
        r = Req(url)
        signer.sign(r, key_id=keyid, created=now, nonce=f"{alg}-{i}-{os.urandom(6).hex()}",
                    label="sig1", include_alg=False, covered_component_ids=("@method", "@target-uri"))
        lines.append(f"{r.headers['Signature-Input']}\t{r.headers['Signature']}")
    return lines


def main():
    out, n, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.umask(0o077)
    if len(sys.argv) < 5:
        k = Ed25519PrivateKey.generate()
        with open(os.path.join(out, "device.key.pem"), "wb") as f:
            f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
        with open(os.path.join(out, "device.pub"), "wb") as f:
            f.write(k.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                serialization.PublicFormat.OpenSSH))
        return 0
    step = 2000
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for alg in ("hmac", "ed25519"):
            jobs = [(out, url, alg, s, min(step, n - s)) for s in range(0, n, step)]
            with open(os.path.join(out, f"{alg}.signed.txt"), "w") as f:
                for part in pool.map(chunk, jobs):
                    f.write("\n".join(part) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
