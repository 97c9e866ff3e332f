/* The async driver's timer heap: order, moves in both directions, removal. */
#include "async/timer.h"
#include "t.h"

#include <stdlib.h>

TEST(heap_orders_and_moves)
{
    smtpc__theap h;
    smtpc__theap_init(&h);
    enum { N = 500 };
    static smtpc__timer t[N];
    unsigned seed = 7;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        t[i].idx = 0;
        CHECK(smtpc__theap_set(&h, &t[i], (int64_t)(seed % 10000)) == 0);
    }
    /* move some earlier, some later, remove some */
    for (int i = 0; i < N; i += 3) CHECK(smtpc__theap_set(&h, &t[i], t[i].key + 5000) == 0);
    for (int i = 1; i < N; i += 7) CHECK(smtpc__theap_set(&h, &t[i], t[i].key - 5000) == 0);
    for (int i = 2; i < N; i += 5) smtpc__theap_remove(&h, &t[i]);
    for (int i = 2; i < N; i += 5) CHECK(!smtpc__timer_active(&t[i]));
    int64_t last = INT64_MIN;
    size_t n = 0;
    smtpc__timer *x;
    while ((x = smtpc__theap_top(&h))) {
        CHECK(x->key >= last);
        last = x->key;
        smtpc__theap_remove(&h, x);
        n++;
    }
    CHECK(n == N - (N - 2 + 4) / 5);
    smtpc__theap_free(&h);
}

int main(void)
{
    RUN(heap_orders_and_moves);
    T_DONE();
}
