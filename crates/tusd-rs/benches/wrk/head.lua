-- HEAD on the uploads listed in $TUSD_WRK_PATHS (one URL path a line),
-- each connection keeping to its own upload, as a resuming client does.
local paths = {}
for line in io.lines(os.getenv("TUSD_WRK_PATHS")) do
  paths[#paths + 1] = line
end
local counter = 0
function setup(thread)
  thread:set("first", counter)
  counter = counter + 1
end
local n = 0
function request()
  n = n + 1
  local path = paths[((first + n) % #paths) + 1]
  return wrk.format("HEAD", path, { ["Tus-Resumable"] = "1.0.0" })
end
