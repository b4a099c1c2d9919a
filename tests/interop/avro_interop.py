#!/usr/bin/env python3
"""Avro interop for cs-pulse's tests, with clients cs-pulse did not write.

  registry PORT_FILE                 a schema registry speaking the Confluent API on
                                     127.0.0.1 (in memory; see the note below)
  produce BOOTSTRAP REGISTRY DIR T..   produces DIR's NDJSON events and records as Avro with
                                     confluent-kafka's AvroSerializer, in three writer schema
                                     versions, plus one record of an incompatible schema
  to-ocf DIR                         writes DIR/*.avro object container files with fastavro
                                     (outcomes too, when DIR/outcomes.ndjson exists)
  decode-alerts BOOTSTRAP TOPIC OUT  reads the alert topic (read_committed), checks the
                                     Confluent framing and decodes each alert with fastavro
                                     and schemas/health_alert.avsc
  read-topic BOOTSTRAP TOPIC OUT     reads a whole topic (read_committed): one JSON line
                                     {"key", "value"} per record, as text

Environment:
  INTEROP_KAFKA_CONFIG     a JSON object of librdkafka properties added to every Kafka
                           client (security.protocol, sasl.*, ssl.ca.location)
  INTEROP_REGISTRY_TLS     CERT_PEM:KEY_PEM: `registry` serves HTTPS with this certificate
  INTEROP_REGISTRY_CA      the CA file the registry client trusts for HTTPS

No registry server can be installed from this machine's package registries (Apicurio
Registry's app needs artifacts Maven Central does not serve here), so `registry` is a small
in-memory implementation of the Confluent API calls both clients make: POST
/subjects/{s}/versions, GET /schemas/ids/{id} and GET /subjects.
"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def kafka_config(**base):
    """A Kafka client configuration: `base` plus INTEROP_KAFKA_CONFIG."""
    base.update(json.loads(os.environ.get("INTEROP_KAFKA_CONFIG") or "{}"))
    return base


def schema_text(name):
    with open(os.path.join(ROOT, "schemas", name)) as f:
        return f.read()


def registry(port_file):
    schemas, ids, subjects, lock = {}, {}, set(), threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/subjects":
                with lock:
                    return self.reply(200, sorted(subjects))
            if path.startswith("/schemas/ids/"):
                sid = int(path.rsplit("/", 1)[1])
                if sid in schemas:
                    return self.reply(200, {"schema": schemas[sid]})
                return self.reply(404, {"error_code": 40403, "message": "Schema not found"})
            self.reply(404, {"error_code": 404, "message": "not found"})

        def do_POST(self):
            path = self.path.split("?")[0]
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            if path.startswith("/subjects/") and path.endswith("/versions"):
                text = json.dumps(json.loads(body["schema"]), sort_keys=True)
                with lock:
                    subjects.add(path[len("/subjects/"):-len("/versions")])
                    if text not in ids:
                        ids[text] = len(ids) + 1
                        schemas[ids[text]] = body["schema"]
                    return self.reply(200, {"id": ids[text]})
            self.reply(404, {"error_code": 404, "message": "not found"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = os.environ.get("INTEROP_REGISTRY_TLS")
    if tls:
        import ssl

        cert, key = tls.split(":", 1)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


def evolved(base, add=(), drop=()):
    """`base` with optional fields added (with defaults) and optional fields dropped."""
    s = json.loads(base)
    s["fields"] = [f for f in s["fields"] if f["name"] not in drop] + [
        {"name": n, "type": ["null", "string"], "default": None} for n in add
    ]
    return json.dumps(s)


def records(path):
    with open(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def avro_record(rec):
    """An NDJSON record as the Avro schemas have it (timestamps are epoch ms already)."""
    out = dict(rec)
    for k in ("user_id", "team_id"):
        if out.get(k) == "":
            out[k] = None
    return out


def produce(bootstrap, registry_url, directory, usage_t, support_t, accounts_t, teams_t):
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    registry_conf = {"url": registry_url}
    if os.environ.get("INTEROP_REGISTRY_CA"):
        registry_conf["ssl.ca.location"] = os.environ["INTEROP_REGISTRY_CA"]
    client = SchemaRegistryClient(registry_conf)
    usage = schema_text("usage_event.avsc")
    versions = {
        # v1: cs-pulse's own schema; v2 adds an optional field; v3 lacks optional ones.
        "v1": usage,
        "v2": evolved(usage, add=["region"]),
        "v3": evolved(usage, drop=["feature", "app_id", "properties"]),
    }
    serializers = {
        v: AvroSerializer(client, s, conf={"auto.register.schemas": True, "subject.name.strategy": lambda ctx, name, v=v: f"{usage_t}-{v}-value"})
        for v, s in versions.items()
    }
    support = AvroSerializer(client, schema_text("support_event.avsc"))
    accounts = AvroSerializer(client, schema_text("account_record.avsc"))
    teams = AvroSerializer(client, schema_text("team_record.avsc"))
    producer = Producer(kafka_config(**{"bootstrap.servers": bootstrap, "linger.ms": 20, "partitioner": "murmur2_random"}))
    counts, by_version = {}, {}

    def send(topic, ser, rec, key):
        value = ser(avro_record(rec), SerializationContext(topic, MessageField.VALUE))
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.1)
        counts[topic] = counts.get(topic, 0) + 1

    for rec in records(os.path.join(directory, "accounts.ndjson")):
        send(accounts_t, accounts, rec, rec["account_id"])
    for rec in records(os.path.join(directory, "teams.ndjson")):
        send(teams_t, teams, rec, rec["team_id"])
    producer.flush()
    for i, rec in enumerate(records(os.path.join(directory, "usage.ndjson"))):
        v = "v2" if i % 3 == 1 else "v1"
        if i % 3 == 2 and not any(rec.get(k) for k in ("feature", "app_id", "properties")):
            v = "v3"
        r = dict(rec)
        if v == "v2":
            r["region"] = "eu"
        if v == "v3":
            for k in ("feature", "app_id", "properties"):
                r.pop(k, None)
        send(usage_t, serializers[v], r, rec["account_id"])
        by_version[v] = by_version.get(v, 0) + 1
    for rec in records(os.path.join(directory, "support.ndjson")):
        send(support_t, support, rec, rec["account_id"])
    # One record whose writer schema cannot be read as a usage event: event_id is a long.
    bad = json.loads(usage)
    for f in bad["fields"]:
        if f["name"] == "event_id":
            f["type"] = "long"
    bad_ser = AvroSerializer(client, json.dumps(bad), conf={"subject.name.strategy": lambda ctx, name: f"{usage_t}-bad-value"})
    first = next(records(os.path.join(directory, "usage.ndjson")))
    wrong = dict(avro_record(first), event_id=42)
    producer.produce(usage_t, key="bad-record", value=bad_ser(wrong, SerializationContext(usage_t, MessageField.VALUE)))
    producer.flush()
    print(json.dumps({"produced": counts, "usage_writer_schemas": by_version}))


def to_ocf(directory):
    import fastavro

    files = {
        "usage": "usage_event.avsc",
        "support": "support_event.avsc",
        "accounts": "account_record.avsc",
        "teams": "team_record.avsc",
        "outcomes": "outcome.avsc",
    }
    for name, avsc in files.items():
        if not os.path.exists(os.path.join(directory, f"{name}.ndjson")):
            continue
        schema = json.loads(schema_text(avsc))
        if name == "usage":
            # written with an evolved schema: one optional field more than cs-pulse's
            schema = json.loads(evolved(schema_text(avsc), add=["region"]))
        parsed = fastavro.parse_schema(schema)
        rows = [avro_record(r) for r in records(os.path.join(directory, f"{name}.ndjson"))]
        with open(os.path.join(directory, f"{name}.avro"), "wb") as out:
            fastavro.writer(out, parsed, rows, codec="deflate", sync_interval=16000)
        print(f"{name}.avro: {len(rows)} records")


def epoch_ms(value):
    """fastavro reads timestamp-millis as an aware datetime: back to epoch milliseconds."""
    import datetime

    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (value - epoch) // datetime.timedelta(milliseconds=1)


def read_committed(bootstrap, topic):
    """Every committed record of a topic, partition by partition, to its end now."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(kafka_config(**{
        "bootstrap.servers": bootstrap,
        "group.id": f"interop-{os.getpid()}",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }))
    md = consumer.list_topics(topic, timeout=10)
    parts = [TopicPartition(topic, p, 0) for p in md.topics[topic].partitions]
    consumer.assign(parts)
    ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
    done = {p for p, hi in ends.items() if hi == 0}
    try:
        while len(done) < len(ends):
            m = consumer.poll(5)
            if m is None:
                positions = consumer.position(parts)
                done |= {p.partition for p in positions if p.offset >= ends[p.partition]}
                continue
            if m.error():
                continue
            yield m
            if m.offset() + 1 >= ends[m.partition()]:
                done.add(m.partition())
    finally:
        consumer.close()


def decode_alerts(bootstrap, topic, out_path):
    import io

    import fastavro

    schema = fastavro.parse_schema(json.loads(schema_text("health_alert.avsc")))
    n = 0
    with open(out_path, "w") as out:
        for m in read_committed(bootstrap, topic):
            v = m.value()
            assert v[0] == 0, f"magic byte {v[0]}"
            schema_id = int.from_bytes(v[1:5], "big")
            alert = fastavro.schemaless_reader(io.BytesIO(v[5:]), schema)
            alert["_schema_id"] = schema_id
            alert["_key"] = m.key().decode()
            out.write(json.dumps(alert, default=epoch_ms) + "\n")
            n += 1
    print(json.dumps({"alerts": n}))


def read_topic(bootstrap, topic, out_path):
    n = 0
    with open(out_path, "w") as out:
        for m in read_committed(bootstrap, topic):
            text = lambda b: None if b is None else b.decode("utf-8", "replace")
            out.write(json.dumps({"key": text(m.key()), "value": text(m.value())}) + "\n")
            n += 1
    print(json.dumps({"records": n}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "registry": registry,
        "produce": produce,
        "to-ocf": to_ocf,
        "decode-alerts": decode_alerts,
        "read-topic": read_topic,
    }[cmd](*args)
