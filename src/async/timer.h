/* A binary min-heap of timers embedded in their owners (no allocation per
 * timer). The async driver keeps one timer per connection and updates it
 * lazily: a key may be earlier than the owner's real deadline, and the owner
 * re-arms when it pops early, so moving a deadline later costs nothing. */
#ifndef SMTPC_ASYNC_TIMER_H
#define SMTPC_ASYNC_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct smtpc__timer {
    int64_t key;
    size_t idx; /* position in the heap + 1; 0 = not in the heap */
} smtpc__timer;

typedef struct smtpc__theap {
    smtpc__timer **v;
    size_t n, cap;
} smtpc__theap;

void smtpc__theap_init(smtpc__theap *h);
void smtpc__theap_free(smtpc__theap *h);
/* Inserts t with key, or moves it to key if already in. 0 or SMTPC_ENOMEM. */
int smtpc__theap_set(smtpc__theap *h, smtpc__timer *t, int64_t key);
void smtpc__theap_remove(smtpc__theap *h, smtpc__timer *t);
static inline smtpc__timer *smtpc__theap_top(const smtpc__theap *h) { return h->n ? h->v[0] : NULL; }
static inline bool smtpc__timer_active(const smtpc__timer *t) { return t->idx != 0; }

#endif
