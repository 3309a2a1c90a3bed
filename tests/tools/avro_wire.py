#!/usr/bin/python3
"""avro_wire.py: an independent Schema Registry client for tests (Debian's python3-avro and
urllib, nothing of runnel's): fetches schemas by id, encodes records in the Confluent wire
format (magic byte 0, the schema id as 4 bytes big-endian, Avro binary) and decodes them back.

  avro_wire.py roundtrip URL ID RECORD_JSON
      encode RECORD_JSON with schema ID, print the message in hex, then the decoded record as JSON
  avro_wire.py resolve URL WRITER_ID READER_ID RECORD_JSON
      encode with the writer schema, decode with the reader schema (Avro schema resolution);
      print the record as JSON, or "unresolvable: ..." and exit 3
  avro_wire.py register URL SUBJECT SCHEMA_FILE
      register a schema (POST /subjects/S/versions) and print the id
  avro_wire.py encode URL ID RECORD_JSON OUT_FILE
      write the message of RECORD_JSON (schema ID) to OUT_FILE, for kcat -P to send as it is
  avro_wire.py decode URL MESSAGE_FILE [READER_SCHEMA_FILE]
      print the record of a message (kcat -f %s) as JSON, read with its writer schema (or resolved
      to the reader schema)
  avro_wire.py topic URL < STREAM
      decode every message of a topic as `kcat -C -e -f '%K %S\n%k%s'` prints them (the key's and
      the value's length, a newline, the key, the value); print one JSON line per message:
      {"key": KEY or null, "value": RECORD}
JSON stands for what it cannot hold: decimals and dates as strings ("-12.50", "2020-01-02"),
bytes and fixed as strings of code points 0-255; timestamps go in as integers in their unit and
come out as microseconds (python-avro reads both units as a datetime).
Options: --user USER:PASSWORD for basic auth. Exit 1 on an HTTP error, with the registry's body.
"""
import base64
import datetime
import decimal
import io
import json
import struct
import sys
import urllib.error
import urllib.request

import avro.errors
import avro.io
import avro.schema

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class Registry:
    def __init__(self, url, user=None):
        self.url = url.rstrip("/")
        self.headers = {"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE}
        if user:
            self.headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                if answer.headers.get_content_type() != CONTENT_TYPE:
                    raise SystemExit(f"{path}: content type {answer.headers.get_content_type()}, not {CONTENT_TYPE}")
                return json.load(answer)
        except urllib.error.HTTPError as error:
            print(f"HTTP {error.code} {path}: {error.read().decode()}", file=sys.stderr)
            raise SystemExit(1)

    def schema(self, schema_id):
        text = self.call("GET", f"/schemas/ids/{schema_id}")["schema"]
        return avro.schema.parse(text)


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
UNITS = {"timestamp-millis": 1000, "timestamp-micros": 1000000}


def to_python(schema, value):
    """The JSON value as python-avro wants it for schema (logical types, bytes)."""
    logical = schema.props.get("logicalType")
    kind = schema.type
    if kind == "union":
        for branch in schema.schemas:
            if avro.io.validate(branch, to_python_or_none(branch, value)):
                return to_python(branch, value)
        return value
    if kind == "record":
        return {f.name: to_python(f.type, value[f.name]) for f in schema.fields if f.name in value}
    if kind == "array":
        return [to_python(schema.items, v) for v in value]
    if kind == "map":
        return {k: to_python(schema.values, v) for k, v in value.items()}
    if logical == "decimal" and isinstance(value, str):
        return decimal.Decimal(value)
    if logical == "date" and isinstance(value, str):
        return datetime.date.fromisoformat(value)
    if logical in UNITS and isinstance(value, int):
        return EPOCH + datetime.timedelta(microseconds=value * 1000000 // UNITS[logical])
    if kind in ("bytes", "fixed") and isinstance(value, str):
        return value.encode("latin-1")
    return value


def to_python_or_none(schema, value):
    try:
        return to_python(schema, value)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def to_json(value):
    """A decoded value as JSON (see the top)."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime):
        delta = value - EPOCH
        return (delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds  # micros; callers scale
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


def encode(schema, schema_id, record):
    buffer = io.BytesIO()
    buffer.write(struct.pack(">bI", 0, schema_id))
    avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(buffer))
    return buffer.getvalue()


def decode(message, registry, reader_schema=None):
    magic, schema_id = struct.unpack(">bI", message[:5])
    if magic != 0:
        raise SystemExit(f"magic byte {magic}, not 0")
    writer_schema = registry.schema(schema_id)
    reader = avro.io.DatumReader(writer_schema, reader_schema or writer_schema)
    return reader.read(avro.io.BinaryDecoder(io.BytesIO(message[5:])))


def main(argv):
    user = None
    if len(argv) > 2 and argv[1] == "--user":
        user = argv[2]
        argv = argv[:1] + argv[3:]
    if len(argv) < 2:
        raise SystemExit(__doc__)
    command = argv[1]
    registry = Registry(argv[2], user)
    if command == "roundtrip" and len(argv) == 5:
        schema_id, record = int(argv[3]), json.loads(argv[4])
        message = encode(registry.schema(schema_id), schema_id, record)
        print(message.hex())
        print(json.dumps(decode(message, registry), sort_keys=True))
    elif command == "resolve" and len(argv) == 6:
        writer_id, reader_id, record = int(argv[3]), int(argv[4]), json.loads(argv[5])
        message = encode(registry.schema(writer_id), writer_id, record)
        try:
            print(json.dumps(decode(message, registry, registry.schema(reader_id)), sort_keys=True))
        except (avro.errors.SchemaResolutionException, avro.errors.AvroException) as error:
            print(f"unresolvable: {error}".splitlines()[0])
            return 3
    elif command == "register" and len(argv) == 5:
        with open(argv[4]) as schema_file:
            text = schema_file.read()
        avro.schema.parse(text)  # the client's own check first
        print(registry.call("POST", f"/subjects/{argv[3]}/versions", {"schema": text})["id"])
    elif command == "encode" and len(argv) == 6:
        schema_id, record = int(argv[3]), json.loads(argv[4])
        schema = registry.schema(schema_id)
        with open(argv[5], "wb") as out:
            out.write(encode(schema, schema_id, to_python(schema, record)))
    elif command == "decode" and len(argv) in (4, 5):
        with open(argv[3], "rb") as message_file:
            message = message_file.read()
        reader = None
        if len(argv) == 5:
            with open(argv[4]) as schema_file:
                reader = avro.schema.parse(schema_file.read())
        print(json.dumps(to_json(decode(message, registry, reader)), sort_keys=True))
    elif command == "topic" and len(argv) == 3:
        stream = sys.stdin.buffer
        while True:
            header = stream.readline()
            if not header:
                break
            try:
                key_length, value_length = (int(n) for n in header.split())
            except ValueError:
                raise SystemExit(f"not a '%K %S' line of kcat: {header[:80]!r}")
            key = stream.read(key_length).decode() if key_length >= 0 else None
            value = stream.read(value_length)
            if len(value) != value_length:
                raise SystemExit(f"the stream ends inside a message ({len(value)} of {value_length} bytes)")
            print(json.dumps({"key": key, "value": to_json(decode(value, registry))}, sort_keys=True))
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
