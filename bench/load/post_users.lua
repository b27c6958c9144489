-- wrk script: POST /api/todos as many users in turn; TOKENS (comma-separated bearer tokens)
-- comes from the environment. Each thread starts at another user, so at any moment the
-- connections write for different users.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local tokens = {}
for token in string.gmatch(os.getenv("TOKENS"), "[^,]+") do
  tokens[#tokens + 1] = token
end
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local counter = 0
request = function()
  counter = counter + 1
  local token = tokens[1 + (counter * 7 + (tid or 0) * 13) % #tokens]
  local body = string.format('{"item":"bench item %d","description":"made by wrk","importance":"low","tags":["bench","load"]}', counter)
  return wrk.format(nil, nil, {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
