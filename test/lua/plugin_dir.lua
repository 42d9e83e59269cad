-- plugin_dir.lua: a temporary plugin directory for specs, searched first.
--
--   local pd = require "plugin_dir" ()   -- pd.dir, pd.write(name, text), pd.remove()
--
-- `write` puts providers/NAME.lua there; `remove` deletes the directory
-- (call it from teardown).
local plugins = require "weft.plugins"

return function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/providers") == 0)
    plugins.add_dir(dir)
    local pd = { dir = dir }
    function pd.write(name, text)
        local f = assert(io.open(dir .. "/providers/" .. name .. ".lua", "w"))
        f:write(text)
        f:close()
        return dir .. "/providers/" .. name .. ".lua"
    end
    function pd.remove() os.execute("rm -rf " .. dir) end
    return pd
end
