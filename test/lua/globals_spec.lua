-- globals_spec.lua: no module of weft and no shipped plugin writes a
-- global (a `local` forgotten is a value shared by every task and every
-- plugin): LuaJIT's bytecode listing (`luajit -bl`) of each file has no
-- GSET. (lua/weft/_meta holds type declarations for editors, not code.)
local src = assert(os.getenv("WEFT_SOURCE_DIR"), "run through ctest (WEFT_SOURCE_DIR)")

local function lua_files()
    local p = assert(io.popen("find " .. src .. "/lua " .. src .. "/plugins -name '*.lua' -not -path '*/_meta/*' | sort"))
    local out = {}
    for f in p:lines() do out[#out + 1] = f end
    p:close()
    return out
end

describe("globals", function()
    it("no module or shipped plugin assigns a global", function()
        local files = lua_files()
        assert.is_true(#files > 40, "found only " .. #files .. " files")
        local found = {}
        for _, f in ipairs(files) do
            local p = assert(io.popen("luajit -bl '" .. f .. "' 2>&1"))
            local listing = p:read("*a")
            p:close()
            assert.is_truthy(listing:find("BYTECODE", 1, true), f .. ": " .. listing:sub(1, 200))
            for name in listing:gmatch('GSET[^\n]-; "([^"]+)"') do
                found[#found + 1] = f:sub(#src + 2) .. ": " .. name
            end
        end
        assert.are.same({}, found)
    end)
end)
