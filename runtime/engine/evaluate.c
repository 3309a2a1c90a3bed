/* evaluate.c: accuracy, MAE and confusion matrix of predictions against ground truth. */
#include "engine/evaluate.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 32

struct evaluation {
    char *truth, *predicted;
    char *labels[MAX_LABELS];
    size_t nlabels;
    int numeric;                 /* every label seen so far is a number */
    uint64_t matrix[MAX_LABELS][MAX_LABELS]; /* [truth][predicted] */
    uint64_t compared, correct, skipped, overflow;
    double abs_error_sum;
};

struct evaluation *eval_new(lua_State *L, int tbl, const char *where, struct rn_err *err)
{
    const char *truth = NULL, *predicted = NULL;
    lua_getfield(L, tbl, "truth");
    if (lua_type(L, -1) == LUA_TSTRING) truth = lua_tostring(L, -1);
    lua_getfield(L, tbl, "predicted");
    if (lua_type(L, -1) == LUA_TSTRING) predicted = lua_tostring(L, -1);
    if (!truth || !predicted) {
        lua_pop(L, 2);
        rn_fail(err, "%s: job: evaluate needs { truth = \"field\", predicted = \"field\" }", where);
        return NULL;
    }
    struct evaluation *ev = rn_calloc(1, sizeof *ev);
    ev->truth = rn_strdup(truth);
    ev->predicted = rn_strdup(predicted);
    ev->numeric = 1;
    lua_pop(L, 2);
    return ev;
}

static int label_index(struct evaluation *ev, const char *label)
{
    for (size_t i = 0; i < ev->nlabels; i++)
        if (strcmp(ev->labels[i], label) == 0) return (int)i;
    if (ev->nlabels == MAX_LABELS) return -1;
    /* keep labels sorted (numerically when they are numbers) so the matrix reads naturally */
    char *end;
    double v = strtod(label, &end);
    int is_num = *label && *end == '\0';
    if (!is_num) ev->numeric = 0;
    size_t at = ev->nlabels;
    while (at > 0) {
        const char *prev = ev->labels[at - 1];
        int before;
        if (is_num && ev->numeric) before = strtod(prev, NULL) > v;
        else before = strcmp(prev, label) > 0;
        if (!before) break;
        at--;
    }
    /* shift rows and columns of the matrix to make room at `at` */
    for (size_t i = ev->nlabels; i > at; i--) ev->labels[i] = ev->labels[i - 1];
    ev->labels[at] = rn_strdup(label);
    for (size_t r = ev->nlabels + 1; r-- > 0;)
        for (size_t c = ev->nlabels + 1; c-- > 0;) {
            size_t sr = r > at ? r - 1 : r, sc = c > at ? c - 1 : c;
            ev->matrix[r][c] = (r == at || c == at) ? 0 : ev->matrix[sr][sc];
        }
    ev->nlabels++;
    return (int)at;
}

static int field_label(lua_State *L, int rec, const char *name, char *out, size_t n, double *num, int *is_num)
{
    lua_getfield(L, rec, name);
    int t = lua_type(L, -1);
    *is_num = t == LUA_TNUMBER;
    if (t == LUA_TNUMBER) {
        *num = lua_tonumber(L, -1);
        if (lua_isinteger(L, -1)) snprintf(out, n, "%lld", (long long)lua_tointeger(L, -1));
        else snprintf(out, n, "%g", *num);
    } else if (t == LUA_TSTRING) {
        snprintf(out, n, "%s", lua_tostring(L, -1));
    } else if (t == LUA_TBOOLEAN) {
        snprintf(out, n, "%s", lua_toboolean(L, -1) ? "true" : "false");
    } else {
        lua_pop(L, 1);
        return -1;
    }
    lua_pop(L, 1);
    return 0;
}

void eval_observe(struct evaluation *ev, lua_State *L, int rec)
{
    char truth[128], predicted[128];
    double tn = 0, pn = 0;
    int t_num, p_num;
    rec = lua_absindex(L, rec);
    if (field_label(L, rec, ev->truth, truth, sizeof truth, &tn, &t_num) ||
        field_label(L, rec, ev->predicted, predicted, sizeof predicted, &pn, &p_num)) {
        ev->skipped++;
        return;
    }
    ev->compared++;
    if (strcmp(truth, predicted) == 0) ev->correct++;
    if (t_num && p_num) ev->abs_error_sum += fabs(tn - pn);
    else ev->numeric = 0;
    int ti = label_index(ev, truth);
    int pi = ti >= 0 ? label_index(ev, predicted) : -1;
    if (ti >= 0 && pi >= 0) {
        ti = label_index(ev, truth); /* the second insert may have shifted it */
        ev->matrix[ti][pi]++;
    } else {
        ev->overflow++;
    }
}

void eval_print(struct evaluation *ev, FILE *out)
{
    fprintf(out, "evaluation: %s vs %s, %llu compared", ev->predicted, ev->truth, (unsigned long long)ev->compared);
    if (ev->skipped) fprintf(out, ", %llu skipped (field missing)", (unsigned long long)ev->skipped);
    fprintf(out, "\n");
    if (!ev->compared) return;
    fprintf(out, "  accuracy  %.4f\n", (double)ev->correct / (double)ev->compared);
    if (ev->numeric) fprintf(out, "  MAE       %.4f\n", ev->abs_error_sum / (double)ev->compared);
    fprintf(out, "  confusion matrix (rows: %s, columns: %s)\n  %10s", ev->truth, ev->predicted, "");
    for (size_t c = 0; c < ev->nlabels; c++) fprintf(out, " %8.8s", ev->labels[c]);
    fprintf(out, "\n");
    for (size_t r = 0; r < ev->nlabels; r++) {
        fprintf(out, "  %10.10s", ev->labels[r]);
        for (size_t c = 0; c < ev->nlabels; c++) fprintf(out, " %8llu", (unsigned long long)ev->matrix[r][c]);
        fprintf(out, "\n");
    }
    if (ev->overflow) fprintf(out, "  (%llu records had labels beyond the first %d and are not in the matrix)\n",
                              (unsigned long long)ev->overflow, MAX_LABELS);
}

void eval_json(struct evaluation *ev, json_t *summary)
{
    json_t *o = json_object();
    json_object_set_new(o, "truth", json_string(ev->truth));
    json_object_set_new(o, "predicted", json_string(ev->predicted));
    json_object_set_new(o, "compared", json_integer((json_int_t)ev->compared));
    json_object_set_new(o, "skipped", json_integer((json_int_t)ev->skipped));
    if (ev->compared) {
        json_object_set_new(o, "accuracy", json_real((double)ev->correct / (double)ev->compared));
        if (ev->numeric) json_object_set_new(o, "mae", json_real(ev->abs_error_sum / (double)ev->compared));
    }
    json_t *labels = json_array(), *matrix = json_array();
    for (size_t r = 0; r < ev->nlabels; r++) {
        json_array_append_new(labels, json_string(ev->labels[r]));
        json_t *row = json_array();
        for (size_t c = 0; c < ev->nlabels; c++) json_array_append_new(row, json_integer((json_int_t)ev->matrix[r][c]));
        json_array_append_new(matrix, row);
    }
    json_object_set_new(o, "labels", labels);
    json_object_set_new(o, "confusion", matrix);
    json_object_set_new(summary, "evaluation", o);
}

void eval_free(struct evaluation *ev)
{
    if (!ev) return;
    for (size_t i = 0; i < ev->nlabels; i++) free(ev->labels[i]);
    free(ev->truth);
    free(ev->predicted);
    free(ev);
}
