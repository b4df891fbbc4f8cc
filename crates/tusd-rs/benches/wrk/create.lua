-- creation-with-upload: every request creates an upload of
-- $TUSD_WRK_BODY_KIB KiB and sends all of it in the POST body.
local kib = tonumber(os.getenv("TUSD_WRK_BODY_KIB") or "16")
local body = string.rep("x", kib * 1024)
wrk.method = "POST"
wrk.body = body
wrk.headers["Tus-Resumable"] = "1.0.0"
wrk.headers["Upload-Length"] = tostring(#body)
wrk.headers["Content-Type"] = "application/offset+octet-stream"
