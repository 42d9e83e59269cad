--- weft: the public API of the runtime.
---
--- Scripts run by `weft run` see this module as the global `weft`; other code
--- gets it with `require "weft"`. Every script, server request and spawned
--- function runs in a task (a coroutine scheduled by the host). Functions
--- that wait (sleep, HTTP, task:wait) suspend only the calling task; the rest
--- keep running.
local T = require "weft._task"
local errors = require "weft.error"

local select, error, type, unpack, xpcall, tostring =
    select, error, type, unpack, xpcall, tostring
local spawn, join, suspend, wake, current = T.spawn, T.methods.join, T.suspend, T.wake, T.current
local exit = T.exit
local traceback = debug.traceback
local floor = math.floor

local M = {}

M._VERSION = "0.1.0"
M.error = errors

local function pack(...)
    return { n = select("#", ...), ... }
end

---@class weft.Task
---@field wait fun(self: weft.Task, timeout?: number): ... wait for the results; re-raises the task's error
---@field cancel fun(self: weft.Task): boolean request cancellation; false when already finished
---@field status fun(self: weft.Task): "ready"|"running"|"waiting"|"done"|"failed"|"cancelled"
---@field id fun(self: weft.Task): integer
---@field traceback fun(self: weft.Task): string|nil traceback of a failed task
local task_methods = T.methods

--- Wait until the task finishes and return its results. A failed task's
--- error is raised again (a cancelled task raises a `cancelled` error).
--- With `timeout` (seconds), raises a `timeout` error when the task has not
--- finished by then (the task keeps running).
---@param self weft.Task
---@param timeout? number
function task_methods.wait(self, timeout)
    if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
        error("task:wait: timeout must be a number >= 0", 2)
    end
    local r = pack(join(self, timeout))
    if r[1] then return unpack(r, 2, r.n) end
    error(r[2], 0)
end

--- Run `fn(...)` in a new task. It starts when the current task next waits.
---@param fn function
---@return weft.Task
function M.spawn(fn, ...)
    if type(fn) ~= "function" then
        error("weft.spawn: expected a function, got " .. type(fn), 2)
    end
    return T.spawn_user(fn, ...)
end

--- The running task, or nil in the main Lua thread.
---@return weft.Task|nil
function M.current()
    return current()
end

--- Suspend the current task for `seconds` (0 yields to other ready tasks).
---@param seconds number
function M.sleep(seconds)
    if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 or seconds == math.huge then
        error("weft.sleep: seconds must be a finite number >= 0", 2)
    end
    local _, err = T.sleep(seconds)
    if err then error(err, 0) end
end

--- End the process cleanly with status `code` (default 0; true is 0 and
--- false is 1, as for os.exit): every task is cancelled (each sees a
--- `cancelled` error, so its cleanup runs), servers close, and once the
--- cancelled tasks have finished the host does what it does at the end of
--- any script (the summary, flushing, freeing) and exits with `code`. The
--- caller does not go on: weft.exit does not return. In `weft run` and
--- `weft -e` scripts os.exit is this function. The first code given stands.
---@param code? integer|boolean exit status from 0 to 255
function M.exit(code)
    if code == nil or code == true then
        code = 0
    elseif code == false then
        code = 1
    elseif type(code) ~= "number" or code ~= floor(code) or code < 0 or code > 255 then
        error("weft.exit: code must be an integer from 0 to 255 or a boolean, got " .. tostring(code), 2)
    end
    return exit(code)
end

--- Monotonic clock in seconds (for durations; not wall-clock time).
---@return number
M.now = T.now

--- Wall-clock time in seconds since the epoch, with sub-second precision.
---@return number
M.time = T.time

-- Keep the traceback of a failure that is carried as a value.
local function capture(e)
    if errors.is(e) and e.traceback == nil then
        e.traceback = traceback(tostring(e), 2)
    end
    return e
end

local function check_fns(fns, fname)
    if type(fns) ~= "table" then
        error(fname .. ": expected a table of functions", 3)
    end
    for i = 1, #fns do
        if type(fns[i]) ~= "function" then
            error(fname .. ": element " .. i .. " is a " .. type(fns[i]) .. ", not a function", 3)
        end
    end
    if current() == nil then
        error(fname .. ": must be called from a weft task", 3)
    end
end

local function cancel_all(tasks)
    for i = 1, #tasks do tasks[i]:cancel() end
end

-- Run every function in its own task and park the caller until `decide`
-- says it is done. `decide(i, ok, value)` is called as each finishes and
-- returns true to wake the caller.
local function fan_out(fns, decide)
    local parent = current()
    local tasks, woken = {}, false
    for i = 1, #fns do
        local fn = fns[i]
        tasks[i] = spawn(function()
            local ok, v = xpcall(fn, capture)
            if not woken and decide(i, ok, v) then
                woken = true
                wake(parent)
            end
        end)
    end
    local _, err = suspend()
    woken = true -- late finishers must not wake an unrelated suspend()
    return tasks, err
end

--- Run every function concurrently and return their first results, in
--- order. If one fails, the others are cancelled and its error is raised.
---@param fns function[]
---@return any[]
function M.all(fns)
    check_fns(fns, "weft.all")
    local n = #fns
    if n == 0 then return {} end
    local results, pending, failure = {}, n, nil
    local tasks, err = fan_out(fns, function(i, ok, v)
        if not ok then
            failure = failure or v
            return true
        end
        results[i] = v
        pending = pending - 1
        return pending == 0
    end)
    if err or failure then
        cancel_all(tasks)
        error(err or failure, 0)
    end
    return results
end

--- Run every function concurrently; the first to succeed wins and the
--- others are cancelled. Returns its first result and its index. When all
--- fail, raises the error of the last one to fail.
---@param fns function[]
---@return any value, integer index
function M.any(fns)
    check_fns(fns, "weft.any")
    local n = #fns
    if n == 0 then error("weft.any: needs at least one function", 2) end
    local winner, value, failed, last_err = nil, nil, 0, nil
    local tasks, err = fan_out(fns, function(i, ok, v)
        if ok then
            winner, value = i, v
            return true
        end
        failed, last_err = failed + 1, v
        return failed == n
    end)
    cancel_all(tasks)
    if err then error(err, 0) end
    if winner then return value, winner end
    error(last_err, 0)
end

--- Run `fn(...)` in a task and wait at most `seconds` for it. On time-out
--- the task is cancelled and a `timeout` error is raised; otherwise returns
--- its results (or raises its error).
---@param seconds number
---@param fn function
function M.timeout(seconds, fn, ...)
    if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 then
        error("weft.timeout: seconds must be a number >= 0", 2)
    end
    if type(fn) ~= "function" then
        error("weft.timeout: expected a function, got " .. type(fn), 2)
    end
    local t = spawn(fn, ...)
    local r = pack(join(t, seconds))
    if r[1] then return unpack(r, 2, r.n) end
    if r[1] == nil then t:cancel() end -- timed out, or we were cancelled
    error(r[2], 0)
end

--- A handle on a secret ("env:NAME", "file:PATH", "cmd:COMMAND", ...); see weft.secrets.
---@param ref string
---@param opts? table
---@return userdata
function M.secret(ref, opts)
    return require("weft.secrets").secret(ref, opts)
end

--- Subscribe fn(event) to "request" (an attempt starts), "response" (a
--- call succeeded), "retry", "error" (a call failed), "reload" (a plugin
--- loaded or failed to) or "escalate" (a policy met a failure a human
--- should know of, such as a rejected key: {policy=, target=, kind=,
--- message=, call_id=}). A hook that raises is logged and the call goes on.
--- Returns a function that unsubscribes.
---@param event "request"|"response"|"retry"|"error"|"reload"|"escalate"
---@param fn fun(ev: table)
---@return fun()
function M.on(event, fn)
    return require("weft.calls").on(event, fn)
end

--- The model `name` ("provider/model" or an alias from weft.configure):
--- an object with :complete(req), :stream(req, on_event), :embed(texts)
--- and :usage(). See weft.model (lua/weft/model.lua) for the forms.
---@param name string
---@param opts? table request defaults
---@return weft.Model
function M.model(name, opts)
    local ok, m = pcall(require("weft.model").model, name, opts)
    if not ok then error(m, 2) end
    return m
end

--- Configure providers (base URL, secret, limits, retry, breaker,
--- timeouts, prices, plugin options) and model aliases.
---@param cfg {providers?: table, models?: table}
function M.configure(cfg)
    local info = debug.getinfo(2, "Sl")
    local where
    if info and info.source:sub(1, 1) == "@" then
        where = { file = info.source:sub(2), line = info.currentline }
    end
    local mod = require "weft.model"
    local ok, err = pcall(mod.configure, cfg, where and mod.source_of(where.file, where.line))
    -- the message names the caller's file and line already when it is known
    if not ok then error(err, where and 0 or 2) end
end

--- Load plugin files again now: all, or those named `name`. A broken
--- version never replaces the one serving. Returns {[kind/name] = true
--- (reloaded) | false (unchanged) | error message}.
---@param name? string
function M.reload(name)
    return require("weft.plugins").reload(name)
end

--- Run fn(item, index) over a list or an iterator with bounded
--- concurrency; failures collected (see lua/weft/map.lua).
---@param items any[]|fun(): any
---@param fn fun(item: any, index: integer): any
---@param opts? weft.MapOptions
---@return weft.MapResult
function M.map(items, fn, opts)
    local ok, v = pcall(require("weft.map").map, items, fn, opts)
    if not ok then error(v, 0) end
    return v
end

--- Run every function concurrently to its end: {ok=, value= | error=} each.
---@param fns function[]
function M.settle(fns)
    local ok, v = pcall(require("weft.map").settle, fns)
    if not ok then error(v, 0) end
    return v
end

--- Run model calls in order, each step's output feeding the next, with an
--- optional checkpoint to resume from (see lua/weft/sequence.lua).
---@param steps weft.SequenceStep[]
---@param input any
---@param opts? {checkpoint?: string}
---@return weft.SequenceResult
function M.sequence(steps, input, opts)
    local ok, v = pcall(require("weft.sequence").run, steps, input, opts)
    if not ok then error(v, 0) end
    return v
end

--- Counters of the scheduler: live tasks and registry references.
---@return {tasks: integer, refs: integer}
M.stats = T.stats

-- Lazily loaded submodules: weft.http, weft.json, weft.log, weft.mock, ...
local lazy = { http = "weft.http", json = "weft.json", log = "weft.log", mock = "weft.mock",
               limiter = "weft.limiter", retry = "weft.retry", breaker = "weft.breaker",
               secrets = "weft.secrets", metrics = "weft.metrics", calls = "weft.calls", plugins = "weft.plugins",
               batch = "weft.batch", cache = "weft.cache", redis = "weft.redis" }
-- The names of the lazily loaded submodules (the REPL completes them).
M._lazy = lazy
setmetatable(M, {
    __index = function(t, k)
        local name = lazy[k]
        if name then
            local mod = require(name)
            rawset(t, k, mod)
            return mod
        end
    end,
})

return M
