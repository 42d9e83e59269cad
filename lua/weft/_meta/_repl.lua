---@meta weft._repl
-- Editor stubs for the REPL's line input (runtime/lua_repl.c, libedit).

---@class weft.ReplInput
local R = {}

--- Suspend the calling task until a whole line is typed (or piped in);
--- nil at the end of input.
---@param prompt? string
---@return string?
function R:read(prompt) end

--- Remember a line in the history (saved on close).
---@param line string
function R:add_history(line) end

--- The task Ctrl-C cancels (the line that runs), or nil. True when Ctrl-C
--- cancelled the task this one replaces (on a terminal a newline already
--- followed the ^C echo).
---@param task? weft.Task
---@return boolean
function R:running(task) end

--- True when stdin is a terminal.
---@return boolean
function R:tty() end

--- Stop reading; save the history.
function R:close() end

---@class weft._repl
local M = {}

--- Open the REPL's input (one at a time).
---@param opts {history?: string, tty?: boolean}
---@return weft.ReplInput
function M.open(opts) end

--- Cancel every task: the ones started at the prompt end with the REPL.
function M.exit() end

return M
