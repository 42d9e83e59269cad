--- weft._stream: the streaming part of the call pipeline (weft._pipeline)
--- for model:stream.
---
--- A stream goes through the same stages as any call. Its body is parsed
--- by the C SSE parser as it arrives and each event is decoded by the
--- plugin's `event` and delivered to `on_event` (text pieces), in the
--- send stage, before the answer is classified. The first body data of
--- the call is its time to first token (weft_time_to_first_token_seconds).
---
--- Mid-stream failures: a failure before the first event reached
--- `on_event` is retried like any other; after it, the call raises an
--- error of kind `transient` with `partial = {text=, usage=, tool_calls=}`
--- and `should_retry = false` (nothing is silently cut short, and nothing
--- is delivered twice). A stream is complete only when the dialect's
--- terminator arrived (`[DONE]`, `message_stop`, a Gemini finishReason
--- before the end of the body); a body that ends before it is a
--- `transient` error too.
---
--- Per attempt: `receive` makes the stream state and the request's
--- on_data, `failed` turns a failed request into the call's error,
--- `error_body` gives the non-2xx body for classify, `result` checks the
--- end and assembles the result.
local errors = require "weft.error"
local B = require "weft._boundary"
local T = require "weft._task"
local SSE = require "weft._sse"
local redact = require("weft._secrets").redact

local type, tonumber, tostring, error = type, tonumber, tostring, error
local now, sleep = T.now, T.sleep
local huge = math.huge
local format, concat = string.format, table.concat
local fail, plugin_fail, plugin_call, plain_result = B.fail, B.plugin_fail, B.plugin_call, B.plain_result
local redact_json_text, tool_calls_of = B.redact_json_text, B.tool_calls_of

local M = {}

-- An error body of a stream is kept up to this many bytes; when cut there,
-- its last CUT_GUARD bytes are dropped too (a secret cut in two would not
-- be recognized by redaction).
local ERRBODY_MAX, CUT_GUARD = 65536, 4096
-- Events of one chunk are decoded in one go; past this many seconds the
-- task lets the loop run before going on.
local EVENT_SLICE = 0.01

local function usage_of(u)
    if type(u) ~= "table" then return nil end
    local i, o = tonumber(u.input) or 0, tonumber(u.output) or 0
    if not (i >= 0 and i < huge) then i = 0 end
    if not (o >= 0 and o < huge) then o = 0 end
    return { input = i, output = o }
end

local function opt_string(ctx, fname, t, k)
    local v = t[k]
    if v ~= nil and type(v) ~= "string" then plugin_fail(ctx, format("%s: %s must be a string, got %s", fname, k, type(v))) end
    return v
end

-- One streamed event: decode, deliver text, keep usage and the end mark.
-- The event's strings are redacted before the plugin sees them.
local function on_stream_event(ctx, ev, st)
    ev.data = redact_json_text(redact(ev.data))
    if ev.event then ev.event = redact(ev.event) end
    if ev.id then ev.id = redact(ev.id) end
    local d = plugin_call(ctx, "event", ev, st.plugin_state, ctx.preq, ctx.pcfg)
    if d == nil then return end
    if type(d) ~= "table" then plugin_fail(ctx, "event must return a table or nil") end
    d = plain_result(ctx, "event", d)
    if d.error then
        local e = type(d.error) == "table" and d.error or {}
        st.error = { kind = (type(e.kind) == "string" and errors.KINDS[e.kind]) and e.kind or "transient",
                     message = type(e.message) == "string" and e.message or "error in stream" }
        return false
    end
    if d.usage then st.usage = usage_of(d.usage) end
    if d.tool_calls then st.tool_calls = tool_calls_of(ctx, "event", d.tool_calls) end
    if d.finish_reason then st.finish_reason = opt_string(ctx, "event", d, "finish_reason") end
    if d.model then st.model = opt_string(ctx, "event", d, "model") end
    if d.done then st.done = true end
    local text = d.text
    if text ~= nil and type(text) ~= "string" then plugin_fail(ctx, "event: text must be a string") end
    if text and text ~= "" then
        st.text[#st.text + 1] = text
        ctx.delivered = true
        if ctx.on_event({ type = "text", text = text }) == false then
            st.aborted = true
            return false
        end
    end
end

-- Partial results of a stream that failed after delivering events.
local function stream_error(ctx, st, kind, msg)
    local partial = { text = concat(st.text), usage = st.usage, tool_calls = st.tool_calls }
    if ctx.delivered then
        fail(ctx, "transient", format("stream failed after %d bytes were delivered: %s", #partial.text, msg),
            { partial = partial, should_retry = false, cause_kind = kind })
    end
    fail(ctx, kind, msg, { partial = partial })
end

--- The state of one attempt's stream, and `opts` (weft.http.request's)
--- set to receive it: idle timeout, and on_data parsing and decoding the
--- events (a non-2xx body is kept for classify instead). The call's first
--- body data is recorded as its first token.
---@param ctx table the call context
---@param opts table the request
---@return table st {text=, plugin_state=, usage?, tool_calls?, finish_reason?, model?, done?, aborted?, error?, errbody?, cut?}
function M.receive(ctx, opts)
    local st = { text = {}, plugin_state = {} }
    local parser = SSE.new()
    local call = ctx.call
    opts.idle_timeout = ctx.inst.idle_timeout
    opts.on_data = function(chunk, head)
        if not call.ttft then call:first_token() end
        if head.status >= 300 then
            local errbody = (st.errbody or "") .. chunk
            st.errbody = errbody
            if #errbody >= ERRBODY_MAX then
                st.cut = true
                return false
            end
            return
        end
        local evs = parser:feed(chunk)
        local t0 = now()
        for i = 1, #evs do
            if on_stream_event(ctx, evs[i], st) == false then return false end
            if i < #evs and now() - t0 > EVENT_SLICE then
                -- many events at once: other tasks run between them
                local _, err = sleep(0)
                if err then error(err, 0) end
                t0 = now()
            end
        end
    end
    return st
end

--- A request of the stream that raised `err`: a failure after events were
--- delivered becomes the call's `transient` error with the partial result
--- (one the plugin reported in the stream goes first); a cancellation, or
--- anything that is not an error value, is raised as it is.
---@param ctx table
---@param st table
---@param err any
function M.failed(ctx, st, err)
    if errors.is(err) and err.kind ~= "cancelled" then
        err.provider, err.model = ctx.inst.name, ctx.model_name
        if st.error then stream_error(ctx, st, st.error.kind, st.error.message) end
        stream_error(ctx, st, err.kind, err.message or tostring(err))
    end
    error(err, 0)
end

--- The body of a non-2xx answer, redacted, for classify (nil when none
--- came).
---@param st table
---@return string?
function M.error_body(st)
    local errbody = st.errbody
    if errbody then
        if st.cut then errbody = errbody:sub(1, -CUT_GUARD - 1) end
        errbody = redact_json_text(redact(errbody))
    end
    return errbody
end

--- The decode stage of a stream whose answer was a success: an error the
--- plugin read in the stream, or an end marker that never came, raises
--- (with the partial result); else the result.
---@param ctx table
---@param st table
---@return table
function M.result(ctx, st)
    if st.error then stream_error(ctx, st, st.error.kind, st.error.message) end
    if not st.done and not st.aborted then
        stream_error(ctx, st, "transient", "the stream ended before its end marker")
    end
    return { text = concat(st.text), tool_calls = st.tool_calls, finish_reason = st.finish_reason or (st.aborted and "aborted") or "stop",
             model = st.model, aborted = st.aborted or nil, usage = st.usage }
end

return M
