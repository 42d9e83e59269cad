---@meta weft._watch
-- Editor stubs for file change notification (runtime/lua_watch.c, ev_stat).

---@class weft.Watch
local Watch = {}

--- Suspend the calling task until the file changed (true), or the watcher
--- was closed (false). Returns at once when a change came in meanwhile.
---@return boolean changed
function Watch:wait() end

--- Stop watching; a task in wait() gets false.
function Watch:close() end

---@class weft._watch
local M = {}

--- Watch `path` (inotify where available, else stat every `interval` s).
--- The watcher does not keep the process alive.
---@param path string
---@param interval? number
---@return weft.Watch
function M.new(path, interval) end

return M
