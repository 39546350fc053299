#!/usr/bin/env python3
"""Sign a document with Keyward from Python (standard library only).

Only the document's SHA-256 leaves this machine: Keyward returns a detached CMS signature
(CAdES-BES, the signer certificate chain inside) that this script writes next to the document,
with the CA certificate to check it against.

    keyward dev                                  # in another terminal; copy the admin token
    export KEYWARD_TOKEN=...
    examples/sign_document.py contract.pdf --create "Example Signer"   # a new key and certificate
    examples/sign_document.py contract.pdf --key key_...               # an existing document key
    openssl cms -verify -binary -inform DER -in contract.pdf.p7s -content contract.pdf \\
        -CAfile contract.pdf.ca.pem -purpose any

KEYWARD_URL defaults to http://127.0.0.1:8080. A request that needs approval is followed until
approvers decide (or --wait seconds pass).
"""

import argparse
import base64
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request

URL = os.environ.get("KEYWARD_URL", "http://127.0.0.1:8080").rstrip("/")


class KeywardError(Exception):
    """An error answer: its status, code and message."""


def call(method, path, body=None, raw=False):
    token = os.environ.get("KEYWARD_TOKEN")
    if not token:
        raise SystemExit("set KEYWARD_TOKEN to a Keyward access token")
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=70) as resp:
            payload = resp.read()
            return payload if raw else (resp.status, json.loads(payload))
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read())
            raise KeywardError(f"{e.code} {err.get('code')}: {err.get('message')}") from None
        except ValueError:
            raise KeywardError(f"{e.code} {e.reason}") from None


def create_key(common_name):
    _, key = call("POST", "/v1/keys", {"name": f"doc-{int(time.time() * 1000)}",
                                        "algorithm": "p256", "purpose": "document"})
    call("POST", f"/v1/keys/{key['id']}/certificate",
         {"subject": {"common_name": common_name}, "validity_days": 365})
    return key["id"]


def sign(key_id, path, wait):
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    status, answer = call("POST", "/v1/documents/sign", {
        "key_id": key_id,
        "document_hash": f"sha256:{digest}",
        "document_name": os.path.basename(path),
    })
    deadline = time.time() + wait
    while status == 202:
        print(f"waiting for approval: request {answer['request_id']}", file=sys.stderr)
        if time.time() > deadline:
            raise KeywardError(f"still waiting for approval after {wait} s")
        status, request = call("GET", f"/v1/requests/{answer['request_id']}?wait=30")
        if request["status"] == "signed":
            return request["document"]
        if request["status"] != "pending_approval":
            raise KeywardError(f"the request ended {request['status']}: {request.get('error', '')}")
        answer = request
    return answer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("document")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--key", help="the id of a key of purpose document")
    which.add_argument("--create", metavar="NAME", help="make a key and a certificate for NAME")
    parser.add_argument("--wait", type=int, default=600, help="seconds to wait for approvers")
    args = parser.parse_args()
    try:
        key_id = args.key or create_key(args.create)
        result = sign(key_id, args.document, args.wait)
        with open(args.document + ".p7s", "wb") as f:
            f.write(base64.b64decode(result["signature"]))
        with open(args.document + ".ca.pem", "wb") as f:
            f.write(call("GET", "/v1/ca/certificate", raw=True))
    except KeywardError as e:
        raise SystemExit(f"keyward: {e}")
    print(f"signed {args.document} with key {key_id} as {result['signer_subject']} "
          f"({result['algorithm']}, request {result['request_id']})")
    print(f"wrote {args.document}.p7s and {args.document}.ca.pem")


if __name__ == "__main__":
    main()
