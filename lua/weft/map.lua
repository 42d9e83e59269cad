--- weft.map and weft.settle: many calls at once, bounded.
---
--- ```lua
--- local out = weft.map(documents, function(doc, i)
---     return weft.model("smart"):complete("Summarize: " .. doc).text
--- end, { concurrency = 20 })
--- print(out.ok, out.failed)                  -- counts
--- for _, e in ipairs(out.errors) do print(e.index, e.error.kind) end
--- -- out.results[i] is the value for items[i] (nil where it failed)
--- ```
---
--- `weft.map(items, fn, opts)` runs `fn(item, index)` over `items` (a list,
--- or an iterator function returning the next item and nil at the end)
--- with at most `opts.concurrency` (default 8) running at once: a fixed
--- pool of tasks pulls the next item when it is free, so a million items
--- never mean a million tasks (items of an iterator are pulled only when a
--- task is free). Results are kept in input order; a failure is collected
--- as `{index=, item=, error=}` in `errors` (input order too) and the rest
--- go on, unless `opts.fail_fast` (the first failure cancels the rest and
--- is raised) or `opts.min_success` (once that many successes can no
--- longer happen, the rest is cancelled and a `cancelled`-kind error
--- names the counts). `opts.collect = false` keeps no results (counts and
--- errors only: bounded memory for unbounded work). When the calling task
--- is cancelled (Ctrl-C), the running items are cancelled with it.
---
--- Progress (`opts.progress`, default: when there are 20 items or more,
--- or an iterator): on a terminal, one line on stderr redrawn at most 10
--- times a second (done/total, rate, ETA, errors, tokens and cost of the
--- calls made since the map began) and cleared at the end; otherwise a log
--- line every 5 seconds. `weft run --quiet` (or `require("weft.map").quiet = true`)
--- turns it off.
---
--- `weft.settle(fns)` runs every function to completion, concurrently, and
--- returns `{ok = true, value = v}` or `{ok = false, error = e}` for each,
--- in order: no failure cancels another.
local T = require "weft._task"
local errors = require "weft.error"
local log = require "weft.log"

local type, pairs, ipairs, tostring, error, pcall, xpcall, select =
    type, pairs, ipairs, tostring, error, pcall, xpcall, select
local spawn, current, now, join = T.spawn, T.current, T.now, T.methods.join
local format, floor = string.format, math.floor
local traceback = debug.traceback

local M = {}

--- No progress output at all (weft run --quiet sets it).
M.quiet = false
--- Progress goes to a terminal (a redrawn line) rather than log lines.
M.tty = false

--- How progress is shown: "quiet", "tty" or "log" (`weft` sets it from
--- --quiet and whether stderr is a terminal).
---@param mode "quiet"|"tty"|"log"
function M.output(mode)
    if mode ~= "quiet" and mode ~= "tty" and mode ~= "log" then error("weft.map.output: quiet, tty or log", 2) end
    M.quiet, M.tty = mode == "quiet", mode == "tty"
end

local PROGRESS_MIN_ITEMS = 20
local REDRAW, LOG_EVERY = 0.1, 5

------------------------------------------------------------ progress

-- Whether stderr is a terminal: `weft run` says so (M.tty); tests may set
-- WEFT_PROGRESS_TTY=1/0.
local function tty()
    local e = os.getenv("WEFT_PROGRESS_TTY")
    if e == "1" then return true elseif e == "0" then return false end
    return M.tty == true
end

-- Tokens and cost of every call recorded so far (the registry: all
-- providers and models).
local function spent_now()
    local std = require("weft.metrics").std
    return (std.tokens:value()), (std.cost:value())
end

local function duration(s)
    if not s or s ~= s or s == math.huge then return "?" end
    if s >= 3600 then return format("%dh%02dm", floor(s / 3600), floor(s % 3600 / 60)) end
    if s >= 60 then return format("%dm%02ds", floor(s / 60), floor(s % 60)) end
    return format("%.0fs", s)
end

local function progress_line(p)
    if p.line then return p.line(p) end
    local el = now() - p.t0
    local rate = el > 0 and p.done / el or 0
    local tokens, cost = spent_now()
    local total = p.total and tostring(p.total) or "?"
    local eta = (p.total and rate > 0) and duration((p.total - p.done) / rate) or "?"
    return format("%s %d/%s  %.1f/s  ETA %s  errors %d  tokens %d  $%.4f", p.label, p.done, total, rate, eta,
        p.failed, tokens - p.tokens0, cost - p.cost0)
end

local function progress_new(opts, total)
    local want = opts.progress
    if want == nil then want = total == nil or total >= PROGRESS_MIN_ITEMS end
    if not want or M.quiet then return nil end
    local p = { t0 = now(), done = 0, failed = 0, total = total, label = opts.label or "weft.map",
                tty = tty(), last = 0, width = 0, line = opts.line }
    p.tokens0, p.cost0 = spent_now()
    return p
end

local function progress_tick(p, final)
    if not p then return end
    local t = now()
    if p.tty then
        if final or t - p.last >= REDRAW then
            p.last = t
            local line = progress_line(p)
            local pad = p.width > #line and (" "):rep(p.width - #line) or ""
            p.width = #line
            io.stderr:write("\r", line, pad)
            if final then io.stderr:write("\r", (" "):rep(p.width), "\r") end
            io.stderr:flush()
        end
    elseif final or t - p.last >= LOG_EVERY then
        if p.last > 0 or final then
            log.info("progress", { label = p.label, done = p.done, total = p.total, failed = p.failed,
                                   line = progress_line(p) })
        end
        p.last = t
    end
end

-- For weft.batch: the same progress output with its own line
-- (opts.line(p) -> string; p.done, p.failed, p.total, p.t0).
M._progress_new, M._progress_tick, M._duration = progress_new, progress_tick, duration

------------------------------------------------------------ map

local function capture(e)
    if errors.is(e) and e.traceback == nil then e.traceback = traceback(tostring(e), 2) end
    return e
end

---@class weft.MapResult
---@field results any[] results[i] for items[i] (nil where it failed; empty with collect = false)
---@field errors {index: integer, item: any, error: any}[] the failures, in input order
---@field ok integer
---@field failed integer
---@field elapsed number seconds

---@class weft.MapOptions
---@field concurrency? integer at most this many running at once (8)
---@field fail_fast? boolean the first failure cancels the rest and is raised
---@field min_success? integer stop once this many successes can no longer happen
---@field collect? boolean keep the results (true)
---@field progress? boolean show progress (default: 20 items or more)
---@field label? string the progress line's label

--- Run fn(item, index) over items with bounded concurrency (see the module
--- doc). Returns a weft.MapResult.
---@param items any[]|fun(): any
---@param fn fun(item: any, index: integer): any
---@param opts? weft.MapOptions
---@return weft.MapResult
function M.map(items, fn, opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("weft.map: opts must be a table", 2) end
    if type(fn) ~= "function" then error("weft.map: fn must be a function", 2) end
    local iter, total
    if type(items) == "table" then
        total = #items
        local i = 0
        iter = function()
            i = i + 1
            if i <= total then return items[i], true end
            return nil, false
        end
    elseif type(items) == "function" then
        iter = function()
            local v = items()
            return v, v ~= nil
        end
    else
        error("weft.map: items must be a list or an iterator function", 2)
    end
    local conc = opts.concurrency or 8
    if type(conc) ~= "number" or conc < 1 or conc ~= floor(conc) then
        error("weft.map: concurrency must be an integer >= 1", 2)
    end
    local min_success = opts.min_success
    if min_success ~= nil and (type(min_success) ~= "number" or min_success < 0) then
        error("weft.map: min_success must be a number >= 0", 2)
    end
    if not current() then error("weft.map: must be called from a weft task", 2) end
    local collect = opts.collect ~= false
    local results, errs = {}, {}
    local nok, nfailed, started = 0, 0, 0
    local stop, stop_err = false, nil
    local t0 = now()
    local p = progress_new(opts, total)
    local workers, list = {}, {}

    local function halt(e)
        if stop then return end
        stop, stop_err = true, e
        for w in pairs(workers) do
            if w ~= current() then w:cancel() end
        end
    end

    local function worker()
        while not stop do
            local item, more = iter()
            if not more then break end
            started = started + 1
            local index = started
            local ok, v = xpcall(fn, capture, item, index)
            if stop then break end
            if ok then
                nok = nok + 1
                if collect then results[index] = v end
            else
                if errors.is(v) and v.kind == "cancelled" and stop then break end
                nfailed = nfailed + 1
                errs[#errs + 1] = { index = index, item = item, error = v }
                if opts.fail_fast then
                    halt(v)
                elseif min_success and total and nok + (total - started) < min_success then
                    halt(errors.new("cancelled", format("weft.map: %d successes can no longer be reached (%d ok, %d failed)",
                        min_success, nok, nfailed)))
                end
            end
            if p then
                p.done, p.failed = nok + nfailed, nfailed
                progress_tick(p)
            end
        end
    end

    for k = 1, conc do
        local w
        w = spawn(function()
            local ok, e = pcall(worker)
            workers[w] = nil
            if not ok and not stop then halt(e) end
        end)
        workers[w] = true
        list[k] = w
    end
    -- every worker to its end (one cancelled before it started ends too)
    for _, w in ipairs(list) do
        local r, e = join(w)
        if r == nil then
            -- this task was cancelled (Ctrl-C): so are the items running
            stop = true
            for x in pairs(workers) do x:cancel() end
            if p then progress_tick(p, true) end
            error(e or errors.new("cancelled", "weft.map: cancelled"), 0)
        end
    end
    if p then
        p.done, p.failed = nok + nfailed, nfailed
        progress_tick(p, true)
    end
    table.sort(errs, function(a, b) return a.index < b.index end)
    if stop_err then error(stop_err, 0) end
    return { results = results, errors = errs, ok = nok, failed = nfailed, elapsed = now() - t0 }
end

--- Run every function concurrently to its end: {ok = true, value = v} or
--- {ok = false, error = e} for each, in order. No failure cancels another;
--- when the calling task is cancelled, so are they.
---@param fns function[]
---@return {ok: boolean, value?: any, error?: any}[]
function M.settle(fns)
    if type(fns) ~= "table" then error("weft.settle: expected a list of functions", 2) end
    for i = 1, #fns do
        if type(fns[i]) ~= "function" then error("weft.settle: element " .. i .. " is not a function", 2) end
    end
    local out = M.map(fns, function(f) return f() end, { concurrency = #fns > 0 and #fns or 1, progress = false })
    local list = {}
    for i = 1, #fns do list[i] = { ok = true, value = out.results[i] } end
    for _, e in ipairs(out.errors) do list[e.index] = { ok = false, error = e.error } end
    return list
end

return M
