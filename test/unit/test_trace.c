/* test_trace.c -- weft_trace_for_user (task.c): the traceback of a failed
 * script as a user reads it, without weft's own Lua frames. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "task.h"

static void expect(const char *in, const char *lib, const char *want) {
    char *out = weft_trace_for_user(in, strlen(in), lib);
    CHECK(out != NULL);
    if (out) CHECK_EQ_STR(out, want);
    free(out);
}

static void test_drops_weft_frames(void) {
    expect("x.lua:1: bad\nstack traceback:\n\t[C]: in function 'error'\n"
           "\t/opt/weft/lua/weft/init.lua:241: in function 'configure'\n\tx.lua:1: in main chunk",
           "/opt/weft/lua/weft/",
           "x.lua:1: bad\nstack traceback:\n\tx.lua:1: in main chunk");
}

static void test_keeps_user_and_other_c_frames(void) {
    expect("boom\nstack traceback:\n\t[C]: in function 'pcall'\n\tapp.lua:3: in function 'f'\n\tapp.lua:9: in main chunk",
           "/opt/weft/lua/weft/",
           "boom\nstack traceback:\n\t[C]: in function 'pcall'\n\tapp.lua:3: in function 'f'\n\tapp.lua:9: in main chunk");
}

static void test_no_frame_left_drops_the_header(void) {
    expect("invalid_request: x\nstack traceback:\n\t[C]: in function 'error'\n\t/h/lua/weft/model.lua:2: in function 'complete'",
           "/h/lua/weft/", "invalid_request: x");
}

static void test_shortened_paths(void) {
    expect("e\nstack traceback:\n\t...ld/some/deep/prefix/lua/weft/_pipeline.lua:83: in function 'bad'\n"
           "\t...ome/user/projects/app/main.lua:4: in main chunk",
           "/very/long/build/some/deep/prefix/lua/weft/",
           "e\nstack traceback:\n\t...ome/user/projects/app/main.lua:4: in main chunk");
}

static void test_edges(void) {
    expect("", "/h/lua/weft/", "");
    expect("just a message", NULL, "just a message");
    expect("m\n", "/h/lua/weft/", "m");
}

int main(void) {
    RUN(test_drops_weft_frames);
    RUN(test_keeps_user_and_other_c_frames);
    RUN(test_no_frame_left_drops_the_header);
    RUN(test_shortened_paths);
    RUN(test_edges);
    return DONE();
}
