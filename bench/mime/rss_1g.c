/* Writes a message with a 1 GiB attachment (from a callback, or from the
 * file given as argv[1]) through the writer and prints peak RSS. */
#include <smtpc/message.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct src {
    unsigned long long left;
    unsigned char v;
} src;

static ssize_t gen(void *ud, void *buf, size_t len)
{
    src *s = ud;
    size_t n = len < s->left ? len : (size_t)s->left;
    unsigned char *p = buf;
    for (size_t i = 0; i < n; i++) p[i] = s->v++;
    s->left -= n;
    return (ssize_t)n;
}

int main(int argc, char **argv)
{
    smtpc_message *m;
    smtpc_message_new(&m);
    smtpc_message_set_from(m, "a@example.org");
    smtpc_message_add_to(m, "b@example.org");
    smtpc_message_set_text(m, "1 GiB attached", (size_t)-1);
    src s = {1ull << 30, 0};
    unsigned flags = 0;
    if (argc > 1) {
        if (smtpc_message_add_attachment_file(m, argv[1], NULL)) return 1;
    } else {
        smtpc_message_add_attachment_cb(m, gen, &s, (long long)s.left, NULL);
        flags = getenv("SPOOL") ? 0 : SMTPC_WRITE_NO_SPOOL;
    }
    smtpc_message_writer *w;
    if (smtpc_message_writer_new(&w, m, flags)) return 1;
    static char buf[65536];
    ssize_t k;
    unsigned long long tot = 0;
    while ((k = smtpc_message_writer_read(w, buf, sizeof buf)) > 0) tot += (unsigned long long)k;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("wrote %llu bytes (announced %lld), peak RSS %ld KiB\n", tot,
           (long long)smtpc_message_writer_size(w), ru.ru_maxrss);
    smtpc_message_writer_free(w);
    smtpc_message_free(m);
    return k < 0;
}
