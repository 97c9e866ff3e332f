/* Fuzzes the proxy URL parser and the proxy handshakes (SOCKS4/4a/5, HTTP
 * CONNECT) against arbitrary replies delivered in arbitrary pieces.
 * Input: [kind][chunk][reply bytes...]; the same bytes, NUL-terminated, are
 * also parsed as a proxy URL. */
#include "net/proxy.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct mem_t {
    smtpc__transport base;
    const uint8_t *in;
    size_t in_len, in_off, chunk;
} mem_t;

static ssize_t mem_read(smtpc__transport *t, void *buf, size_t len, int *want)
{
    mem_t *m = (mem_t *)t;
    if (m->in_off == m->in_len) return 0;
    size_t n = m->in_len - m->in_off;
    if (n > m->chunk) n = m->chunk;
    if (n > len) n = len;
    memcpy(buf, m->in + m->in_off, n);
    m->in_off += n;
    SMTPC__UNUSED(want);
    return (ssize_t)n;
}

static ssize_t mem_write(smtpc__transport *t, const void *buf, size_t len, int *want)
{
    SMTPC__UNUSED(t);
    SMTPC__UNUSED(buf);
    SMTPC__UNUSED(want);
    return (ssize_t)len;
}

static void mem_destroy(smtpc__transport *t)
{
    SMTPC__UNUSED(t);
}

static const smtpc__transport_ops mem_ops = {
    .name = "mem",
    .read = mem_read,
    .write = mem_write,
    .destroy = mem_destroy,
};

static const char *const urls[] = {
    "socks4://id@127.0.0.1",   "socks4a://127.0.0.1",   "socks5://127.0.0.1",
    "socks5h://u:p@127.0.0.1", "socks5h://127.0.0.1",   "http://127.0.0.1",
    "http://u:p@[::1]:3128",   "https://u:p@127.0.0.1",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    smtpc_proxy *p = NULL;
    char why[128];
    if (smtpc_proxy_parse_url(&p, s, why, sizeof why) == 0) {
        (void)smtpc_proxy_redacted(p);
        smtpc_proxy_free(p);
    }
    free(s);
    if (size < 2) return 0;

    smtpc_proxy *cfg = NULL;
    if (smtpc_proxy_parse_url(&cfg, urls[data[0] % SMTPC__ARRAY_LEN(urls)], NULL, 0)) return 0;
    mem_t m;
    memset(&m, 0, sizeof m);
    m.base.ops = &mem_ops;
    m.base.fd = -1;
    m.in = data + 2;
    m.in_len = size - 2;
    m.chunk = data[1] ? data[1] : 1;
    smtpc__transport *t = NULL;
    smtpc__errmsg err;
    if (smtpc__proxy_layer_new(&t, &m.base, cfg, "192.0.2.1", 25, NULL, &err) == 0) {
        int want = 0, rc;
        while ((rc = t->ops->handshake(t, &want)) == SMTPC_EAGAIN) {
        }
        if (rc == 0) {
            uint8_t buf[64];
            while (t->ops->read(t, buf, sizeof buf, &want) > 0) {
            }
        }
        t->inner = NULL; /* m lives on the stack */
        smtpc__transport_free(t);
    }
    smtpc_proxy_free(cfg);
    return 0;
}
