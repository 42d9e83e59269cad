---@meta weft._http_client
-- Editor stubs for the C modules behind weft.http (runtime/lua_http_client.c,
-- runtime/lua_http_server.c). Scripts use weft.http instead.

---@class weft._http_client
local client = {}

---@class weft._http_client.Xfer : userdata
local Xfer = {}

--- Start a transfer (see weft.http.RequestOptions, plus `stream`).
---@return weft._http_client.Xfer|nil xfer
---@return weft.Error|nil err invalid URL
function client.start(opts) end

--- "data", chunk, head | "done", response | nil, err; returns nothing when
--- it only woke up (call it again).
function Xfer:wait() end

--- Stop and free the transfer; true when it was still running.
---@return boolean
function Xfer:cancel() end

--- Counters: in_flight, sockets, pooled, started.
---@return {in_flight: integer, sockets: integer, pooled: integer, started: integer}
function client.stats() end

---@class weft._http_server
local server = {}

--- Listen and serve; nil, err (kind invalid_request) when the address is unusable.
---@return userdata|nil server
---@return weft.Error|nil err
function server.serve(opts) end

return { client = client, server = server }
