/* bulk.c: index names, dates, action lines and bulk answers (see bulk.h). */
#include <jansson.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tz.h"
#include "sinks/elasticsearch/bulk.h"

#define INDEX_NAME_MAX 255

static int conversion_ok(char c) { return c == 'Y' || c == 'm' || c == 'd' || c == 'H' || c == 'j' || c == '%'; }

int es_index_pattern_check(const char *pattern, struct rn_err *err)
{
    size_t n = strlen(pattern);
    if (n == 0) return rn_fail(err, "is empty");
    if (n > INDEX_NAME_MAX) return rn_fail(err, "is %zu bytes; Elasticsearch allows %d", n, INDEX_NAME_MAX);
    if (strchr("-_+", pattern[0])) return rn_fail(err, "\"%s\" must not start with '-', '_' or '+'", pattern);
    if (!strcmp(pattern, ".") || !strcmp(pattern, "..")) return rn_fail(err, "\"%s\" is not an index name", pattern);
    for (const char *p = pattern; *p; p++) {
        if (*p == '%') {
            if (!conversion_ok(p[1]))
                return rn_fail(err, "\"%s\": %%%c is not one of %%Y %%m %%d %%H %%j %%%%", pattern, p[1] ? p[1] : ' ');
            p++;
            continue;
        }
        if (*p >= 'A' && *p <= 'Z') return rn_fail(err, "\"%s\" must be lowercase", pattern);
        if (strchr("\\/*?\"<>|, #:", *p) || (unsigned char)*p < 0x20)
            return rn_fail(err, "\"%s\" must not hold '%c' (nor \\ / * ? \" < > | , # : or space)", pattern, *p);
    }
    return 0;
}

int es_index_pattern_dated(const char *pattern)
{
    for (const char *p = pattern; (p = strchr(p, '%')); p += 2)
        if (p[1] != '%') return 1;
    return 0;
}

void es_index_format(const char *pattern, int64_t unix_s, int32_t offset_s, struct buf *out)
{
    int64_t local = unix_s + offset_s;
    int64_t days = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
    int64_t seconds = local - days * 86400;
    int64_t year;
    int month, day;
    tz_civil_from_days(days, &year, &month, &day);
    int64_t yday = days - tz_days_from_civil(year, 1, 1) + 1;
    for (const char *p = pattern; *p; p++) {
        if (*p != '%') {
            buf_putc(out, *p);
            continue;
        }
        switch (*++p) {
        case 'Y': buf_printf(out, "%04lld", (long long)year); break;
        case 'm': buf_printf(out, "%02d", month); break;
        case 'd': buf_printf(out, "%02d", day); break;
        case 'H': buf_printf(out, "%02d", (int)(seconds / 3600)); break;
        case 'j': buf_printf(out, "%03d", (int)yday); break;
        default: buf_putc(out, '%'); break; /* %%: the pattern was checked */
        }
    }
}

/* Reads n digits at *p into *v; 0 when they are not there. */
static int digits(const char **p, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') return 0;
        *v = *v * 10 + (c - '0');
    }
    *p += n;
    return 1;
}

static int iso_date(const char *s, int64_t *unix_s)
{
    const char *p = s;
    int year, month, day, hour = 0, minute = 0, second = 0, offset = 0;
    if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &month) || *p++ != '-' || !digits(&p, 2, &day))
        return -1;
    if (month < 1 || month > 12 || day < 1 || day > 31) return -1;
    if (*p == 'T' || *p == ' ') {
        p++;
        if (!digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &minute)) return -1;
        if (*p == ':' && (p++, !digits(&p, 2, &second))) return -1;
        if (*p == '.' || *p == ',') {
            p++;
            if (*p < '0' || *p > '9') return -1;
            while (*p >= '0' && *p <= '9') p++;
        }
        if (hour > 23 || minute > 59 || second > 60) return -1;
        if (*p == 'Z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, oh, om;
            if (!digits(&p, 2, &oh)) return -1;
            if (*p == ':') p++;
            if (!digits(&p, 2, &om) || oh > 23 || om > 59) return -1;
            offset = sign * (oh * 3600 + om * 60);
        }
    }
    if (*p) return -1;
    int64_t days = tz_days_from_civil(year, month, day);
    int64_t year2;
    int month2, day2;
    tz_civil_from_days(days, &year2, &month2, &day2);
    if (month2 != month || day2 != day) return -1; /* 2024-02-30 */
    *unix_s = days * 86400 + hour * 3600 + minute * 60 + second - offset;
    return 0;
}

int es_date_value(lua_State *L, int idx, int millis, int64_t *unix_s, struct rn_err *err)
{
    int t = lua_type(L, idx);
    if (t == LUA_TNIL) return rn_fail(err, "is missing");
    if (t == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx);
        if (!lua_isnumber(L, idx)) {
            if (iso_date(s, unix_s) == 0) return 0;
            return rn_fail(err, "\"%.60s\" is neither a number nor an ISO 8601 date", s);
        }
    } else if (t != LUA_TNUMBER) {
        return rn_fail(err, "is a %s, not a number or a date", lua_typename(L, t));
    }
    double v = lua_tonumber(L, idx);
    if (millis) v /= 1000;
    if (!isfinite(v) || v < -62135596800.0 || v > 253402300799.0) /* years 1..9999 */
        return rn_fail(err, "%.17g is out of range for a date", lua_tonumber(L, idx));
    *unix_s = (int64_t)floor(v);
    return 0;
}

void es_action_line(struct buf *out, const char *action, const char *index, size_t index_len, const char *id,
                    size_t id_len)
{
    buf_printf(out, "{\"%s\":{\"_index\":", action);
    buf_put_json_string(out, index, index_len);
    if (id) {
        buf_puts(out, ",\"_id\":");
        buf_put_json_string(out, id, id_len);
    }
    buf_puts(out, "}}\n");
}

/* "TYPE: REASON (caused by TYPE: REASON)" of an Elasticsearch error object. */
static void describe_error(const json_t *error, struct buf *out)
{
    if (json_is_string(error)) {
        buf_puts(out, json_string_value(error));
        return;
    }
    const char *type = json_string_value(json_object_get(error, "type"));
    const char *reason = json_string_value(json_object_get(error, "reason"));
    buf_printf(out, "%s: %s", type ? type : "error", reason ? reason : "(no reason given)");
    const json_t *cause = json_object_get(error, "caused_by");
    if (json_is_object(cause)) {
        const char *ctype = json_string_value(json_object_get(cause, "type"));
        const char *creason = json_string_value(json_object_get(cause, "reason"));
        buf_printf(out, " (caused by %s: %s)", ctype ? ctype : "error", creason ? creason : "(no reason given)");
    }
}

int es_bulk_answer(const char *body, size_t len, size_t count, struct es_item *items, struct rn_err *err)
{
    for (size_t i = 0; i < count; i++) items[i] = (struct es_item){0, NULL};
    json_error_t jerr;
    json_t *answer = json_loadb(body, len, 0, &jerr);
    if (!answer) return rn_fail(err, "the answer is not JSON (%s at byte %d)", jerr.text, jerr.position);
    const json_t *list = json_object_get(answer, "items");
    int rc = 0;
    if (!json_is_array(list)) {
        rc = rn_fail(err, "the answer has no \"items\" array");
    } else if (json_array_size(list) != count) {
        rc = rn_fail(err, "the answer has %zu items for the %zu sent", json_array_size(list), count);
    }
    for (size_t i = 0; rc == 0 && i < count; i++) {
        const json_t *item = json_array_get(list, i);
        const json_t *result = json_is_object(item) && json_object_size(item) == 1 ? json_object_iter_value(json_object_iter((json_t *)item)) : NULL;
        const json_t *status = json_object_get(result, "status");
        if (!json_is_integer(status)) {
            rc = rn_fail(err, "item %zu of the answer has no status", i + 1);
            break;
        }
        items[i].status = (int)json_integer_value(status);
        const json_t *error = json_object_get(result, "error");
        if (error) {
            struct buf text;
            buf_init(&text);
            describe_error(error, &text);
            items[i].error = rn_strdup(text.data);
            buf_free(&text);
        }
    }
    for (size_t i = 0; rc && i < count; i++) { /* nothing of a partial read is kept */
        free(items[i].error);
        items[i].error = NULL;
    }
    json_decref(answer);
    return rc;
}

void es_request_error(const char *body, size_t len, struct buf *out)
{
    json_t *answer = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    const json_t *error = json_object_get(answer, "error");
    if (error) {
        describe_error(error, out);
    } else if (len) {
        buf_put_visible(out, body, len, 200);
    } else {
        buf_puts(out, "(empty body)");
    }
    json_decref(answer);
}
