-- wrk script: POST /api/todos with a time range no other request of the run overlaps (a
-- minute each, slots interleaved across wrk's threads); TOKEN comes from the environment.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local counter = 0
local base = 1767225600 -- 2026-01-01T00:00:00Z
request = function()
  counter = counter + 1
  local slot = counter * 8 + (tid or 0)
  local start = os.date("!%Y-%m-%dT%H:%M:%SZ", base + slot * 120)
  local finish = os.date("!%Y-%m-%dT%H:%M:%SZ", base + slot * 120 + 60)
  local body = string.format('{"item":"bench item %d","startTime":"%s","endTime":"%s","importance":"low"}', counter, start, finish)
  return wrk.format(nil, nil, nil, body)
end
