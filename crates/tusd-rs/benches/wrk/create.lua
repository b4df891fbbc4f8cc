-- creation-with-upload: every request creates an upload of
-- $TUSD_WRK_BODY_KIB KiB and sends all of it in the POST body. The bytes
-- differ with their position (byte i is (7 i mod 251)), so a check of what
-- was stored catches a byte at the wrong offset (scripts/bench-peers.py
-- builds the same body).
local kib = tonumber(os.getenv("TUSD_WRK_BODY_KIB") or "16")
local block = {}
for i = 0, 250 do
  block[#block + 1] = string.char((i * 7) % 251)
end
local len = kib * 1024
local body = string.rep(table.concat(block), math.floor(len / 251) + 1):sub(1, len)
wrk.method = "POST"
wrk.body = body
wrk.headers["Tus-Resumable"] = "1.0.0"
wrk.headers["Upload-Length"] = tostring(#body)
wrk.headers["Content-Type"] = "application/offset+octet-stream"
