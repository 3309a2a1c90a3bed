/* job.h: the job's Lua state: a sandboxed Lua 5.4 with the declaration functions
 * (source.*, sink.*, model.*, job, param, env, secret) and the helpers that call back into
 * job-script functions safely.
 *
 * A declaration (what source.csv{...} and the others return) is a userdata with a metatable,
 * holding its kind, its plugin, the script line that made it and its options, checked at that
 * line (lua/options.h). Every call into script code goes through luajob_call: a traceback on
 * error, an instruction limit and a memory limit, so a bad script can neither crash nor hang
 * the runner nor take all of its memory. Each state keeps these in its own structures: any
 * number of job states may live in one process. */
#ifndef RUNNEL_LUA_JOB_H
#define RUNNEL_LUA_JOB_H

#include <lua.h>
#include "engine/plugin.h"

struct param { const char *key; const char *value; };

/* Create the job's Lua state with the sandbox and declaration functions. params are the
 * --set key=value pairs (borrowed; must outlive the state). NULL and err on failure. */
lua_State *luajob_new(struct job_env *env, const struct param *params, size_t nparams, struct rn_err *err);
/* Close a state made by luajob_new (NULL is fine). */
void luajob_close(lua_State *L);

/* Run the job script and leave its job declaration on the stack; set the sandbox's limits
 * from its options (instruction_limit, memory_limit). -1 and err (one line naming the script
 * line, no traceback) when the script fails or does not return job{...}; -2 when it failed on
 * a --set the command line got wrong (a value not of the default's type, a param without
 * default not given). */
int luajob_load(struct job_env *env, const char *path, struct rn_err *err);

/* After luajob_load: -1 and err when a --set names a param the script never read through
 * param() (a misspelling, most likely): "--set inptu=x: jobs/x.lua has no param "inptu"; did
 * you mean input? (its params: input, output)". main makes it a usage error. */
int luajob_check_params(lua_State *L, struct rn_err *err);

/* Call the function below nargs arguments on the stack, like lua_pcall, with a traceback and
 * the instruction and memory limits. On error err holds "script:line: message" plus the
 * traceback, or "Lua memory limit of 64 MB reached". L must be a job state (or one of its
 * threads). */
int luajob_call(lua_State *L, int nargs, int nresults, struct rn_err *err);
/* NULL while the job may go on; else why it must stop: a call reached memory_limit and a full
 * collection afterwards left more than half of it in use (the script keeps the memory). */
const char *luajob_fatal(lua_State *L);

/* Set the per-call instruction limit (0: none). */
void luajob_set_instruction_limit(lua_State *L, int64_t limit);
/* Set the Lua heap limit in bytes (0: none). */
void luajob_set_memory_limit(lua_State *L, int64_t bytes);

/* The value of a secret made by secret() (or a plain string) at idx; NULL if neither.
 * The pointer lives as long as the value on the stack/in the table. */
const char *luajob_secret_value(lua_State *L, int idx);

/* The variable name of the secret() value at idx ("OPENAI_API_KEY"); NULL for anything else.
 * Lives as long as the value. */
const char *luajob_secret_name(lua_State *L, int idx);

/* Declarations. kind is "source", "sink", "model" or "job"; NULL when the value at idx is not
 * a declaration (a table that looks like one is not). type is the plugin's name ("csv"; "job"
 * for job{}), ops its struct source_ops, sink_ops or provider_ops (NULL for job{}), where the
 * line that made it ("jobs/x.lua:12"). The strings live as long as the declaration. */
const char *luajob_decl_kind(lua_State *L, int idx);
const char *luajob_decl_type(lua_State *L, int idx);
const void *luajob_decl_ops(lua_State *L, int idx);
const char *luajob_decl_where(lua_State *L, int idx);
/* Push the checked options table of the declaration at idx (nil when idx holds none) and
 * return its stack index. */
int luajob_decl_options(lua_State *L, int idx);

/* The options of job{...}, for `runnel help job`. */
const struct option_spec *luajob_job_options(void);

#endif
