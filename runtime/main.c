/* main.c -- the weft command line. */
#include <curl/curl.h>
#include <errno.h>
#include <http_parser.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "linger.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "secrets.h"
#include "signals.h"
#include "luax.h"
#include "task.h"

static const char USAGE[] =
    "usage: weft [options] <command> [args...]\n"
    "\n"
    "commands:\n"
    "  run [RUN OPTIONS] SCRIPT [ARGS...]\n"
    "                         run a Lua script in a task on the event loop\n"
    "  -e CHUNK [ARGS...]     run a Lua chunk given on the command line\n"
    "  mock [OPTIONS]         run the mock provider (OpenAI, Anthropic, Gemini)\n"
    "  serve --config FILE [OPTIONS]\n"
    "                         an OpenAI- and Anthropic-compatible gateway over the\n"
    "                         configured models and policies (weft serve --help)\n"
    "  repl [--config FILE] [--plugins DIR] [--mock]\n"
    "                         interactive Lua on the event loop (each line is a task)\n"
    "  check PLUGIN.lua...    validate plugin files (API version, schema, functions, and a\n"
    "                         round trip through the normalized forms); exit 1 on findings\n"
    "  version                print the versions of weft and its libraries\n"
    "  help [COMMAND]         print this help, or a command's (also COMMAND --help)\n"
    "\n"
    "options:\n"
    "  -l, --log-level LEVEL  error, warn, info, debug or off (default: $WEFT_LOG or info)\n"
    "  --log-format FORMAT    json, logfmt or auto: logfmt when stderr is a terminal\n"
    "                         (default: $WEFT_LOG_FORMAT or auto)\n"
    "\n"
    "run options:\n"
    "  --metrics HOST:PORT    serve Prometheus metrics on http://HOST:PORT/metrics while\n"
    "                         the script runs (HOST defaults to 127.0.0.1)\n"
    "  --config FILE          configure providers and models from FILE (Lua returning\n"
    "                         {providers = ..., models = ...}) before the script starts\n"
    "  --plugins DIR          search DIR for plugins first (repeatable); also $WEFT_PLUGIN_PATH\n"
    "  --summary              print a summary of the calls made at exit (the default\n"
    "                         when stderr is a terminal); --no-summary: never\n"
    "  --quiet                no progress line or progress log lines (weft.map)\n"
    "\n"
    "Scripts see the global `weft` (also require \"weft\") and `arg` as luajit sets it.\n"
    "A script ends when its main chunk has returned and nothing it started (servers,\n"
    "tasks) is left; weft.exit([code]) or os.exit([code]) ends it at once, cleanly.\n"
    "SIGINT or SIGTERM cancels all running tasks; weft then exits with status 130\n"
    "(SIGINT) or 143 (SIGTERM). When Lua code keeps the event loop from handling the\n"
    "signal for $WEFT_SIGNAL_GRACE seconds (default 2), also while the tasks are being\n"
    "cancelled, or when a second signal arrives, weft exits at once with that status.\n";

static const char RUN_USAGE[] =
    "usage: weft [options] run [RUN OPTIONS] SCRIPT [ARGS...]\n"
    "\n"
    "Run the Lua file SCRIPT in a task on the event loop: it sees the global `weft`,\n"
    "`arg` as luajit sets it (arg[0] = SCRIPT) and ARGS as `...`. Exit status: 0, or 1\n"
    "when the script raises an error (the message and a traceback go to stderr), or the\n"
    "code given to weft.exit / os.exit.\n"
    "\n"
    "run options:\n"
    "  --metrics HOST:PORT    serve Prometheus metrics on http://HOST:PORT/metrics while\n"
    "                         the script runs (HOST defaults to 127.0.0.1; port 0: any\n"
    "                         free port); the URL is printed on stderr\n"
    "  --config FILE          configure providers and models from FILE (Lua returning\n"
    "                         {providers = ..., models = ...}) before the script starts\n"
    "  --plugins DIR          search DIR for plugins first (repeatable); also $WEFT_PLUGIN_PATH\n"
    "  --summary              print a summary of the calls made at exit (the default\n"
    "                         when stderr is a terminal); --no-summary: never\n"
    "  --quiet                no progress line or progress log lines (weft.map)\n"
    "  --                     end of the options (for a SCRIPT whose name starts with -)\n"
    "\n"
    "The process ends when the script has returned and nothing it started is left:\n"
    "servers (weft.http.serve, unless background = true) and tasks (weft.spawn) keep it\n"
    "running, and weft says which once on stderr. srv:close() and task:cancel() end\n"
    "them; weft.exit([code]) or os.exit([code]) closes and cancels everything and ends\n"
    "the process with that status.\n";

static const char EVAL_USAGE[] =
    "usage: weft [options] -e CHUNK [ARGS...]\n"
    "\n"
    "Run the Lua code CHUNK in a task on the event loop, as `weft run` runs a script\n"
    "(without the run options): ARGS are its `...` and arg[1..].\n"
    "Example: weft -e 'print(weft.model(\"openai/gpt-4o-mini\"):complete(...).text)' hello\n";

static const char CHECK_USAGE[] =
    "usage: weft [options] check PLUGIN.lua...\n"
    "\n"
    "Validate plugin files: API version, name, kind, schema and functions; a provider\n"
    "is driven through the normalized forms (and through its fixtures, the plugin's\n"
    "`fixtures` field or a NAME.fixtures.lua file beside it), a policy over simulated\n"
    "targets. Prints the findings of each file; exit status 0 when every file is fine\n"
    "(warnings allowed), 1 when one has an error, 2 without files.\n";

static const char VERSION_USAGE[] =
    "usage: weft version\n"
    "\n"
    "Print the versions of weft and of the libraries it runs on (LuaJIT, libcurl and\n"
    "its TLS library, libev, http-parser).\n";

static const char LEVELS[] = "error, warn, info, debug, off";

/* The usage of a command, or NULL for one without its own (mock and repl
 * print theirs: their options are parsed in Lua). */
static const char *command_usage(const char *cmd) {
    if (strcmp(cmd, "run") == 0) return RUN_USAGE;
    if (strcmp(cmd, "-e") == 0) return EVAL_USAGE;
    if (strcmp(cmd, "check") == 0) return CHECK_USAGE;
    if (strcmp(cmd, "version") == 0) return VERSION_USAGE;
    return NULL;
}

static int is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

/* Why `path` cannot be a plugin directory, or NULL when it is a directory. */
static const char *not_a_dir(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return errno == ENOENT ? "no such directory" : strerror(errno);
    return S_ISDIR(st.st_mode) ? NULL : "not a directory";
}

static void print_version(void) {
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    unsigned long hp = http_parser_version();
    printf("weft %s\n%s\nlibcurl %s (%s)\nlibev %d.%d\nhttp-parser %lu.%lu.%lu\n", WEFT_VERSION,
           LUAJIT_VERSION, cv->version, cv->ssl_version ? cv->ssl_version : "no TLS",
           ev_version_major(), ev_version_minor(), (hp >> 16) & 255, (hp >> 8) & 255, hp & 255);
}

/* Many concurrent transfers need many descriptors: lift the soft limit to
 * the hard one, as servers such as nginx do. */
static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* arg as luajit sets it: arg[0] = script, arg[1..] = args, negative
 * indices = the interpreter and its options. */
static void set_arg_table(lua_State *L, char **argv, int argc, int script_index) {
    lua_createtable(L, argc - script_index, script_index + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script_index);
    }
    lua_setglobal(L, "arg");
}

/* Call require(mod)[fn](arg) in protected mode; leaves the first result
 * on the stack. Returns 0, or -1 with the error message on the stack. */
static int call_lua(lua_State *L, const char *mod, const char *fn, const char *arg) {
    lua_getglobal(L, "require");
    lua_pushstring(L, mod);
    if (lua_pcall(L, 1, 1, 0) != 0) return -1;
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    int nargs = 0;
    if (arg) {
        lua_pushstring(L, arg);
        nargs = 1;
    }
    if (lua_pcall(L, nargs, 1, 0) == 0) return 0;
    /* error values are tables with __tostring: make the message a string */
    lua_getglobal(L, "tostring");
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0) != 0 || !lua_isstring(L, -1)) {
        lua_pop(L, 1);
        lua_pushliteral(L, "(error without a message)");
    }
    return -1;
}

/* Write text to stderr through secret redaction. */
static void print_redacted(const char *text, size_t len) {
    char *red = NULL;
    size_t rlen = 0;
    if (weft_secrets_redact(text, len, &red, &rlen) == 0 && red) {
        fwrite(red, 1, rlen, stderr);
        free(red);
    } else {
        fwrite(text, 1, len, stderr);
    }
}

static int report_load_error(lua_State *L) {
    fprintf(stderr, "weft: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 1;
}

int main(int argc, char **argv) {
    /* First of all, so that SIGINT/SIGTERM during start-up and while the
     * configuration file runs are honoured too (signals.h). */
    if (weft_signals_install() != 0)
        fprintf(stderr, "weft: cannot install the signal handlers: %s\n", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    const char *envgrace = getenv("WEFT_SIGNAL_GRACE");
    if (envgrace && *envgrace) {
        char *end;
        double g = strtod(envgrace, &end);
        if (*end != '\0' || weft_signals_set_grace(g) != 0) {
            fprintf(stderr, "weft: WEFT_SIGNAL_GRACE=%s is not a number of seconds in (0, 3600]\n",
                    envgrace);
            return 2;
        }
    }

    const char *envlevel = getenv("WEFT_LOG");
    if (envlevel && *envlevel) {
        int lv = weft_log_parse_level(envlevel);
        if (lv < 0) {
            fprintf(stderr, "weft: WEFT_LOG=%s is not a level (debug, info, warn, error, off)\n",
                    envlevel);
            return 2;
        }
        weft_log_set_level(lv);
    }
    const char *envfmt = getenv("WEFT_LOG_FORMAT");
    int fmt = weft_log_parse_format(envfmt && *envfmt ? envfmt : "auto");
    if (fmt < 0) {
        fprintf(stderr, "weft: WEFT_LOG_FORMAT=%s is not a format (json, logfmt, auto)\n", envfmt);
        return 2;
    }
    weft_log_set_format(fmt);

    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-l") == 0 || strcmp(a, "--log-level") == 0 ||
            strncmp(a, "--log-level=", 12) == 0) {
            const char *name = strncmp(a, "--log-level=", 12) == 0 ? a + 12 : i + 1 < argc ? argv[++i] : NULL;
            int lv = name ? weft_log_parse_level(name) : -1;
            if (!name) {
                fprintf(stderr, "weft: %s needs a level (%s)\n", a, LEVELS);
                return 2;
            }
            if (lv < 0) {
                fprintf(stderr, "weft: unknown log level '%s' (%s)\n", name, LEVELS);
                return 2;
            }
            weft_log_set_level(lv);
        } else if (strcmp(a, "--log-format") == 0 || strncmp(a, "--log-format=", 13) == 0) {
            const char *name = strncmp(a, "--log-format=", 13) == 0 ? a + 13 : i + 1 < argc ? argv[++i] : NULL;
            int f = name ? weft_log_parse_format(name) : -1;
            if (f < 0) {
                if (name) fprintf(stderr, "weft: unknown log format '%s' (json, logfmt, auto)\n", name);
                else fprintf(stderr, "weft: --log-format needs a format (json, logfmt, auto)\n");
                return 2;
            }
            weft_log_set_format(f);
        } else if (a[0] == '-' && strcmp(a, "-e") != 0 && !is_help(a) && strcmp(a, "-v") != 0 &&
                   strcmp(a, "--version") != 0) {
            fprintf(stderr, "weft: unknown option '%s'\n\n%s", a, USAGE);
            return 2;
        } else {
            break;
        }
    }
    if (i >= argc) {
        fputs(USAGE, stderr);
        return 2;
    }
    const char *cmd = argv[i];
    if (strcmp(cmd, "help") == 0 || is_help(cmd)) {
        /* `weft help COMMAND`: that command's usage, as COMMAND --help */
        if (i + 1 >= argc) {
            fputs(USAGE, stdout);
            return 0;
        }
        const char *topic = argv[i + 1];
        if (strcmp(topic, "mock") == 0 || strcmp(topic, "repl") == 0 ||
            strcmp(topic, "serve") == 0) {
            argv[i] = argv[i + 1]; /* mock and repl print their own: run them with --help */
            argv[i + 1] = (char *)"--help";
            cmd = argv[i];
        } else if (command_usage(topic)) {
            fputs(command_usage(topic), stdout);
            return 0;
        } else {
            fprintf(stderr, "weft: unknown command '%s'\n\n%s", topic, USAGE);
            return 2;
        }
    }
    /* COMMAND --help: the usage of run, -e, check and version (mock and
     * repl parse their options in Lua and print theirs) */
    if (i + 1 < argc && is_help(argv[i + 1]) && command_usage(cmd)) {
        fputs(command_usage(cmd), stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0 || strcmp(cmd, "-v") == 0) {
        print_version();
        return 0;
    }
    int is_run = strcmp(cmd, "run") == 0;
    int is_eval = strcmp(cmd, "-e") == 0;
    int is_mock = strcmp(cmd, "mock") == 0;
    int is_check = strcmp(cmd, "check") == 0;
    if (is_check) is_mock = 2; /* like mock: a Lua main with the rest of the arguments */
    if (strcmp(cmd, "repl") == 0) is_mock = 3;
    if (strcmp(cmd, "serve") == 0) is_mock = 4; /* like mock: the gateway's main in Lua */
    if (!is_run && !is_eval && !is_mock) {
        fprintf(stderr, "weft: unknown command '%s'\n\n%s", cmd, USAGE);
        return 2;
    }
    /* run options, between `run` and the script path */
    const char *metrics_addr = NULL;
    const char *config_path = NULL;
    const char *plugin_dirs[16];
    int nplugin_dirs = 0;
    int summary = -1; /* -1: when stderr is a terminal */
    int quiet = 0;    /* --quiet: no progress output */
    if (is_run) {
        while (i + 1 < argc && argv[i + 1][0] == '-' && argv[i + 1][1] != '\0') {
            const char *o = argv[i + 1];
            if (strcmp(o, "--metrics") == 0) {
                if (i + 2 >= argc) {
                    fprintf(stderr, "weft: --metrics needs HOST:PORT (such as 127.0.0.1:9464)\n");
                    return 2;
                }
                metrics_addr = argv[i + 2];
                i += 2;
            } else if (strncmp(o, "--metrics=", 10) == 0) {
                metrics_addr = o + 10;
                i++;
            } else if (strcmp(o, "--config") == 0 || strcmp(o, "--plugins") == 0) {
                if (i + 2 >= argc) {
                    fprintf(stderr, "weft: %s needs %s\n", o, o[2] == 'c' ? "a file" : "a directory");
                    return 2;
                }
                if (o[2] == 'c') {
                    config_path = argv[i + 2];
                } else {
                    if (nplugin_dirs == 16) {
                        fprintf(stderr, "weft: at most 16 --plugins directories\n");
                        return 2;
                    }
                    const char *why = not_a_dir(argv[i + 2]);
                    if (why) {
                        fprintf(stderr, "weft: --plugins %s: %s\n", argv[i + 2], why);
                        return 2;
                    }
                    plugin_dirs[nplugin_dirs++] = argv[i + 2];
                }
                i += 2;
            } else if (strcmp(o, "--summary") == 0) {
                summary = 1;
                i++;
            } else if (strcmp(o, "--no-summary") == 0) {
                summary = 0;
                i++;
            } else if (strcmp(o, "--quiet") == 0) {
                quiet = 1;
                i++;
            } else if (is_help(o)) {
                fputs(RUN_USAGE, stdout);
                return 0;
            } else if (strcmp(o, "--") == 0) {
                i++;
                break;
            } else {
                fprintf(stderr, "weft: unknown run option '%s'\n\n%s", o, RUN_USAGE);
                return 2;
            }
        }
        if (summary < 0) summary = isatty(STDERR_FILENO);
    }
    if (!is_mock && i + 1 >= argc) {
        fprintf(stderr, "weft: %s needs %s\n", cmd, is_run ? "a script path" : "a chunk");
        return 2;
    }
    /* `weft mock ARGS` runs lua/weft/mock/cli.lua with ARGS (arg[0] = "mock"). */
    int script_index = is_mock ? i : i + 1;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "weft: libcurl initialisation failed\n");
        return 1;
    }
    struct weft_loop *loop = weft_loop_new(NULL, NULL);
    if (!loop) {
        fprintf(stderr, "weft: cannot create the event loop or Lua state\n");
        curl_global_cleanup();
        return 1;
    }
    lua_State *L = loop->L;
    int rc = 0;

    set_arg_table(L, argv, argc, script_index);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "weft");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "weft: cannot load the weft Lua library from %s/lua: %s\n", loop->home,
                lua_tostring(L, -1));
        rc = 1;
        goto out;
    }
    lua_setglobal(L, "weft");
    if (is_run || is_eval) {
        /* os.exit in a script: weft.exit's clean shutdown, not exit(3),
         * which would skip it (servers, the summary, buffered output). */
        lua_getglobal(L, "os");                 /* [os] */
        lua_getglobal(L, "weft");               /* [os, weft] */
        lua_getfield(L, -1, "exit");            /* [os, weft, exit] */
        lua_setfield(L, -3, "exit");            /* [os, weft] */
        lua_pop(L, 2);                          /* [] */
        /* what keeps a finished script running, said once */
        weft_linger_enable(loop);
    }
    /* progress output (weft.map): off, a redrawn line on a terminal, or log lines */
    if (call_lua(L, "weft.map", "output", quiet ? "quiet" : isatty(STDERR_FILENO) ? "tty" : "log") != 0) {
        fprintf(stderr, "weft: %s\n", lua_tostring(L, -1));
        rc = 1;
        goto out;
    }
    lua_pop(L, 1);

    static const char mock_chunk[] = "return require('weft.mock.cli').main(...)";
    static const char check_chunk[] = "return require('weft.check').main(...)";
    static const char repl_chunk[] = "return require('weft.repl').main(...)";
    static const char serve_chunk[] = "return require('weft.serve.cli').main(...)";
    /* --plugins: the first given is searched first (add_dir puts in front) */
    for (int d = nplugin_dirs - 1; d >= 0; d--) {
        if (call_lua(L, "weft.plugins", "add_dir", plugin_dirs[d]) != 0) {
            fprintf(stderr, "weft: --plugins %s: %s\n", plugin_dirs[d], lua_tostring(L, -1));
            rc = 2;
            goto out;
        }
        lua_pop(L, 1);
    }
    if (config_path) {
        if (call_lua(L, "weft.model", "load_config", config_path) != 0) {
            if (loop->exit_requested) { /* os.exit in the configuration file */
                rc = loop->exit_code;
                goto out;
            }
            size_t elen;
            const char *e = lua_tolstring(L, -1, &elen);
            fputs("weft: ", stderr);
            print_redacted(e, elen);
            fputc('\n', stderr);
            rc = 2;
            goto out;
        }
        lua_pop(L, 1);
        if (loop->exit_requested) { /* os.exit in the configuration file, under a pcall */
            rc = loop->exit_code;
            goto out;
        }
    }
    int lrc =
        is_mock == 4   ? luaL_loadbuffer(L, serve_chunk, sizeof serve_chunk - 1, "=weft serve")
        : is_mock == 3 ? luaL_loadbuffer(L, repl_chunk, sizeof repl_chunk - 1, "=weft repl")
        : is_mock == 2 ? luaL_loadbuffer(L, check_chunk, sizeof check_chunk - 1, "=weft check")
        : is_mock      ? luaL_loadbuffer(L, mock_chunk, sizeof mock_chunk - 1, "=weft mock")
        : is_run
            ? luaL_loadfile(L, argv[script_index])
            : luaL_loadbuffer(L, argv[script_index], strlen(argv[script_index]), "=(command line)");
    if (lrc != 0) {
        rc = report_load_error(L);
        goto out;
    }
    if (metrics_addr) {
        /* The endpoint does not keep the process alive: it serves while
         * the script runs. */
        if (call_lua(L, "weft.metrics", "serve_address", metrics_addr) != 0) {
            fprintf(stderr, "weft: --metrics %s: %s\n", metrics_addr, lua_tostring(L, -1));
            rc = 2;
            goto out;
        }
        /* The URL, whatever the log level: with port 0 it is the only way to
         * know where the endpoint is. */
        const char *url = lua_tostring(L, -1);
        fprintf(stderr, "weft: metrics at %s\n", url ? url : "?");
        lua_pop(L, 1); /* the URL (weft.metrics keeps the server); the chunk stays */
    }
    if (weft_signals_pending()) goto out; /* a signal during start-up: nothing to cancel yet */
    int nargs = 0;
    for (int a = script_index + 1; a < argc; a++, nargs++) lua_pushstring(L, argv[a]);
    struct weft_task *main_task = weft_task_spawn(L, nargs); /* [task] */
    main_task->is_main = 1;

    weft_loop_run(loop);

    if (loop->interrupted) {
        rc = 128 + loop->interrupt_signum; /* 130 for SIGINT, 143 for SIGTERM */
    } else if (loop->exit_requested &&
               !(main_task->state == WEFT_TASK_FAILED && !main_task->cancelled)) {
        /* weft.exit: the main task returned, or ended cancelled by it
         * (called it, or was waiting); its own failure before that is
         * reported below. */
        rc = loop->exit_code;
    } else if (main_task->state == WEFT_TASK_DONE) {
        rc = 0;
        /* `weft mock` reports usage errors as its main function's result. */
        if (is_mock) {
            weft_getref(L, main_task->result_ref);   /* [task, results] */
            lua_rawgeti(L, -1, 1);
            if (lua_type(L, -1) == LUA_TNUMBER) rc = (int)lua_tointeger(L, -1);
            lua_pop(L, 2);
        }
    } else if (main_task->state == WEFT_TASK_FAILED) {
        weft_getref(L, main_task->trace_ref);
        size_t tlen;
        const char *trace = lua_tolstring(L, -1, &tlen);
        /* weft's own frames only at debug level (--log-level/WEFT_LOG) */
        char *user = NULL;
        if (weft_log_level() > WEFT_LOG_DEBUG) {
            char libdir[4096];
            snprintf(libdir, sizeof libdir, "%s/lua/weft/", loop->home);
            user = weft_trace_for_user(trace, tlen, libdir);
            if (user) {
                trace = user;
                tlen = strlen(user);
            }
        }
        char *red = NULL;
        size_t rlen = 0;
        if (weft_secrets_redact(trace, tlen, &red, &rlen) == 0 && red) {
            fprintf(stderr, "weft: %.*s\n", (int)rlen, red);
            free(red);
        } else {
            fprintf(stderr, "weft: %s\n", trace);
        }
        free(user);
        lua_pop(L, 1);
        rc = 1;
    } else {
        fprintf(stderr, "weft: the script is still waiting (%s) but nothing is left that could "
                        "wake it\n",
                main_task->wait && main_task->wait->what ? main_task->wait->what : "?");
        rc = 1;
    }
    lua_pop(L, 1);

    if (summary > 0) {
        if (call_lua(L, "weft.calls", "summary", NULL) == 0) {
            size_t n;
            const char *t = lua_tolstring(L, -1, &n);
            if (t && n) print_redacted(t, n);
        } else {
            fprintf(stderr, "weft: summary failed: %s\n", lua_tostring(L, -1));
        }
        lua_pop(L, 1);
    }

out:;
    /* A signal the loop has not handled (during start-up, or after the loop
     * ended): the start-up's error, if any, was its doing (the stall hook of
     * loop.c raises in the configuration file); report the signal. */
    int early = weft_signals_pending();
    if (early) {
        weft_log(WEFT_LOG_WARN, "%s: exiting", early == SIGINT ? "SIGINT" : "SIGTERM");
        rc = 128 + early;
    }
    int leaked = weft_loop_free(loop);
    if (leaked != 0 && getenv("WEFT_CHECK_REFS")) {
        fprintf(stderr, "weft: internal: %d registry references leaked at shutdown\n", leaked);
        if (rc == 0) rc = 3;
    }
    weft_secrets_shutdown(); /* zero every value before exit */
    weft_metrics_reset();
    curl_global_cleanup();
    return rc;
}
