---@meta weft._budget
-- Editor stubs for the plugin budget (runtime/lua_budget.c, budget.h).

---@class weft._budget
local M = {}

--- Call `fn(...)` like pcall under the current limits (an instruction count
--- hook, a time limit read by the same hook, and the allocation limit of
--- the state's allocator). On failure: false, the error, and when the budget
--- ended the call its kind ("instructions", "memory" or "time") and limit.
---@param fn function
---@return boolean ok
---@return any ...
function M.call(fn, ...) end

--- Open a span of code under the budget, for callers that wait between
--- spans (a policy's run, which calls the host in between): true when this
--- opened it, false when a call or span is open already (that one counts).
--- The limits are the defaults, or lower ones given (what is left of one
--- budget spread over several spans). The span must not yield.
---@param instructions? number
---@param seconds? number
---@param bytes? number
---@return boolean opened
function M.enter(instructions, seconds, bytes) end

--- Close the span `enter` opened (nothing when `opened` is false): what
--- ran out and its limit (nil, nil when nothing did), then what is left of
--- the span's instructions, seconds and bytes.
---@param opened boolean
---@return ("instructions"|"memory"|"time")? trip
---@return number? limit
---@return number? instructions_left
---@return number? seconds_left
---@return number? bytes_left
function M.leave(opened) end

--- Name the chunk of the calling function as the one that opens and closes
--- spans: a tripped budget does not interrupt its code (it must close the
--- span). Called once by weft.policy when it loads.
function M.span_host() end

--- True while a budgeted call runs that is over its budget (the sandbox's
--- pcall and xpcall raise again then). Allocates nothing.
---@return boolean
function M.tripped() end

--- Get, or set and get, the limits of the next calls.
---@param limits? {instructions?: number, memory?: number, time?: number}
---@return {instructions: number, memory: number, time: number}
function M.limits(limits) end

--- Calls made and budgets run out since the state was made.
---@return {calls: number, trips_instructions: number, trips_memory: number, trips_time: number}
function M.stats() end

--- A function copying values as plain data: raw reads, at most 100,000
--- tables nested at most 64 deep, the metatables in `allowed` kept, `null`
--- (json.null) kept; functions only with `functions` set (which also keeps
--- the shape of shared tables).
---@param allowed table<table, boolean>
---@param null any
---@return fun(v: any, functions?: boolean): any, string?
function M.copier(allowed, null) end

return M
