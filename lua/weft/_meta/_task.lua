---@meta weft._task
-- Editor stubs for the scheduler implemented in runtime/task.c.
-- Scripts use the wrappers in `weft` (lua/weft/init.lua) instead.

---@class weft._task
local T = {}

---@class weft._task.Task : userdata

--- Spawn `fn(...)` as a new task; it starts on the next run-queue drain.
---@param fn function
---@return weft._task.Task
function T.spawn(fn, ...) end

--- The same, for a task the script started (weft.spawn): named by the hint
--- when it keeps a finished script running.
---@param fn function
---@return weft.Task
function T.spawn_user(fn, ...) end

--- Suspend the current task for `seconds`; returns nil, err when cancelled.
---@param seconds number
---@return nil, weft.Error?
function T.sleep(seconds) end

--- Park the current task until `wake(task, ...)`; returns wake's values,
--- or nil, err when the task is cancelled.
---@return any ...
function T.suspend() end

--- Resume a task parked by `suspend()` with the given values.
---@param task weft._task.Task
---@return boolean woken false when the task was not parked
function T.wake(task, ...) end

--- The running task, or nil in the main thread or a foreign coroutine.
---@return weft._task.Task|nil
function T.current() end

--- Monotonic seconds.
---@return number
function T.now() end

--- Wall-clock seconds since the epoch.
---@return number
function T.time() end

--- Live tasks and registry refs held by the host.
---@return {tasks: integer, refs: integer}
function T.stats() end

--- End the process cleanly with status `code` (0..255): every task is
--- cancelled and the servers close; the calling task ends there as
--- cancelled (it never returns). Outside a task raises `cancelled` instead.
---@param code integer
function T.exit(code) end

--- Task methods (installed as the task userdata's __index).
T.methods = {
    --- true, results... | false, err | nil, timeout-err
    ---@return boolean|nil ok
    join = function(task, timeout) end,
    ---@return boolean alive false when already finished
    cancel = function(task) end,
    ---@return "ready"|"running"|"waiting"|"done"|"failed"|"cancelled"
    status = function(task) end,
    ---@return integer
    id = function(task) end,
    ---@return string|nil
    traceback = function(task) end,
}

return T
