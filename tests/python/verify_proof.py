"""Independent verifier of Caracal inclusion proofs (caracal.merkle.proof.v1).

Written from RFC 6962 / RFC 9162 and the documented batch header layout, never from Caracal's
code: hashlib, json, sys and `cryptography` only.

    python verify_proof.py PROOF.json

Prints OK and exits 0 when the proof holds; otherwise prints the reason and exits 1.
"""

import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

PROOF_FORMAT = "caracal.merkle.proof.v1"
HEADER_FORMAT = b"caracal.merkle.batch.v1"


class Failure(Exception):
    pass


def unhex(value, what, length=None):
    if not isinstance(value, str) or value != value.lower():
        raise Failure(f"{what}: not a lowercase hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise Failure(f"{what}: not hex")
    if len(value) != 2 * len(raw):
        raise Failure(f"{what}: not plain hex")
    if length is not None and len(raw) != length:
        raise Failure(f"{what}: {len(raw)} bytes, expected {length}")
    return raw


def integer(value, what, bits, signed=True):
    if not isinstance(value, int) or isinstance(value, bool):
        raise Failure(f"{what}: not an integer")
    try:
        return value.to_bytes(bits // 8, "big", signed=signed)
    except OverflowError:
        raise Failure(f"{what}: {value} does not fit {bits} bits")


def header_bytes(header):
    """The canonical bytes of a batch header, rebuilt from its fields."""
    key_id = header["key_id"]
    if not isinstance(key_id, str):
        raise Failure("header.key_id: not a string")
    key_id = key_id.encode("utf-8")
    out = HEADER_FORMAT + b"\x00"
    out += integer(header["partition"], "header.partition", 32)
    for field in ("batch_number", "first_seq", "last_seq", "count"):
        out += integer(header[field], f"header.{field}", 64)
    out += unhex(header["root"], "header.root", 32)
    out += unhex(header["prev_root"], "header.prev_root", 32)
    for field in ("first_time_micros", "last_time_micros"):
        out += integer(header[field], f"header.{field}", 64)
    out += integer(len(key_id), "header.key_id length", 16, signed=False)
    return out + key_id


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_audit_path(leaf, index, size, path):
    """RFC 9162 section 2.1.3.2, step by step; None when the path cannot fit the position."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify(doc):
    if doc.get("format") != PROOF_FORMAT:
        raise Failure(f"format is {doc.get('format')!r}, expected {PROOF_FORMAT!r}")
    header = doc["header"]
    rebuilt = header_bytes(header)
    if rebuilt != unhex(doc["header_bytes"], "header_bytes"):
        raise Failure("header_bytes differ from the bytes rebuilt from the header fields")

    key = serialization.load_pem_public_key(doc["public_key"].encode("ascii"))
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise Failure("public_key is not an ECDSA P-256 key")
    point = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    key_id = hashlib.sha256(point).digest()[:16].hex()
    if key_id != header["key_id"]:
        raise Failure(f"key id of public_key is {key_id}, header names {header['key_id']}")

    signature = unhex(doc["signature"], "signature")
    try:
        key.verify(signature, rebuilt, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Failure("signature does not verify")

    size, index = doc["tree_size"], doc["leaf_index"]
    integer(size, "tree_size", 64, signed=False)
    integer(index, "leaf_index", 64, signed=False)
    if size != header["count"]:
        raise Failure(f"tree_size {size} is not the header count {header['count']}")
    if index >= size:
        raise Failure(f"leaf_index {index} is outside a tree of {size} leaves")

    if not isinstance(doc["audit_path"], list):
        raise Failure("audit_path: not a list")
    path = [unhex(h, f"audit_path[{i}]", 32) for i, h in enumerate(doc["audit_path"])]
    leaf = leaf_hash(unhex(doc["leaf"], "leaf"))
    root = root_from_audit_path(leaf, index, size, path)
    if root is None:
        raise Failure("audit_path does not fit leaf_index and tree_size")
    if root != unhex(header["root"], "header.root", 32):
        raise Failure("audit_path leads to " + root.hex() + ", not the header root")


def main(argv):
    if len(argv) != 2:
        print("usage: verify_proof.py PROOF.json", file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as f:
            doc = json.load(f)
        if not isinstance(doc, dict) or not isinstance(doc.get("header"), dict):
            raise Failure("not a proof document")
        verify(doc)
    except Failure as e:
        print(f"FAIL: {e}")
        return 1
    except (KeyError, TypeError, ValueError) as e:
        print(f"FAIL: malformed proof: {e!r}")
        return 1
    except Exception as e:  # anything unexpected is a failure to verify, never a pass
        print(f"FAIL: {e!r}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
