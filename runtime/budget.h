/* budget.h -- a CPU and allocation budget for one call into untrusted Lua.
 *
 * Plugin code (provider codecs, policies) runs inside the host's only Lua
 * state, on the loop's only thread: an endless loop or an endless
 * allocation in it would stop every task. A budgeted call bounds both:
 *
 * - instructions: a count hook (lua_sethook, LUA_MASKCOUNT) armed for the
 *   duration of the call counts bytecode instructions and raises an error
 *   once the limit is reached. Count hooks never fire inside JIT-compiled
 *   code (TOOLCHAIN.md), so plugin chunks are loaded with the JIT off for
 *   every function they define (lua/weft/plugins.lua does jit.off(chunk,
 *   true)); the hook is only armed during budgeted calls, so the rest of
 *   the host keeps the JIT and an unhooked interpreter.
 * - time: the same hook reads the monotonic clock; a call past its time
 *   limit ends too. This catches what instructions do not count: cheap
 *   loops around expensive C calls (string.find over megabytes, sorts).
 *   The hook's period starts at 200 instructions and shrinks (down to
 *   10) when one period took over a millisecond, so such a loop is caught
 *   within about the time of fifty of its C calls, then ten.
 * - memory: the state's allocator is wrapped once, when the state is
 *   created; during a budgeted call it adds up every byte the call asks
 *   for (gross growth, not net: deterministic whatever the collector does)
 *   and refuses an allocation that would pass the limit, which LuaJIT turns
 *   into a "not enough memory" error in that call.
 *
 * A tripped budget stays tripped until the call returns: weft._budget's
 * `tripped()` lets the sandbox's pcall/xpcall re-raise, so plugin code
 * cannot catch the error and go on. What a single C function does in one
 * instruction (a pathological string.find) is not interruptible here; the
 * signal fallback (SIGINT/SIGTERM grace exit) is the last resort.
 *
 * The Lua binding is lua_budget.c (weft._budget).
 */
#ifndef WEFT_BUDGET_H
#define WEFT_BUDGET_H

#include <stddef.h>

#include <lua.h>

enum weft_budget_trip {
    WEFT_BUDGET_OK = 0,
    WEFT_BUDGET_INSTRUCTIONS,   /* the instruction limit was reached */
    WEFT_BUDGET_MEMORY,         /* an allocation would have passed the limit */
    WEFT_BUDGET_TIME,           /* the call ran longer than its time limit */
};

struct weft_budget {
    lua_Alloc orig;            /* the state's own allocator, wrapped */
    void *orig_ud;
    int active;                /* inside a budgeted call */
    enum weft_budget_trip tripped;
    double instructions;       /* limit for the current call */
    double used;               /* instructions counted so far (by hook steps) */
    int step;                  /* hook period in instructions */
    size_t memory;             /* allocation limit (bytes) for the call */
    size_t allocated;          /* bytes asked for during the call */
    double deadline;           /* monotonic time the call must end by */
    double last;               /* time of the previous hook */
    /* defaults for new calls, and counters */
    double default_instructions;
    size_t default_memory;
    double default_time;       /* seconds */
    unsigned long calls, trips_instructions, trips_memory, trips_time;
    double blocks;             /* blocks allocated by the state so far (new
                                  objects and their parts; bench/pipeline's
                                  objects per call) */
    /* the hook that was set when a span opened by weft._budget.enter() began
     * (restored by leave()) */
    lua_Hook saved_hook;
    int saved_mask, saved_count;
    /* the chunk name of the host code that opened the span (interned by
     * LuaJIT, compared by address): a tripped budget does not interrupt
     * it, so it can close the span. NULL for call(). */
    const char *host_source;
    const char *span_host;     /* the chunk that opens spans (span_host()) */
};

/* Wrap the allocator of `L` (call right after the state is created, before
 * anything is allocated that would be freed through another allocator --
 * lua_setallocf keeps working for blocks made before it since the wrapper
 * forwards to the original). Returns the budget, owned by the caller, which
 * must keep it alive until after lua_close(L) and then free it with
 * weft_budget_free. NULL on allocation failure (then nothing is wrapped). */
struct weft_budget *weft_budget_install(lua_State *L);

/* Free a budget after its state has been closed. NULL is ignored. */
void weft_budget_free(struct weft_budget *b);

/* The budget of a state (NULL when weft_budget_install was not called). */
struct weft_budget *weft_budget_of(lua_State *L);

#endif
