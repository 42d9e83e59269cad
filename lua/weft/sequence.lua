--- weft.sequence: a pipeline of model calls, each step's output feeding
--- the next.
---
--- ```lua
--- local r = weft.sequence({
---     { name = "outline", model = "smart", prompt = "Outline an article about {input}." },
---     { name = "draft",   model = "fast",  prompt = "Write the article from this outline:\n{prev}" },
---     { name = "title",   model = "fast",  prompt = function(prev, out) return "A title for:\n" .. out.draft end },
--- }, "tide pools", { checkpoint = "article.ckpt.json" })
--- print(r.output)            -- the last step's text; r.outputs.outline, r.outputs[2], ...
--- ```
---
--- A step names a model (an alias, a policy model or "provider/model") and
--- a prompt: a template where `{input}` is the sequence's input, `{prev}`
--- the previous step's output and `{NAME}` the output of step NAME; or a
--- function `(prev, outputs, input)` returning a prompt string or a request
--- table. Retries and fallbacks are the step's model's own. A step that
--- fails raises an error of the step's error kind whose message names the
--- step, with `step` (its index), `step_name`, `outputs` (of the steps that
--- finished) and `cause` (the step's own error).
---
--- `opts.checkpoint = PATH`: after each step the outputs so far are written
--- to PATH (JSON, replaced atomically); a later run with the same input
--- and steps starts after the last step written there. The file is removed
--- when the whole sequence succeeded.
local errors = require "weft.error"
local json = require "weft.json"

local type, ipairs, pairs, tostring, error, pcall = type, ipairs, pairs, tostring, error, pcall
local format = string.format

local M = {}

local function fill(template, input, prev, outputs)
    return (template:gsub("{([%w_]+)}", function(k)
        if k == "input" then return tostring(input) end
        if k == "prev" then return prev ~= nil and tostring(prev) or "" end
        local v = outputs[k]
        if v ~= nil then return tostring(v) end
        return nil -- not a placeholder of ours: kept as written
    end))
end

-- What identifies a run for its checkpoint: the input and the steps'
-- names and models (a changed sequence does not resume an old one).
local function fingerprint(steps, input)
    local parts = { tostring(input) }
    for i, s in ipairs(steps) do parts[#parts + 1] = i .. ":" .. tostring(s.name) .. ":" .. tostring(s.model) end
    return table.concat(parts, "\n")
end

local function load_checkpoint(path, fp)
    local f = io.open(path, "rb")
    if not f then return nil end
    local text = f:read("*a")
    f:close()
    local ok, v = pcall(json.decode, text)
    if not ok or type(v) ~= "table" or v.fingerprint ~= fp or type(v.outputs) ~= "table" then return nil end
    return v.outputs
end

local function save_checkpoint(path, fp, outputs)
    local tmp = path .. ".tmp"
    local f, err = io.open(tmp, "wb")
    if not f then error(format("weft.sequence: cannot write the checkpoint %s: %s", path, tostring(err)), 0) end
    f:write(json.encode({ fingerprint = fp, outputs = json.array(outputs) }))
    f:close()
    local ok, rerr = os.rename(tmp, path)
    if not ok then error(format("weft.sequence: cannot write the checkpoint %s: %s", path, tostring(rerr)), 0) end
end

---@class weft.SequenceStep
---@field name? string
---@field model string an alias, a policy model or "provider/model"
---@field prompt string|fun(prev: string?, outputs: table, input: any): string|table

---@class weft.SequenceResult
---@field output string the last step's text
---@field outputs table<integer|string, string> every step's text, by index and by name
---@field results table<integer, weft.Result> the results of the steps run now
---@field resumed integer steps taken from the checkpoint

--- Run the steps in order (see the module doc).
---@param steps weft.SequenceStep[]
---@param input any
---@param opts? {checkpoint?: string}
---@return weft.SequenceResult
function M.run(steps, input, opts)
    opts = opts or {}
    if type(steps) ~= "table" or steps[1] == nil then error("weft.sequence: steps must be a non-empty list", 2) end
    for i, s in ipairs(steps) do
        if type(s) ~= "table" or type(s.model) ~= "string" then
            error(format("weft.sequence: step %d needs a model name", i), 2)
        end
        if type(s.prompt) ~= "string" and type(s.prompt) ~= "function" then
            error(format("weft.sequence: step %d needs a prompt (a template or a function)", i), 2)
        end
        if s.name ~= nil and (type(s.name) ~= "string" or not s.name:match("^[%w_]+$")) then
            error(format("weft.sequence: step %d: a name is letters, digits and _", i), 2)
        end
    end
    local path = opts.checkpoint
    if path ~= nil and type(path) ~= "string" then error("weft.sequence: checkpoint must be a file path", 2) end
    local fp = path and fingerprint(steps, input)
    local done = path and load_checkpoint(path, fp) or {}
    local outputs, results = {}, {}
    local prev
    local resumed = 0
    for i, s in ipairs(steps) do
        local text
        if done[i] ~= nil then
            text = done[i]
            resumed = resumed + 1
        else
            local ok, r = pcall(function()
                local req
                if type(s.prompt) == "function" then req = s.prompt(prev, outputs, input)
                else req = fill(s.prompt, input, prev, outputs) end
                return require("weft").model(s.model):complete(req)
            end)
            if not ok then
                local kind = errors.is(r) and r.kind or "integration"
                local copy = {}
                for k, v in pairs(outputs) do copy[k] = v end
                error(errors.new(kind, format("step %d%s (%s) failed: %s", i, s.name and (" " .. s.name) or "", s.model,
                    errors.is(r) and tostring(r.message) or tostring(r)),
                    { step = i, step_name = s.name, outputs = copy, cause = r, status = errors.is(r) and r.status or nil }), 0)
            end
            results[i] = r
            text = r.text
        end
        outputs[i] = text
        if s.name then outputs[s.name] = text end
        prev = text
        if path and done[i] == nil then
            local list = {}
            for k = 1, i do list[k] = outputs[k] end
            save_checkpoint(path, fp, list)
        end
    end
    if path then os.remove(path) end
    return { output = prev, outputs = outputs, results = results, resumed = resumed }
end

return M
