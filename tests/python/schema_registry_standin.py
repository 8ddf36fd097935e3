"""A small stand-in for Confluent's Schema Registry (none can be installed here): the REST
endpoints Caracal and Confluent's Python client use, basic auth, and BACKWARD checks for Avro
records (the new schema must read old data: each field it adds needs a default). In memory.
Usage: schema_registry_standin.py USER:PASSWORD  -> prints its port, serves until killed."""
import base64
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AUTH = "Basic " + base64.b64encode(sys.argv[1].encode()).decode()
subjects = {}  # subject -> [(id, schema text)]
compatibility = {}
schemas = {}  # id -> schema text


def fields(text):
    return {f["name"]: f for f in json.loads(text).get("fields", [])}


def backward(new, old):
    known = fields(old)
    return all(name in known or "default" in f for name, f in fields(new).items())


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        size = int(self.headers.get("Content-Length", 0))
        return json.loads(self.rfile.read(size) or b"{}")

    def authorized(self):
        if self.headers.get("Authorization") == AUTH:
            return True
        self.reply(401, {"error_code": 401, "message": "Unauthorized"})
        return False

    def do_PUT(self):
        if not self.authorized():
            return
        match = re.fullmatch(r"/config/([^/?]+)", self.path)
        body = self.body()
        compatibility[match.group(1)] = body["compatibility"]
        self.reply(200, body)

    def do_POST(self):
        if not self.authorized():
            return
        match = re.fullmatch(r"/subjects/([^/?]+)/versions(\?.*)?", self.path)
        subject, schema = match.group(1), self.body()["schema"]
        versions = subjects.setdefault(subject, [])
        for known_id, text in versions:
            if json.loads(text) == json.loads(schema):
                return self.reply(200, {"id": known_id})
        if versions and compatibility.get(subject) == "BACKWARD" and not backward(schema, versions[-1][1]):
            return self.reply(409, {"error_code": 409,
                                    "message": "Schema being registered is incompatible with an earlier schema"})
        new_id = len(schemas) + 1
        schemas[new_id] = schema
        versions.append((new_id, schema))
        self.reply(200, {"id": new_id})

    def do_GET(self):
        if not self.authorized():
            return
        path = self.path.split("?")[0]
        if path == "/subjects":
            return self.reply(200, list(subjects))
        match = re.fullmatch(r"/subjects/([^/]+)/versions/latest", path)
        if match and match.group(1) in subjects:
            versions = subjects[match.group(1)]
            return self.reply(200, {"subject": match.group(1), "version": len(versions),
                                    "id": versions[-1][0], "schema": versions[-1][1]})
        match = re.fullmatch(r"/config/([^/]+)", path)
        if match and match.group(1) in compatibility:
            return self.reply(200, {"compatibilityLevel": compatibility[match.group(1)]})
        match = re.fullmatch(r"/schemas/ids/(\d+)", path)
        if match and int(match.group(1)) in schemas:
            return self.reply(200, {"schema": schemas[int(match.group(1))]})
        self.reply(404, {"error_code": 40401, "message": "not found"})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
