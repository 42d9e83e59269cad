---@meta weft._metrics
-- Editor stubs for the metrics registry binding (runtime/lua_metrics.c),
-- wrapped by weft.metrics.

---@class weft._metrics
local Metrics = {}

--- Register a metric (or get the existing one of the same type and labels).
--- Raises on an invalid name, a counter not ending in _total, bad buckets.
---@param type "counter"|"gauge"|"histogram"
---@param name string
---@param help? string
---@param labels? string[]
---@param buckets? number[]|"latency"|"tokens"
---@return weft.Metric
function Metrics.new(type, name, help, labels, buckets) end

--- Prometheus text format 0.0.4 of every metric.
---@return string
function Metrics.text() end

--- Every metric as a Lua table (see weft.metrics.snapshot).
---@return table<string, weft.MetricSnapshot>
function Metrics.snapshot() end

return Metrics
