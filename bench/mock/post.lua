-- wrk script: POST a chat completion to weft mock (keep-alive).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-weft-mock"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are concise."},{"role":"user","content":"Which documents do I need to fly from Paris to Montreal?"}],"max_tokens":64}'
