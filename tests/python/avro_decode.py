#!/usr/bin/env python3
"""Decode Caracal's Avro bytes with fastavro, an implementation we did not write.

    avro_decode.py DATUM_DIR SCHEMA_DIR     one JSON line per file: {"<name>": record}
    avro_decode.py --fingerprints SCHEMA_DIR  one JSON line: {"<stem>": {fingerprint, canonical_form}}

In DATUM_DIR, `<stem>.<label>.bin` is a raw binary datum of schemas/<stem>.avsc, and
`<label>.so` is an Avro single-object message (C3 01, CRC-64-AVRO fingerprint, datum) whose
schema is found by its fingerprint. UUIDs become strings and timestamp-micros integers, so
the output is plain JSON. Every byte of a datum must be consumed. Exit 3: fastavro missing.
"""

import datetime
import io
import json
import os
import sys
import uuid

try:
    import fastavro
    from fastavro.schema import fingerprint, to_parsing_canonical_form
except ImportError:
    sys.stderr.write(
        f"fastavro is not installed for {sys.executable}: run `{sys.executable} -m pip install "
        "fastavro` (or point CARACAL_PYTHON at a Python that has it)\n"
    )
    sys.exit(3)

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
SINGLE_OBJECT_MAGIC = b"\xc3\x01"


def load_schemas(schema_dir):
    schemas = {}
    for file in sorted(os.listdir(schema_dir)):
        if file.endswith(".avsc"):
            with open(os.path.join(schema_dir, file), encoding="utf-8") as f:
                schemas[file[: -len(".avsc")]] = fastavro.parse_schema(json.load(f))
    if not schemas:
        raise SystemExit(f"no .avsc file in {schema_dir}")
    return schemas


def plain(value):
    """Turn fastavro's logical-type objects into JSON values, exactly."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(microseconds=1)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def decode(schema, datum, name):
    stream = io.BytesIO(datum)
    record = fastavro.schemaless_reader(stream, schema, None)
    if stream.tell() != len(datum):
        raise SystemExit(f"{name}: {len(datum) - stream.tell()} bytes left after the datum")
    return plain(record)


def fingerprints(schemas):
    out = {}
    for stem, schema in schemas.items():
        form = to_parsing_canonical_form(schema)
        out[stem] = {"fingerprint": fingerprint(form, "CRC-64-AVRO"), "canonical_form": form}
    return out


def decode_dir(datum_dir, schemas):
    by_fingerprint = {v["fingerprint"]: k for k, v in fingerprints(schemas).items()}
    for file in sorted(os.listdir(datum_dir)):
        path = os.path.join(datum_dir, file)
        with open(path, "rb") as f:
            data = f.read()
        if file.endswith(".bin"):
            name = file[: -len(".bin")]
            stem = name.split(".", 1)[0]
            if stem not in schemas:
                raise SystemExit(f"{file}: no schema {stem}.avsc")
            record = decode(schemas[stem], data, name)
        elif file.endswith(".so"):
            name = file[: -len(".so")]
            if data[:2] != SINGLE_OBJECT_MAGIC or len(data) < 10:
                raise SystemExit(f"{file}: not an Avro single-object message")
            stem = by_fingerprint.get(data[2:10].hex())
            if stem is None:
                raise SystemExit(f"{file}: unknown schema fingerprint {data[2:10].hex()}")
            record = decode(schemas[stem], data[10:], name)
        else:
            continue
        print(json.dumps({name: record}, sort_keys=True))


def main(argv):
    if len(argv) == 3 and argv[1] == "--fingerprints":
        print(json.dumps(fingerprints(load_schemas(argv[2])), sort_keys=True))
    elif len(argv) == 3:
        decode_dir(argv[1], load_schemas(argv[2]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
