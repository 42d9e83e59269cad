--- weft.metrics: the metrics registry (runtime/metrics.c), Prometheus text
--- exposition, and the standard metrics the host records at every call.
---
--- ```lua
--- local calls = weft.metrics.counter("app_calls_total", "Calls made.", { "route" })
--- calls:inc(1, "summary")
--- local lat = weft.metrics.histogram("app_step_seconds", "Step latency.", { "step" })   -- latency buckets
--- local s = lat:labels("fetch"); s:observe(0.12)    -- a cached series: the cheap path
--- print(calls:value("summary"), lat:value())         -- read back: 1, 1 (a histogram's count)
--- print(weft.metrics.text())                        -- Prometheus text format 0.0.4
--- weft.metrics.serve { host = "127.0.0.1", port = 9464 }   -- GET /metrics
--- ```
---
--- Every metric has a cap on its number of label combinations (1000 by
--- default, `metric:max_series(n)`); beyond it observations go to one series
--- whose labels are all "other", and weft_metrics_overflow_total{metric=}
--- counts them. Registering a name again with the same type and labels
--- returns the same metric (a reloaded plugin keeps its series).
---
--- A loaded secret's value never shows in the exposition or a snapshot:
--- names, help and label values read `<secret NAME>` wherever they hold
--- one (redacted when exposed, so a value loaded as a secret after its
--- series was created is replaced too).
local C = require "weft._metrics"
local redact = require("weft._secrets").redact

local type, error, pairs, pcall, tostring, tonumber = type, error, pairs, pcall, tostring, tonumber

local M = {}

---@class weft.Metric
---@field inc fun(self: weft.Metric, v?: number, ...: string|number|boolean) counter/gauge: add v (default 1) to the series of these label values
---@field set fun(self: weft.Metric, v: number, ...: string|number|boolean) gauge: set the series of these label values
---@field observe fun(self: weft.Metric, v: number, ...: string|number|boolean) histogram: record one observation
---@field labels fun(self: weft.Metric, ...: string|number|boolean): weft.MetricSeries the series of these label values (cache it on hot paths)
---@field max_series fun(self: weft.Metric, n: integer) cap on label combinations (default 1000)
---@field value fun(self: weft.Metric, ...: string|number|boolean|nil): number, integer read back, creating nothing: the value (a histogram's count) summed over the series whose label values match these (a nil or missing one matches any), and how many matched (0: none, the sum is 0)
---@field unset fun(self: weft.Metric, ...: string|number|boolean): boolean gauge: take the series of these label values out of the exposition, snapshots and readings until it is set again (a state that no longer exists); false when there was none

---@class weft.MetricSeries
---@field inc fun(self: weft.MetricSeries, v?: number)
---@field set fun(self: weft.MetricSeries, v: number)
---@field observe fun(self: weft.MetricSeries, v: number)
---@field value fun(self: weft.MetricSeries): number its value (a histogram's count)

local function new(kind, name, help, labels, buckets)
    if type(name) ~= "string" then error("weft.metrics." .. kind .. ": name must be a string", 3) end
    if help ~= nil and type(help) ~= "string" then error("weft.metrics." .. kind .. ": help must be a string", 3) end
    if labels ~= nil and type(labels) ~= "table" then error("weft.metrics." .. kind .. ": labels must be a list of names", 3) end
    local ok, m = pcall(C.new, kind, name, help, labels or {}, buckets)
    if not ok then error(m, 3) end
    return m
end

--- A counter: a value that only goes up. Its name must end in `_total`.
---@param name string
---@param help? string
---@param labels? string[] label names
---@return weft.Metric
function M.counter(name, help, labels) return new("counter", name, help, labels) end

--- A gauge: a value that goes up and down.
---@param name string
---@param help? string
---@param labels? string[]
---@return weft.Metric
function M.gauge(name, help, labels) return new("gauge", name, help, labels) end

--- A histogram. `buckets`: a list of upper bounds, "latency" (the default:
--- seconds, 1 ms to 5 min) or "tokens" (16 to 1M).
---@param name string
---@param help? string
---@param labels? string[]
---@param buckets? number[]|"latency"|"tokens"
---@return weft.Metric
function M.histogram(name, help, labels, buckets)
    if buckets ~= nil and type(buckets) ~= "table" and type(buckets) ~= "string" then
        error("weft.metrics.histogram: buckets must be a list, \"latency\" or \"tokens\"", 2)
    end
    return new("histogram", name, help, labels, buckets)
end

local collectors = setmetatable({}, { __mode = "k" })

--- Register fn(owner), called before every exposition and snapshot to
--- refresh gauges from `owner` (a limiter, a breaker). The collector lives
--- as long as its owner does.
---@param owner table|userdata
---@param fn fun(owner: any)
function M.collect(owner, fn)
    collectors[owner] = fn
end

local function run_collectors()
    for owner, fn in pairs(collectors) do
        local ok, err = pcall(fn, owner)
        if not ok then
            require("weft.log").warn("metrics collector failed", { error = tostring(err) })
        end
    end
end

--- Update several series at once, each by its kind: a counter adds its
--- value, a gauge is set to it, a histogram observes it; a nil series is
--- skipped. `weft.metrics.record(calls, 1, latency, d)` is
--- `calls:inc(); latency:observe(d)` in one call into C.
---@type fun(s1: userdata?, v1: number, ...)
M.record = C.record

--- The exposition in Prometheus text format 0.0.4.
---@return string
function M.text()
    run_collectors()
    return C.text()
end

---@class weft.MetricSnapshot
---@field type "counter"|"gauge"|"histogram"
---@field help string
---@field series {labels: table<string, string>, value?: number, buckets?: number[][], sum?: number, count?: number}[]

--- Every metric as a Lua table: name -> {type=, help=, series = {{labels=,
--- value=} or {labels=, buckets={{le, cumulative count}...}, sum=, count=}}}.
---@return table<string, weft.MetricSnapshot>
function M.snapshot()
    run_collectors()
    return C.snapshot()
end

--- The value of one series in a snapshot (nil when absent): for a
--- histogram its count. `labels` lists the label values to match (a
--- secret's value among them matches its redacted form).
---@param name string
---@param labels? table<string, string>
---@return number?
function M.value(name, labels)
    run_collectors()
    local m = C.snapshot()[redact(name)]
    if not m then return nil end
    for _, s in pairs(m.series) do
        local match = true
        for k, v in pairs(labels or {}) do
            if s.labels[redact(k)] ~= redact(tostring(v)) then match = false break end
        end
        if match then return s.value or s.count end
    end
    return nil
end

---@class weft.MetricsServeOptions
---@field host? string default 127.0.0.1
---@field port? integer default 9464 (0: any free port)
---@field path? string default /metrics
---@field background? boolean default true: the server alone does not keep the process running

--- Serve GET {path} on host:port. Returns the server (`srv.port`, `srv:close()`).
---@param opts? weft.MetricsServeOptions
function M.serve(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("weft.metrics.serve: expected a table of options", 2) end
    local path = opts.path or "/metrics"
    local ok, srv = pcall(require("weft.http").serve, {
        host = opts.host or "127.0.0.1", port = opts.port or 9464, background = opts.background ~= false,
        handler = function(req)
            if req.path ~= path then return { status = 404, body = "not found; metrics are at " .. path .. "\n" } end
            if req.method ~= "GET" and req.method ~= "HEAD" then
                return { status = 405, headers = { allow = "GET, HEAD" }, body = "method not allowed\n" }
            end
            return { status = 200, headers = { ["content-type"] = "text/plain; version=0.0.4; charset=utf-8" },
                     body = M.text() }
        end,
    })
    if not ok then error(srv, 2) end
    return srv
end

--- The URL of the endpoint `weft run --metrics` serves (nil without it).
---@type string?
M.endpoint = nil

--- `weft run --metrics HOST:PORT`: parse the address and serve (port 0:
--- any free port). Returns the endpoint's URL (also M.endpoint); the host
--- prints it.
---@param addr string "127.0.0.1:9464", "[::1]:9464" or ":9464"
---@return string url
function M.serve_address(addr)
    local host, port = addr:match("^%[([^%]]+)%]:(%d+)$")
    if not host then host, port = addr:match("^([^:]*):(%d+)$") end
    port = tonumber(port)
    if not port or port > 65535 then
        error("expected HOST:PORT, such as 127.0.0.1:9464", 0)
    end
    if host == "" then host = "127.0.0.1" end
    M._server = M.serve { host = host, port = port }
    M.endpoint = ("http://%s:%d/metrics"):format(host:find(":", 1, true) and "[" .. host .. "]" or host,
        M._server.port)
    return M.endpoint
end

-- The standard set, recorded by the host (weft.calls, weft.http, limiters,
-- breakers, secrets, plugins).
local L3 = { "provider", "model", "operation" }
M.std = {
    calls = M.counter("weft_calls_total", "Calls handled, by outcome (success or the error kind).",
        { "provider", "model", "operation", "outcome" }),
    attempts = M.counter("weft_attempts_total", "Attempts made (first tries and retries).", L3),
    retries = M.counter("weft_retries_total", "Retries, by the error kind that caused them.",
        { "provider", "model", "operation", "reason" }),
    latency = M.histogram("weft_call_duration_seconds", "Call latency including retries and waits.", L3),
    ttft = M.histogram("weft_time_to_first_token_seconds", "Time from the start of a streamed call to its first data.", L3),
    overhead = M.histogram("weft_overhead_seconds",
        "Time a call spent in the host and plugins: its duration less time on the wire and waiting (backoff, limiter).", L3),
    tokens = M.counter("weft_tokens_total", "Tokens, by direction (input, output).",
        { "provider", "model", "direction" }),
    cost = M.counter("weft_cost_usd_total", "Cost in US dollars from the provider's price table.",
        { "provider", "model" }),
    http = M.counter("weft_http_requests_total", "HTTP requests made by weft.http, by outcome (status class or error kind).",
        { "method", "outcome" }),
    http_latency = M.histogram("weft_http_request_duration_seconds", "HTTP request latency (weft.http), time on the wire.",
        { "method" }),
    limiter_level = M.gauge("weft_limiter_level", "Units available now in a limiter's bucket.", { "limiter", "limit" }),
    limiter_queue = M.gauge("weft_limiter_queue_length", "Callers waiting in a limiter, by priority.", { "limiter", "priority" }),
    quota = M.gauge("weft_quota_remaining", "Quota the provider reports as remaining (rate-limit headers).",
        { "provider", "unit" }),
    breaker = M.gauge("weft_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", { "breaker" }),
    cache = M.counter("weft_cache_requests_total", "Cache lookups, by result (hit, miss).", { "cache", "result" }),
    plugins = M.counter("weft_plugin_loads_total", "Plugin loads and reloads, by outcome (ok, failed).",
        { "plugin", "outcome" }),
    plugin_budget = M.counter("weft_plugin_budget_exceeded_total",
        "Plugin calls ended because they ran out of their budget, by limit (instructions, memory).",
        { "plugin", "limit" }),
    plugin_refused = M.counter("weft_plugin_refused_total",
        "Requests a plugin built that the host refused to send (a path off the configured origin, a header the host owns).",
        { "plugin", "reason" }),
    resends = M.counter("weft_http_resends_total",
        "Requests libcurl sent again by itself after a reused connection turned out dead (the server may have seen both).",
        L3),
    secrets = M.counter("weft_secret_events_total", "Secret loads, refreshes, provider rejections and failed loads.",
        { "event" }),
    hooks = M.counter("weft_hook_errors_total", "Event hooks that raised (logged; the call went on).", { "event" }),
    log_sampled = M.counter("weft_log_lines_sampled_out_total", "Success log lines left out by sampling."),
}

--- Record a cache lookup (the cache policy calls this).
---@param cache string
---@param hit boolean
function M.cache(cache, hit)
    M.std.cache:inc(1, cache, hit and "hit" or "miss")
end

return M
