#!/usr/bin/env python3
"""A tusd v2 gRPC hook server for the tests (grpcio), with stubs generated
at start from the project's proto (crates/tusd-hooks/proto/hook.proto).

Usage: grpc_receiver.py PROTO_DIR OUT_DIR LOG_FILE [CERT_PEM KEY_PEM [CLIENT_CA_PEM]]
With a certificate and key it serves TLS; with a client CA too it requires
client certificates signed by it (mutual TLS).
Prints its port (127.0.0.1) as the first stdout line; appends each call as
one JSON line to LOG_FILE; answers, steered by the upload's metadata:
  pre-create   reject=1      rejectUpload, statusCode 403, body "no via grpc", header X-Grpc: yes
               rename=NAME   changeFileInfo.metaData = {filename: NAME}
               chosen_id=ID  changeFileInfo.id = ID
  post-receive stop=1        stopUpload, body "stopped via grpc"
  pre-finish   refuse_finish=1  statusCode 422, body "grpc says no"
  pre-access   private=1     unless the request's Authorization header is
                             "Bearer let-me-in": rejectUpload, statusCode 401,
                             body "grpc asks who you are"
"""
import json
import sys
import threading
from concurrent import futures

from grpc_tools import protoc

proto_dir, out_dir, log = sys.argv[1], sys.argv[2], sys.argv[3]
if protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", "hook.proto"]) != 0:
    sys.exit("protoc failed")
sys.path.insert(0, out_dir)

import grpc  # noqa: E402
import hook_pb2  # noqa: E402
import hook_pb2_grpc  # noqa: E402
from google.protobuf.json_format import MessageToDict  # noqa: E402

lock = threading.Lock()


class Hooks(hook_pb2_grpc.HookHandlerServicer):
    def InvokeHook(self, request, context):
        entry = MessageToDict(request, preserving_proto_field_name=True)
        entry["_metadata"] = {k: v for k, v in context.invocation_metadata()}
        with lock:
            with open(log, "a") as f:
                f.write(json.dumps(entry) + "\n")
        meta = dict(request.event.upload.metaData)
        kind = request.type
        res = hook_pb2.HookResponse()
        if kind == "pre-create":
            if "reject" in meta:
                res.rejectUpload = True
                res.httpResponse.statusCode = 403
                res.httpResponse.body = "no via grpc"
                res.httpResponse.header["X-Grpc"] = "yes"
            if "rename" in meta:
                res.changeFileInfo.metaData["filename"] = meta["rename"]
            if "chosen_id" in meta:
                res.changeFileInfo.id = meta["chosen_id"]
        elif kind == "post-receive" and "stop" in meta:
            res.stopUpload = True
            res.httpResponse.body = "stopped via grpc"
        elif kind == "pre-finish" and "refuse_finish" in meta:
            res.httpResponse.statusCode = 422
            res.httpResponse.body = "grpc says no"
        elif kind == "pre-access" and "private" in meta:
            if request.event.httpRequest.header.get("Authorization") != "Bearer let-me-in":
                res.rejectUpload = True
                res.httpResponse.statusCode = 401
                res.httpResponse.body = "grpc asks who you are"
        return res


server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
hook_pb2_grpc.add_HookHandlerServicer_to_server(Hooks(), server)
if len(sys.argv) > 5:
    def read(path):
        with open(path, "rb") as f:
            return f.read()
    client_ca = read(sys.argv[6]) if len(sys.argv) > 6 else None
    credentials = grpc.ssl_server_credentials(
        [(read(sys.argv[5]), read(sys.argv[4]))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
else:
    port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
