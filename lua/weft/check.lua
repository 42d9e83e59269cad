--- weft check PLUGIN.lua...: validate plugin files and print findings.
---
--- For every file: it must load in the sandbox and pass validation (API
--- version, name, kind, schema, functions), declare the name of its file
--- (weft finds a plugin by file name and refuses one that declares
--- another); its configuration defaults must satisfy its schema and its
--- validators (plugin API 2, which also warns about schema fields without
--- a description). A provider is then driven through the
--- normalized forms: `encode` of a set of normalized requests (a plain
--- prompt, system + multi-turn, tools and a tool result, stop and
--- max_tokens, a stream, an embedding when it can) must give a path and a
--- JSON-encodable body; and with fixtures (the plugin's `fixtures` field or
--- a `NAME.fixtures.lua` file beside it, else those of the nearest plugin
--- it `extends` that has some: recorded answers, streams and errors of the
--- real service) `decode`, `event` and `classify` must give
--- the normalized results and error kinds the fixtures expect (and the
--- `reason`, such as "context_length", where an error fixture names one).
---
--- A policy's defaults must satisfy its schema and its `check`; its `run`
--- is then driven over three simulated targets (all answering, the first
--- failing, rate limited or refusing the key, all failing, a stream, an
--- embedding) and must give back a target's result or an error each time,
--- within its budget; the path it took is printed.
---
--- Each finding is printed once: a file that does not load is reported as
--- its finding only (not also as the loader's log line).
---
--- Exit status: 0 when every file is fine (warnings allowed), 1 when one
--- has an error, 2 on usage errors.
local plugins = require "weft.plugins"
local json = require "weft.json"
local errors = require "weft.error"
local SSE = require "weft._sse"

local M = {}

local REQUESTS = {
    { "a plain prompt", { messages = { { role = "user", content = "Hello" } } } },
    { "system prompt and several turns", {
        system = "Be brief.",
        messages = { { role = "user", content = "Hi" }, { role = "assistant", content = "Hello!" },
                     { role = "user", content = "How are you?" } } } },
    { "max_tokens, temperature, top_p and stop", {
        messages = { { role = "user", content = "Count" } }, max_tokens = 5, temperature = 0.2, top_p = 0.9,
        stop = { "\n\n" } } },
    { "tools, a tool call and its result", {
        messages = {
            { role = "user", content = "Weather in Paris?" },
            { role = "assistant", tool_calls = { { id = "call_1", name = "weather", arguments = '{"city":"Paris"}' } } },
            { role = "tool", tool_call_id = "call_1", name = "weather", content = '{"c":21}' },
        },
        tools = { { name = "weather", description = "Current weather", parameters = {
            type = "object", properties = { city = { type = "string" } }, required = { "city" } } } } } },
}

local function finder()
    local out = { errors = 0, warnings = 0, lines = {} }
    function out.ok(msg) out.lines[#out.lines + 1] = "  ok       " .. msg end
    function out.warn(msg)
        out.warnings = out.warnings + 1
        out.lines[#out.lines + 1] = "  warning  " .. msg
    end
    function out.err(msg)
        out.errors = out.errors + 1
        out.lines[#out.lines + 1] = "  error    " .. msg
    end
    return out
end

local function copy(t)
    if type(t) ~= "table" then return t end
    local c = {}
    for k, v in pairs(t) do c[k] = copy(v) end
    return c
end

-- The fixtures to replay through plugin `p` (at `path`): its own (its
-- `fixtures` field, or NAME.fixtures.lua beside it), else those of the
-- nearest plugin it extends that has some (`deps`: the files it extends,
-- parent first, wherever they were found). Returns them and where they
-- are from, or nil (and why, when a fixtures file would not load).
local function fixtures_of(path, p, deps)
    if type(p.fixtures) == "table" then return p.fixtures, "the plugin's fixtures" end
    local candidates = { path }
    for _, d in ipairs(deps or {}) do candidates[#candidates + 1] = d end
    for _, file in ipairs(candidates) do
        local fpath = file:gsub("%.lua$", "") .. ".fixtures.lua"
        local chunk = loadfile(fpath)
        if chunk then
            local ok, f = pcall(plugins.run_chunk, chunk, fpath)
            if ok and type(f) == "table" then return f, fpath end
            return nil, fpath .. ": " .. tostring(f)
        end
    end
    return nil
end

-- Compare a normalized result with what a fixture expects.
local function expect(F, what, got, want)
    if not want then return true end
    for k, v in pairs(want) do
        local g = got[k]
        if type(v) == "table" and type(g) == "table" then
            for k2, v2 in pairs(v) do
                if g[k2] ~= v2 then
                    F.err(("%s: %s.%s is %s, the fixture expects %s"):format(what, k, k2, tostring(g[k2]), tostring(v2)))
                    return false
                end
            end
        elseif k == "count" then
            if #(got.vectors or {}) ~= v then
                F.err(("%s: %d vectors, the fixture expects %d"):format(what, #(got.vectors or {}), v))
                return false
            end
        elseif g ~= v then
            F.err(("%s: %s is %s, the fixture expects %s"):format(what, k, tostring(g), tostring(v)))
            return false
        end
    end
    return true
end

local function check_result(F, what, r, op)
    if type(r) ~= "table" then
        F.err(what .. ": decode returned " .. type(r) .. ", not a result table")
        return false
    end
    if op == "embed" then
        if type(r.vectors) ~= "table" or type(r.vectors[1]) ~= "table" or type(r.vectors[1][1]) ~= "number" then
            F.err(what .. ": vectors must be a list of number lists")
            return false
        end
        return true
    end
    if type(r.text) ~= "string" then F.err(what .. ": text must be a string") return false end
    if type(r.finish_reason) ~= "string" then F.err(what .. ": finish_reason must be a string") return false end
    if r.usage ~= nil and (type(r.usage) ~= "table" or type(r.usage.input) ~= "number" or type(r.usage.output) ~= "number") then
        F.err(what .. ": usage must be {input = n, output = n}")
        return false
    end
    return true
end

-- A plugin function under its budget, its results as plain host copies:
-- true, results... or false, why (weft.plugins.call).
local function call(p, fname, ...)
    local res = { plugins.call(p, fname, ...) }
    if not res[1] then return false, res[2] end
    for i = 2, 3 do
        if res[i] ~= nil then
            local c, why = plugins.plain(res[i])
            if c == nil then return false, fname .. " returned something that is not plain data: " .. why end
            res[i] = c
        end
    end
    return true, res[2], res[3]
end

-- The name of a header encode sets that the host would refuse, if any.
local function host_header(p, headers)
    if type(headers) ~= "table" then return nil end
    local own = type(p.auth) == "table" and type(p.auth.header) == "string" and p.auth.header or nil
    for k in pairs(headers) do
        local lk = type(k) == "string" and k:lower()
        if lk and plugins.host_owned(lk, own) then return lk end
    end
end

-- What a request of a batch step would be refused for by the host, if
-- anything.
local function bad_step(p, r)
    if type(r) ~= "table" or type(r.path) ~= "string" then return "must return a request {path = \"/...\", ...}" end
    local why = plugins.bad_path(r.path) or (r.query ~= nil and plugins.bad_query(r.query)) or nil
    if why then return "the host would refuse it: " .. why end
    local h = host_header(p, r.headers)
    if h then return "the host would refuse it: header '" .. h .. "' is the host's" end
end

-- A provider's batch table: the functions that make requests, on a sample
-- request and a sample job (status and result read answers: exercised by
-- weft.batch against a server).
local function check_batch(F, p, cfg)
    local b = p.batch
    local function bcall(fname, ...)
        local f = b[fname]
        local res = { plugins.guard(p.name, "batch." .. fname, f, ...) }
        if not res[1] then return false, res[2] end
        local c, why = plugins.plain(res[2])
        if res[2] ~= nil and c == nil then return false, "returned something that is not plain data: " .. why end
        return true, c
    end
    local op = (type(b.ops) ~= "table" or b.ops.complete) and "complete" or "embed"
    local req = op == "complete" and { model = "fixture-model", messages = { { role = "user", content = "hi" } } }
        or { model = "fixture-model", input = { "a" } }
    local ok, enc = call(p, "encode", op, req, cfg)
    if not ok or type(enc) ~= "table" then return F.err("batch: encode " .. op .. " failed: " .. tostring(enc)) end
    local ok2, line = bcall("line", "c-1", op, { method = enc.method or "POST", path = enc.path, body = enc.body }, cfg)
    if not ok2 or type(line) ~= "table" or not pcall(json.encode, line) then
        F.err("batch.line: must return a table that encodes as JSON: " .. tostring(line))
    else
        F.ok("batch.line")
    end
    local job = { op = op, count = 1, path = enc.path, model = "fixture-model" }
    local ok3, sub = bcall("submit", job, cfg)
    local why = not ok3 and tostring(sub) or bad_step(p, sub)
    if not why and sub.input ~= nil and (type(sub.input) ~= "table" or (sub.input.as ~= "file" and sub.input.as ~= "array")) then
        why = "input.as must be \"file\" or \"array\""
    end
    if why then F.err("batch.submit: " .. why) else F.ok("batch.submit") end
    job.id = "fixture-batch"
    for _, fname in ipairs { "poll", "cancel" } do
        local ok4, r = bcall(fname, job, cfg)
        local w = not ok4 and tostring(r) or bad_step(p, r)
        if w then F.err("batch." .. fname .. ": " .. w) else F.ok("batch." .. fname) end
    end
    local ok5, list = bcall("results", job, cfg)
    local w = not ok5 and tostring(list) or (type(list) ~= "table" and "must return a list of requests") or nil
    for _, r in ipairs(ok5 and type(list) == "table" and list or {}) do w = w or bad_step(p, r) end
    if w then F.err("batch.results: " .. w) else F.ok("batch.results") end
    if not (type(b.discount) == "number") then F.warn("batch.discount not set: results are priced at the normal price") end
end

local function check_provider(F, path, p, deps)
    local ok, cfg = pcall(plugins.configure, p, {})
    local fx, fxwhere = fixtures_of(path, p, deps)
    if not ok then
        if fx and type(fx.config) == "table" then
            ok, cfg = pcall(plugins.configure, p, fx.config)
        end
        if not ok then
            F.err("configuration: " .. tostring(cfg))
            return
        end
    elseif fx and type(fx.config) == "table" then
        cfg = plugins.configure(p, fx.config)
    end
    F.ok("configuration defaults satisfy the schema")
    if p.base_url == nil then F.warn("no default base_url: every configuration must give one") end
    if p.secret == nil then F.warn("no default secret reference (say secret = false for services without keys)") end
    local caps = p.capabilities or { complete = true }
    local ops = {}
    if caps.complete ~= false then ops[#ops + 1] = "complete" end
    if caps.stream then ops[#ops + 1] = "stream" end
    for _, op in ipairs(ops) do
        for _, c in ipairs(REQUESTS) do
            local req = copy(c[2])
            req.model = "fixture-model"
            local before = json.encode(req)
            local ok2, enc = call(p, "encode", op, req, cfg)
            local what = ("encode %s (%s)"):format(op, c[1])
            local hbad = ok2 and type(enc) == "table" and host_header(p, enc.headers)
            if not ok2 then
                F.err(what .. ": " .. tostring(enc))
            elseif type(enc) ~= "table" or type(enc.path) ~= "string" or enc.path:sub(1, 1) ~= "/" then
                F.err(what .. ": must return {path = \"/...\", body = ...}")
            elseif plugins.bad_path(enc.path) or (enc.query ~= nil and plugins.bad_query(enc.query)) then
                F.err(what .. ": the host would refuse it: " .. (plugins.bad_path(enc.path) or plugins.bad_query(enc.query)))
            elseif enc.headers ~= nil and type(enc.headers) ~= "table" then
                F.err(what .. ": headers must be a table")
            elseif hbad then
                F.err(what .. ": the host would refuse it: header '" .. hbad .. "' is the host's")
            else
                local ok3, body = plugins.guard(p.name, "encoding the body", function() return type(enc.body) == "table" and json.encode(enc.body) or enc.body end)
                if not ok3 or type(body) ~= "string" then
                    F.err(what .. ": the body does not encode as JSON: " .. tostring(body))
                elseif json.encode(req) ~= before then
                    F.err(what .. ": encode changed the request it was given")
                else
                    F.ok(what)
                end
            end
        end
    end
    if caps.embed then
        local ok2, enc = call(p, "encode", "embed", { model = "fixture-model", input = { "a", "b" } }, cfg)
        if ok2 and type(enc) == "table" and type(enc.path) == "string" then F.ok("encode embed")
        else F.err("encode embed: " .. tostring(enc)) end
    end
    if p.batch then check_batch(F, p, cfg) end
    if not fx then
        F.warn((fxwhere or "no fixtures") .. ": decode, event and classify not exercised (add NAME.fixtures.lua)")
        return
    end
    F.ok("fixtures from " .. fxwhere)
    for _, op in ipairs { "complete", "embed" } do
        local f = fx[op]
        if f then
            local ok2, body = pcall(json.decode, f.body)
            local ok3, r, why = call(p, "decode", op, ok2 and body or {}, { model = "fixture-model", messages = {} }, cfg)
            local what = "decode " .. op
            if not ok3 then F.err(what .. ": " .. tostring(r))
            elseif r == nil then F.err(what .. ": " .. tostring(why))
            elseif check_result(F, what, r, op) and expect(F, what, r, f.expect) then F.ok(what) end
        end
    end
    if fx.stream then
        local what = "stream events"
        local st, out = {}, { text = {} }
        local ok2, err = pcall(function()
            local parser = SSE.new()
            for _, ev in ipairs(parser:feed(fx.stream.body)) do
                local okd, d = call(p, "event", ev, st, { model = "fixture-model", messages = {} }, cfg)
                if not okd then error(d, 0) end
                if d then
                    if d.error then error("the fixture stream holds an error: " .. tostring(d.error.message), 0) end
                    if d.text then out.text[#out.text + 1] = d.text end
                    if d.usage then out.usage = d.usage end
                    if d.finish_reason then out.finish_reason = d.finish_reason end
                    if d.done then out.done = true end
                end
            end
        end)
        local r = { text = table.concat(out.text), usage = out.usage, finish_reason = out.finish_reason or "?" }
        if not ok2 then F.err(what .. ": " .. tostring(err))
        elseif not out.done then F.err(what .. ": the stream never reached its end mark (done)")
        elseif check_result(F, what, r, "stream") and expect(F, what, r, fx.stream.expect) then F.ok(what) end
    end
    if p.rate_limits then
        local samples = {}
        if fx.complete and fx.complete.headers then samples[#samples + 1] = { 200, fx.complete.headers, "" } end
        for _, e in ipairs(fx.errors or {}) do
            if e.status == 429 then samples[#samples + 1] = { 429, e.headers or {}, e.body or "" } end
        end
        for _, sm in ipairs(samples) do
            local what = ("rate_limits (HTTP %d)"):format(sm[1])
            local ok2, rl = call(p, "rate_limits", sm[1], sm[2], sm[3], cfg)
            local bad
            if not ok2 then bad = tostring(rl)
            elseif rl ~= nil and type(rl) ~= "table" then bad = "must return a table or nil"
            elseif rl then
                for _, unit in ipairs { "requests", "tokens" } do
                    local u = rl[unit]
                    if u ~= nil and (type(u) ~= "table" or type(u.remaining) ~= "number"
                                     or (u.reset ~= nil and type(u.reset) ~= "number")) then
                        bad = unit .. " must be {remaining = n, reset = seconds}"
                    end
                end
                if rl.retry_after ~= nil and type(rl.retry_after) ~= "number" then bad = "retry_after must be seconds" end
                if sm[1] == 429 and rl.retry_after == nil then bad = "a 429 gave no retry_after" end
            end
            if bad then F.err(what .. ": " .. bad) else F.ok(what) end
        end
    end
    for i, e in ipairs(fx.errors or {}) do
        local what = ("classify %d (HTTP %d)"):format(i, e.status)
        local ok2, c = call(p, "classify", e.status, e.headers or {}, e.body or "", cfg)
        if not ok2 then F.err(what .. ": " .. tostring(c))
        elseif type(c) ~= "table" or not errors.KINDS[c.kind] then
            F.err(what .. ": must return {kind = <a weft error kind>, message = ...}")
        elseif e.kind and c.kind ~= e.kind then
            F.err(("%s: kind %s, the fixture expects %s"):format(what, c.kind, e.kind))
        elseif c.reason ~= nil and type(c.reason) ~= "string" then
            F.err(what .. ": reason must be a string")
        elseif e.reason and c.reason ~= e.reason then
            F.err(("%s: reason %s, the fixture expects %s"):format(what, tostring(c.reason), e.reason))
        else
            F.ok(what .. " -> " .. c.kind .. (c.reason and (" (" .. c.reason .. ")") or ""))
        end
    end
end

-- A policy: its defaults against its schema and its check, then its run
-- driven over three simulated targets in the usual situations: it must
-- give back a target's result or an error, within its budget.
local SIM_SCENARIOS = {
    { "every target answers", "complete", function() end },
    { "the first target fails (transient)", "complete", function(i) if i == 1 then return "transient" end end },
    { "the first target is rate limited", "complete", function(i) if i == 1 then return "rate_limited" end end },
    { "the first target rejects the key (auth)", "complete", function(i) if i == 1 then return "auth" end end },
    { "every target fails (transient)", "complete", function() return "transient" end },
    { "a stream", "stream", function() end },
    { "an embedding", "embed", function() end },
}

local function check_policy(F, p)
    local policy = require "weft.policy"
    local ok, cfg = pcall(plugins.configure, p, {})
    if not ok then
        F.warn("needs options to be configured (" .. tostring(cfg) .. "): not driven")
        return
    end
    F.ok("its defaults satisfy its schema")
    local ntargets = 3
    if type(p.check) == "function" then
        -- three targets, else as few as its check accepts
        local why
        for k = 3, 1, -1 do
            local targets = {}
            for i = 1, k do targets[i] = { name = "sim" .. i, weight = 1 } end
            local cok, res, msg = plugins.call(p, "check", cfg, targets)
            if not cok then F.err(res) return end
            if res == true then
                ntargets, why = k, nil
                break
            end
            why = msg
        end
        if why ~= nil or ntargets == nil then
            F.warn("check refuses its defaults over 1 to 3 targets (" .. tostring(why) .. "): not driven")
            return
        end
        F.ok(("check accepts its defaults over %d target%s"):format(ntargets, ntargets > 1 and "s" or ""))
    end
    local level = require("weft.log").level()
    require("weft.log").level("warn") -- the simulated calls' decisions are printed below
    for _, sc in ipairs(SIM_SCENARIOS) do
        local name, op, fails = sc[1], sc[2], sc[3]
        local sok, v, route = policy.simulate(p, {}, ntargets, op, function(i)
            local kind = fails(i)
            if kind then error(errors.new(kind, "simulated " .. kind .. " of sim" .. i, { attempts = 1 }), 0) end
            if op == "embed" then return { vectors = { { 0.1 }, { 0.2 } }, usage = { input = 2, output = 0 }, provider = "sim" .. i } end
            return { text = "answer of sim" .. i, finish_reason = "stop", usage = { input = 1, output = 1 }, provider = "sim" .. i }
        end)
        local steps = {}
        for _, e in ipairs(route or (errors.is(v) and v.route) or {}) do
            steps[#steps + 1] = ("%s %s -> %s"):format(e.target, e.reason, tostring(e.outcome))
        end
        local path = #steps > 0 and (" [" .. table.concat(steps, "; ") .. "]") or ""
        if sok then
            F.ok(("%s (%s): answered by %s%s"):format(name, op, tostring(v.provider), path))
        elseif errors.is(v) and v.kind == "integration" then
            F.err(("%s (%s): %s"):format(name, op, tostring(v.message)))
        else
            F.ok(("%s (%s): fails with %s%s"):format(name, op, errors.is(v) and v.kind or tostring(v), path))
        end
    end
    require("weft.log").level(level)
end

--- Check one file; returns the findings {errors=, warnings=, lines=}.
---@param path string
function M.file(path)
    local F = finder()
    if path:match("%.fixtures%.lua$") then
        F.ok("fixtures: checked with the plugin they belong to")
        return F
    end
    -- quiet: a file that does not load is this finding, not also a log line
    local deps = {}
    local p, err = plugins.load_file(path, nil, nil, nil, deps, true)
    if not p then
        F.err(err)
        return F
    end
    F.ok(("loads in the sandbox: %s %s, version %s, plugin API %d (this weft loads %d to %d)"):format(
        p.kind, p.name, tostring(p.version or "-"), p.api, plugins.API_MIN, plugins.API))
    -- weft finds a plugin by its file name and then refuses one that
    -- declares another: found here, not at the first call
    local file = path:match("([^/]+)%.lua$") or path
    if file ~= p.name then
        F.err(("declares name '%s' but the file is %s.lua: weft looks a plugin up as %s/%s.lua (rename one of them)")
            :format(p.name, file, p.kind == "policy" and "policies" or "providers", p.name))
    end
    if p.version == nil then F.warn("no version: results and logs cannot tell versions apart") end
    if p.api >= 2 then
        local missing = {}
        for k, s in pairs(p.schema or {}) do
            if s.description == nil then missing[#missing + 1] = k end
        end
        table.sort(missing)
        if missing[1] then F.warn("schema fields without a description: " .. table.concat(missing, ", ")) end
    end
    if p.kind == "provider" then check_provider(F, path, p, deps) end
    if p.kind == "policy" then check_policy(F, p) end
    return F
end

function M.main(...)
    local files = { ... }
    if #files == 0 or files[1] == "--help" or files[1] == "-h" then
        io.stderr:write("usage: weft check PLUGIN.lua...\n")
        return #files == 0 and 2 or 0
    end
    plugins.watching = false
    local failed = 0
    for _, path in ipairs(files) do
        local F = M.file(path)
        print(path)
        for _, l in ipairs(F.lines) do print(l) end
        print(("  %s: %d error(s), %d warning(s)"):format(F.errors == 0 and "PASS" or "FAIL", F.errors, F.warnings))
        if F.errors > 0 then failed = failed + 1 end
    end
    return failed > 0 and 1 or 0
end

return M
