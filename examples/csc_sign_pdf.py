"""Signs a PDF through Keyward's CSC API with pyHanko's CSC signer, and validates it.

A standard CSC client talking to Keyward; the end-to-end test tests/tests/csc.rs runs it.
Needs pyHanko: python3 -m pip install -r tests/py/requirements.txt

    python3 examples/csc_sign_pdf.py sign --url URL --token JWT --out signed.pdf
        Makes a one-page PDF, finds the caller's credential with credentials/list, and signs
        the PDF with pyHanko's CSCSigner (credentials/info, credentials/authorize with the
        hashes to be signed, signatures/signHash). Prints a JSON summary.
    python3 examples/csc_sign_pdf.py validate --url URL --pdf signed.pdf
        Validates the PDF's signature with pyHanko against Keyward's CA certificate
        (GET /v1/ca/certificate) as the only trust root. Prints a JSON summary; exits 0 only
        when the signature is intact, valid and trusted.
"""

import argparse
import asyncio
import json
import sys
from io import BytesIO

import aiohttp
from asn1crypto import pem, x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.signers import csc_signer
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with a line of text, with a correct cross-reference table."""
    content = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
    ]
    out = BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n".encode())
    out.write(b"0000000000 65535 f \n")
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


class KeywardAuthorization(csc_signer.CSCAuthorizationManager):
    """Asks credentials/authorize for a SAD bound to exactly the hashes pyHanko will sign.

    pyHanko leaves the authorization call to the integrator (it depends on the service's
    authMode); Keyward's is `implicit`: the bearer token and Keyward's policies decide.
    """

    def __init__(self, session, session_info, credential_info):
        super().__init__(session_info, credential_info)
        self.session = session

    async def authorize_signature(self, hash_b64s):
        url = self.csc_session_info.endpoint_url("credentials/authorize")
        body = self.format_csc_auth_request(
            hash_b64s=hash_b64s, description="pyHanko CSC end-to-end test"
        )
        async with self.session.post(url, headers=self.auth_headers, json=body) as resp:
            data = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"credentials/authorize: {resp.status} {data}")
        return self.parse_csc_auth_response(data)


async def sign(url: str, token: str, out: str) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/csc/v1/credentials/list", headers=headers, json={}
        ) as resp:
            listed = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"credentials/list: {resp.status} {listed}")
        ids = listed["credentialIDs"]
        if len(ids) != 1:
            raise RuntimeError(f"expected exactly one credential, got {ids}")
        session_info = csc_signer.CSCServiceSessionInfo(
            service_url=url, credential_id=ids[0], oauth_token=token, api_ver="v1"
        )
        credential_info = await csc_signer.fetch_certs_in_csc_credential(
            session, session_info
        )
        auth = KeywardAuthorization(session, session_info, credential_info)
        signer = csc_signer.CSCSigner(session, auth_manager=auth)
        writer = IncrementalPdfFileWriter(BytesIO(minimal_pdf("Signed through Keyward CSC")))
        output = BytesIO()
        await signers.async_sign_pdf(
            writer,
            signers.PdfSignatureMetadata(field_name="KeywardSignature", md_algorithm="sha256"),
            signer=signer,
            output=output,
        )
    with open(out, "wb") as f:
        f.write(output.getvalue())
    return {
        "credential_id": ids[0],
        "signer": credential_info.signing_cert.subject.human_friendly,
        "chain": len(credential_info.chain),
        "scal2": credential_info.hash_pinning_required,
        "bytes": len(output.getvalue()),
    }


async def ca_certificate(url: str) -> x509.Certificate:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/v1/ca/certificate") as resp:
            resp.raise_for_status()
            data = await resp.read()
    _, _, der = pem.unarmor(data)
    return x509.Certificate.load(der)


def validate(url: str, path: str) -> dict:
    root = asyncio.run(ca_certificate(url))
    with open(path, "rb") as f:
        reader = PdfFileReader(f, strict=False)
        sigs = reader.embedded_signatures
        if len(sigs) != 1:
            return {"ok": False, "reason": f"{len(sigs)} signatures"}
        context = ValidationContext(trust_roots=[root], allow_fetching=False)
        status = validate_pdf_signature(sigs[0], context)
        return {
            "ok": bool(status.bottom_line),
            "intact": bool(status.intact),
            "valid": bool(status.valid),
            "trusted": bool(status.trusted),
            "coverage": str(status.coverage),
            "signer": status.signing_cert.subject.human_friendly,
            "md_algorithm": status.md_algorithm,
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sign")
    s.add_argument("--url", required=True)
    s.add_argument("--token", required=True)
    s.add_argument("--out", required=True)
    v = sub.add_parser("validate")
    v.add_argument("--url", required=True)
    v.add_argument("--pdf", required=True)
    args = parser.parse_args()
    if args.command == "sign":
        print(json.dumps(asyncio.run(sign(args.url, args.token, args.out))))
        return 0
    result = validate(args.url, args.pdf)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
