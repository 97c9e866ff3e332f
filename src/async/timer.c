#include "async/timer.h"

#include "util/util.h"

#include <stdlib.h>

void smtpc__theap_init(smtpc__theap *h)
{
    h->v = NULL;
    h->n = h->cap = 0;
}

void smtpc__theap_free(smtpc__theap *h)
{
    for (size_t i = 0; i < h->n; i++) h->v[i]->idx = 0;
    free(h->v);
    smtpc__theap_init(h);
}

static void place(smtpc__theap *h, size_t i, smtpc__timer *t)
{
    h->v[i] = t;
    t->idx = i + 1;
}

static void sift_up(smtpc__theap *h, size_t i)
{
    smtpc__timer *t = h->v[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->v[p]->key <= t->key) break;
        place(h, i, h->v[p]);
        i = p;
    }
    place(h, i, t);
}

static void sift_down(smtpc__theap *h, size_t i)
{
    smtpc__timer *t = h->v[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && h->v[c + 1]->key < h->v[c]->key) c++;
        if (t->key <= h->v[c]->key) break;
        place(h, i, h->v[c]);
        i = c;
    }
    place(h, i, t);
}

int smtpc__theap_set(smtpc__theap *h, smtpc__timer *t, int64_t key)
{
    if (t->idx) {
        int64_t old = t->key;
        t->key = key;
        if (key < old)
            sift_up(h, t->idx - 1);
        else if (key > old)
            sift_down(h, t->idx - 1);
        return 0;
    }
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        smtpc__timer **nv = realloc(h->v, nc * sizeof *nv);
        if (!nv) return SMTPC_ENOMEM;
        h->v = nv;
        h->cap = nc;
    }
    t->key = key;
    place(h, h->n++, t);
    sift_up(h, h->n - 1);
    return 0;
}

void smtpc__theap_remove(smtpc__theap *h, smtpc__timer *t)
{
    if (!t->idx) return;
    size_t i = t->idx - 1;
    t->idx = 0;
    h->n--;
    if (i == h->n) return;
    smtpc__timer *last = h->v[h->n];
    place(h, i, last);
    sift_up(h, i);
    sift_down(h, last->idx - 1);
}
