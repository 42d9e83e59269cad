-- docs_spec.lua: docs/api.md names every public function of `weft` and of
-- its submodules, and every request field the pipeline accepts: a
-- function added without its reference fails here.
local src = assert(os.getenv("WEFT_SOURCE_DIR"), "run through ctest (WEFT_SOURCE_DIR)")
local doc = assert(io.open(src .. "/docs/api.md")):read("*a")

local function documented(name) return doc:find(name, 1, true) ~= nil end

describe("docs/api.md", function()
    it("names every function of weft and of its submodules", function()
        local missing = {}
        for k, v in pairs(weft) do
            if type(k) == "string" and k:sub(1, 1) ~= "_" and type(v) == "function" and not documented("weft." .. k) then
                missing[#missing + 1] = "weft." .. k
            end
        end
        for k in pairs(weft._lazy) do
            local mod = weft[k]
            if type(mod) == "table" then
                for f, v in pairs(mod) do
                    -- "weft.log.warn", or in a list of its module's members: "`.warn`", "gauge(", "`plain`"
                    if type(f) == "string" and f:sub(1, 1) ~= "_" and type(v) == "function"
                        and not documented(k .. "." .. f) and not documented("`." .. f .. "`")
                        and not documented(" " .. f .. "(") and not documented("`" .. f .. "`") then
                        missing[#missing + 1] = "weft." .. k .. "." .. f
                    end
                end
            end
        end
        table.sort(missing)
        assert.are.same({}, missing)
    end)

    it("lists every request field", function()
        local missing = {}
        for field in pairs(require("weft._pipeline").REQUEST_KEYS) do
            if not documented("`" .. field .. "`") then missing[#missing + 1] = field end
        end
        table.sort(missing)
        assert.are.same({}, missing)
    end)
end)
