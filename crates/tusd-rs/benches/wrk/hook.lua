-- A hook call as tusd-rs sends it (a pre-create of a 16 KiB upload), POSTed
-- straight at a hook receiver: scripts/bench-hooks.sh measures with it how
-- many calls the receiver can answer, to show it is not the bottleneck.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"Type":"pre-create","Event":{"Upload":{"ID":"","Size":16384,'
  .. '"SizeIsDeferred":false,"Offset":0,"MetaData":{},"IsPartial":false,'
  .. '"IsFinal":false,"PartialUploads":[],"Storage":{}},"HTTPRequest":'
  .. '{"Method":"POST","URI":"/files/","RemoteAddr":"127.0.0.1:50312","Header":'
  .. '{"Content-Length":["16384"],"Content-Type":["application/offset+octet-stream"],'
  .. '"Host":["127.0.0.1:8080"],"Tus-Resumable":["1.0.0"],"Upload-Length":["16384"]}}}}'
