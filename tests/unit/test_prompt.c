/* test_prompt.c: prompt templates and prompt functions (runtime/prompt.c).
 * Prints one line per failure and "N passed, N failed"; exits non-zero on failure. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "lua/job.h"
#include "models/prompt.h"

#include "check.h"

/* Run Lua code that leaves one value on the stack. */
static void eval(lua_State *L, const char *code)
{
    if (luaL_dostring(L, code) != LUA_OK) {
        printf("FAIL lua: %s\n", lua_tostring(L, -1));
        failed++;
        lua_pop(L, 1);
        lua_pushnil(L);
    }
}

/* Render template for the record at the top of the stack; expect text, or an error containing
 * want_error when it is not NULL. */
static void expect(lua_State *L, const char *template, const char *want, const char *want_error)
{
    struct rn_err err = {{0}};
    struct buf out;
    buf_init(&out);
    int top = lua_gettop(L);
    struct prompt *p = prompt_parse(L, template, strlen(template), &err);
    if (!p) {
        CHECK(want_error && strstr(err.msg, want_error), "template '%s': parse error '%s'", template, err.msg);
        return;
    }
    int rc = prompt_render(p, -1, &out, &err);
    if (want_error) CHECK(rc == -1 && strstr(err.msg, want_error), "template '%s': want error '%s', got rc=%d '%s'",
                          template, want_error, rc, rc ? err.msg : out.data);
    else CHECK(rc == 0 && out.data && strcmp(out.data, want) == 0, "template '%s': want '%s', got rc=%d '%s'",
               template, want, rc, rc ? err.msg : out.data);
    CHECK(lua_gettop(L) == top, "template '%s': stack moved from %d to %d", template, top, lua_gettop(L));
    prompt_free(p);
    buf_free(&out);
}

static void test_templates(lua_State *L)
{
    eval(L, "return { summary = 'Great taste', score = 5, ratio = 0.25, whole = 4.0, ok = true,"
                     " nested = { name = 'Ann', deep = { x = 1 } }, list = {1, 2}, ['Product Id'] = 'B01' }");
    expect(L, "", "", NULL);
    expect(L, "no placeholders", "no placeholders", NULL);
    expect(L, "{{summary}}", "Great taste", NULL);
    expect(L, "Review: {{ summary }} ({{score}}/5)", "Review: Great taste (5/5)", NULL);
    expect(L, "{{ratio}} {{whole}} {{ok}}", "0.25 4.0 true", NULL);
    expect(L, "{{nested.name}} {{nested.deep.x}}", "Ann 1", NULL);
    expect(L, "{{Product Id}}", "B01", NULL);
    expect(L, "JSON: {\"a\": {\"b\": 1}} }}", "JSON: {\"a\": {\"b\": 1}} }}", NULL);
    expect(L, "{{{{summary}} is literal", "{{summary}} is literal", NULL);
    expect(L, "{{{{{{summary}}", "{{Great taste", NULL);
    expect(L, "a { b } c {", "a { b } c {", NULL);
    expect(L, "{{missing}}", NULL, "prompt: field 'missing' is missing");
    expect(L, "{{nested.nope}}", NULL, "field 'nested.nope' is missing");
    expect(L, "{{summary.x}}", NULL, "field 'summary.x' is missing");
    expect(L, "{{list}}", NULL, "field 'list' is a table");
    expect(L, "x {{summary", NULL, "unclosed {{ at byte 3");
    expect(L, "{{ }}", NULL, "empty placeholder");
    expect(L, "{{a\nb}}", NULL, "bad placeholder");
    expect(L, "{{{x}}}", NULL, "bad placeholder");
    expect(L, "{{.a}}", NULL, "bad field name");
    expect(L, "{{a..b}}", NULL, "bad field name");
    lua_pop(L, 1);
}

static void test_reuse(lua_State *L)
{
    struct rn_err err;
    const char *t = "<{{summary}}|{{score}}>";
    struct prompt *p = prompt_parse(L, t, strlen(t), &err);
    CHECK(p && prompt_field_count(p) == 2, "field count");
    struct buf out;
    buf_init(&out);
    int i;
    for (i = 0; i < 1000; i++) {
        lua_createtable(L, 0, 2);
        lua_pushfstring(L, "r%d", i);
        lua_setfield(L, -2, "summary");
        lua_pushinteger(L, i);
        lua_setfield(L, -2, "score");
        buf_clear(&out);
        int rc = prompt_render(p, -1, &out, &err);
        lua_pop(L, 1);
        char want[64];
        snprintf(want, sizeof want, "<r%d|%d>", i, i);
        if (rc || strcmp(out.data, want) != 0) { CHECK(0, "render %d: %s", i, rc ? err.msg : out.data); break; }
    }
    CHECK(i == 1000, "1000 renders of one template");
    buf_free(&out);
    prompt_free(p);
}

static void test_function(lua_State *L)
{
    struct rn_err err;
    struct buf out;
    buf_init(&out);
    eval(L, "return function(r) return 'Rate: ' .. r.summary end");
    struct prompt *p = prompt_from_function(L, -1);
    lua_pop(L, 1);
    CHECK(prompt_field_count(p) == 0, "function prompt has no fields");
    eval(L, "return { summary = 'tasty' }");
    CHECK(prompt_render(p, -1, &out, &err) == 0 && strcmp(out.data, "Rate: tasty") == 0, "function prompt: %s",
          out.data ? out.data : err.msg);
    lua_pop(L, 1);
    eval(L, "return { }");
    int top = lua_gettop(L);
    CHECK(prompt_render(p, -1, &out, &err) == -1 && strstr(err.msg, "prompt: ") == err.msg &&
              strstr(err.msg, "attempt to concatenate") && !strstr(err.msg, "traceback"),
          "function error: %s", err.msg);
    CHECK(lua_gettop(L) == top, "stack after a function error");
    lua_pop(L, 1);
    prompt_free(p);

    eval(L, "return function(r) return nil end");
    p = prompt_from_function(L, -1);
    lua_pop(L, 1);
    lua_newtable(L);
    CHECK(prompt_render(p, -1, &out, &err) == -1 && strstr(err.msg, "returned nil, expected a string"),
          "nil result: %s", err.msg);
    lua_pop(L, 1);
    prompt_free(p);
    buf_free(&out);
}

int main(void)
{
    struct job_env env = {.script = "test_prompt.lua", .job_name = "test"};
    struct rn_err err;
    lua_State *L = luajob_new(&env, NULL, 0, &err); /* prompt functions run in the job's sandbox */
    if (!L) {
        printf("FAIL %s\n", err.msg);
        return 1;
    }
    test_templates(L);
    test_reuse(L);
    test_function(L);
    luajob_close(L);
    return check_report("test_prompt");
}
