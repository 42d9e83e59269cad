---@meta weft._http_client
-- Editor stubs for the C modules behind weft.http (runtime/lua_http_client.c,
-- runtime/lua_http_server.c). Scripts use weft.http instead.

---@class weft._http_client
local client = {}

---@class weft._http_client.Xfer : userdata
local Xfer = {}

---@class weft._http_client.StartOptions : weft.http.RequestOptions
---@field url? string absent when origin is given
---@field origin? string the configured base URL, "http(s)://host[:port][/prefix]" (no user info, query or fragment)
---@field path? string with origin: begins with "/", only URL path characters (letters, digits, "-._~!$&'()*+,;=:@/", %XX), no "." or ".." segment; appended to the origin's path
---@field query? string with origin: the query without "?", only query characters; auth.query parameters are appended after it
---@field redact? boolean response header values and the (non-streamed) body pass through secret redaction before they become Lua strings
---@field stream? boolean deliver "data" events (weft.http sets it for on_data)
---@field json? boolean a 2xx body (not streamed) is decoded from the buffer as res.json, no res.body; invalid text gives res.body and res.json_error

---@class weft._http_client.Response : weft.http.Response
---@field sends integer times the request went out: 1 normally, 2+ when libcurl resent it by itself on a fresh connection (a reused one died before any response byte)

--- Start a transfer. Errors returned (not raised): kind "invalid_request"
--- reason "bad_url" (url unusable); kind "integration" reason "origin"
--- (origin/path/query unusable, or the built URL parsed again is not on the
--- origin: nothing is sent); kind "integration" reason "auth_header" (a
--- header that auth renders is also in headers, or rendered twice). Raises
--- on misuse (url with origin, path without origin, bad types) and kind
--- "auth" for a secret not loaded or expired.
---@param opts weft._http_client.StartOptions
---@return weft._http_client.Xfer|nil xfer
---@return weft.Error|nil err
function client.start(opts) end

--- "data", chunk, head | "done", response (weft._http_client.Response) |
--- nil, err (transport errors carry `sends`, 0 when never sent); returns
--- nothing when it only woke up (call it again).
function Xfer:wait() end

--- Stop and free the transfer; true when it was still running.
---@return boolean
function Xfer:cancel() end

--- Counters: in_flight, sockets, pooled, started.
---@return {in_flight: integer, sockets: integer, pooled: integer, started: integer}
function client.stats() end

---@class weft._http_server
local server = {}

--- The second argument of a weft.http.serve handler.
---@class weft.http.ServerResponse : userdata
local ServerResponse = {}

--- Start a streaming response.
---@param status? integer 200..599, default 200
---@param headers? table<string, string|string[]>
---@return true|nil ok nil when the client is gone
---@return weft.Error|nil err kind transient
function ServerResponse:start(status, headers) end

--- Send a chunk; waits while the client is slow to read.
---@param chunk string
---@return boolean|nil ok false or nil once the client is gone
---@return weft.Error|nil err
function ServerResponse:write(chunk) end

--- End a streaming response.
function ServerResponse:finish() end

--- Drop the connection with a TCP reset.
function ServerResponse:abort() end

--- True once the client went away before the response was complete: it
--- closed or reset its connection while the handler ran (noticed at once,
--- so a handler sees it when it wakes from a sleep, before writing), or a
--- write failed. A client that half-closes after its request counts too.
---@return boolean
function ServerResponse:gone() end

--- From now until the answer is complete, the client going away cancels
--- the calling task (the handler) with reason "the client went away", so
--- what it waits for (an upstream call) is cancelled and freed at once.
--- False when the client is already gone.
---@return boolean
function ServerResponse:cancel_on_gone() end

--- Listen and serve; nil, err (kind invalid_request) when the address is unusable.
---@return userdata|nil server
---@return weft.Error|nil err
function server.serve(opts) end

return { client = client, server = server }
