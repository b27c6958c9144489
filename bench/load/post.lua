-- wrk script: POST /api/todos with a JSON body; TOKEN comes from the environment.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"item":"bench item %d","description":"made by wrk","importance":"low","tags":["bench","load"]}', counter)
  return wrk.format(nil, nil, nil, body)
end
