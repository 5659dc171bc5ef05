-- wrk script: each request carries the next token from TOKENS_FILE (one
-- per line), or always the first one when REPEAT=1.
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do tokens[#tokens + 1] = line end
local repeat_first = os.getenv("REPEAT") == "1"
local i = 0
request = function()
  i = i + 1
  local t = repeat_first and tokens[1] or tokens[(i % #tokens) + 1]
  return wrk.format("GET", "/auth", { ["Authorization"] = "Bearer " .. t })
end
