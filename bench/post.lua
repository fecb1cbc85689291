-- wrk script: POST a small chat completion (model from env WRK_MODEL, default "chat").
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local model = os.getenv("WRK_MODEL") or "chat"
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Say hello in one short sentence, please."}],"max_tokens":16}'
local auth = os.getenv("WRK_AUTH")
if auth then wrk.headers["Authorization"] = "Bearer " .. auth end
