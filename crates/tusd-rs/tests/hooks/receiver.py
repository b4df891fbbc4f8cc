#!/usr/bin/env python3
"""A tusd v2 HTTP hook receiver for the tests, standard library only.

Usage: receiver.py LOG_FILE [CERT_PEM KEY_PEM]
With a certificate and key it serves HTTPS. Prints the port it listens on (127.0.0.1) as its first stdout line, then
appends every hook request it receives to LOG_FILE as one JSON line, and
answers as tusd's documentation describes, steered by the upload's metadata:

  pre-create   reject=1 (or a filename reject-*)
                              RejectUpload with StatusCode 403, header
                              X-Reason: quota and a JSON body
               chosen_id=ID   ChangeFileInfo.ID = ID
               rename=NAME    ChangeFileInfo.MetaData = {filename: NAME, checked: yes}
                              (both add HTTPResponse header X-Hook-Seen: yes to the 201)
               fail=N token=T the first N calls for token T answer 500
  post-receive stop=1         StopUpload, HTTPResponse.Body "stopped by hook"
  pre-finish   refuse_finish=1  HTTPResponse StatusCode 422, body "not this file"
               finish_header=1  HTTPResponse Header X-Finished: yes
  pre-terminate keep=1        RejectTermination, StatusCode 409, body "keep it"
  pre-access   private=1      unless the request carries Authorization:
                              Bearer let-me-in: RejectUpload, StatusCode 401,
                              header WWW-Authenticate: Bearer, body "who are you"
"""
import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = sys.argv[1]
lock = threading.Lock()
failures = {}


def answer(hook):
    kind = hook["Type"]
    meta = hook["Event"]["Upload"].get("MetaData") or {}
    if "fail" in meta:
        key = (kind, meta.get("token", ""))
        with lock:
            failures[key] = failures.get(key, 0) + 1
            if failures[key] <= int(meta["fail"]):
                return 500, {"error": "receiver failing on purpose"}
    if kind == "pre-create":
        if "reject" in meta or meta.get("filename", "").startswith("reject-"):
            return 200, {
                "RejectUpload": True,
                "HTTPResponse": {
                    "StatusCode": 403,
                    "Body": '{"message":"over quota"}',
                    "Header": {"X-Reason": "quota", "Content-Type": "application/json"},
                },
            }
        changes = {}
        if "chosen_id" in meta:
            changes["ID"] = meta["chosen_id"]
        if "rename" in meta:
            changes["MetaData"] = {"filename": meta["rename"], "checked": "yes"}
        if not changes:
            return 200, {}
        return 200, {"ChangeFileInfo": changes, "HTTPResponse": {"Header": {"X-Hook-Seen": "yes"}}}
    if kind == "post-receive" and "stop" in meta:
        return 200, {"StopUpload": True, "HTTPResponse": {"Body": "stopped by hook"}}
    if kind == "pre-finish":
        if "refuse_finish" in meta:
            return 200, {"HTTPResponse": {"StatusCode": 422, "Body": "not this file"}}
        if "finish_header" in meta:
            return 200, {"HTTPResponse": {"Header": {"X-Finished": "yes"}}}
    if kind == "pre-terminate" and "keep" in meta:
        return 200, {
            "RejectTermination": True,
            "HTTPResponse": {"StatusCode": 409, "Body": "keep it"},
        }
    if kind == "pre-access" and "private" in meta:
        auth = hook["Event"]["HTTPRequest"]["Header"].get("Authorization") or [""]
        if auth[0] != "Bearer let-me-in":
            return 200, {
                "RejectUpload": True,
                "HTTPResponse": {
                    "StatusCode": 401,
                    "Body": "who are you",
                    "Header": {"WWW-Authenticate": "Bearer"},
                },
            }
    return 200, {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        hook = json.loads(body)
        hook["_forwarded"] = {k: v for k, v in self.headers.items() if k.lower().startswith("x-")}
        with lock:
            with open(LOG, "a") as f:
                f.write(json.dumps(hook) + "\n")
        status, response = answer(hook)
        out = json.dumps(response).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if len(sys.argv) > 3:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
