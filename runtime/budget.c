/* budget.c -- the instruction and allocation budget of a call into
 * untrusted Lua (see budget.h). */
#include "budget.h"

#include <stdlib.h>

#include <lauxlib.h>

#define DEFAULT_INSTRUCTIONS 10e6        /* ~20-50 ms of interpreted Lua */
#define DEFAULT_MEMORY (64u << 20)       /* bytes asked for during one call */
#define DEFAULT_TIME 0.25                /* seconds of one call */

/* The allocator of every state with a budget. Outside a budgeted call it
 * only forwards (one branch); inside, growth is added up and refused past
 * the limit. Frees and shrinks always go through. */
static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    struct weft_budget *b = ud;
    if (!ptr && nsize > 0) b->blocks++;
    if (b->active && nsize > 0) {
        size_t old = ptr ? osize : 0;
        if (nsize > old) {
            size_t grow = nsize - old;
            if (b->tripped || grow > b->memory - b->allocated) {
                if (!b->tripped) b->tripped = WEFT_BUDGET_MEMORY;
                return NULL; /* LuaJIT raises "not enough memory" in the call */
            }
            b->allocated += grow;
        }
    }
    return b->orig(b->orig_ud, ptr, osize, nsize);
}

struct weft_budget *weft_budget_install(lua_State *L) {
    struct weft_budget *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->orig = lua_getallocf(L, &b->orig_ud);
    b->default_instructions = DEFAULT_INSTRUCTIONS;
    b->default_memory = DEFAULT_MEMORY;
    b->default_time = DEFAULT_TIME;
    lua_setallocf(L, budget_alloc, b);
    return b;
}

void weft_budget_free(struct weft_budget *b) {
    free(b);
}

struct weft_budget *weft_budget_of(lua_State *L) {
    void *ud = NULL;
    lua_Alloc f = lua_getallocf(L, &ud);
    return f == budget_alloc ? ud : NULL;
}
