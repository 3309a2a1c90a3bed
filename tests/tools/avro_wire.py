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
Options: --user USER:PASSWORD for basic auth. Exit 1 on an HTTP error, with the registry's body.
"""
import base64
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
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
