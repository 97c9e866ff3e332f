/* Address parser table: valid and invalid forms, IDN, UTF-8 local parts,
 * round trip format(parse(x)). */
#include "mime/mime.h"
#include "t.h"

#include <smtpc/message.h>

typedef struct {
    const char *in;
    const char *envelope;
    const char *display; /* NULL: none */
    const char *format;  /* expected smtpc_address_format(.., 0) */
    int utf8;
} good_case;

static const good_case good[] = {
    {"a@b.example", "a@b.example", NULL, "a@b.example", 0},
    {"  a@b.example  ", "a@b.example", NULL, "a@b.example", 0},
    {"John Doe <john@example.org>", "john@example.org", "John Doe", "John Doe <john@example.org>", 0},
    {"\"Doe, John\" <john@example.org>", "john@example.org", "Doe, John", "\"Doe, John\" <john@example.org>", 0},
    {"John Q. Public <jqp@example.org>", "jqp@example.org", "John Q. Public", "\"John Q. Public\" <jqp@example.org>", 0},
    {"<bare@example.org>", "bare@example.org", NULL, "bare@example.org", 0},
    {"a@b.example (a comment)", "a@b.example", NULL, "a@b.example", 0},
    {"(c1) John (c2) <john (c3) @ (c4) example.org> (c5)", "john@example.org", "John", "John <john@example.org>", 0},
    {"\"john smith\"@example.org", "\"john smith\"@example.org", NULL, "\"john smith\"@example.org", 0},
    {"\"a\\\"b\"@example.org", "\"a\\\"b\"@example.org", NULL, "\"a\\\"b\"@example.org", 0},
    {"\"dotted.ok\"@example.org", "dotted.ok@example.org", NULL, "dotted.ok@example.org", 0},
    {"user+tag@[192.0.2.1]", "user+tag@[192.0.2.1]", NULL, "user+tag@[192.0.2.1]", 0},
    {"x@[IPv6:2001:db8::1]", "x@[IPv6:2001:db8::1]", NULL, "x@[IPv6:2001:db8::1]", 0},
    {"Zoë <zoe@bücher.example>", "zoe@xn--bcher-kva.example", "Zoë", "=?utf-8?Q?Zo=C3=AB?= <zoe@xn--bcher-kva.example>", 0},
    {"=?utf-8?q?Zo=C3=AB?= <zoe@example.org>", "zoe@example.org", "Zoë", "=?utf-8?Q?Zo=C3=AB?= <zoe@example.org>", 0},
    {"=?iso-8859-1?q?Andr=E9?= Pirard <ap@example.org>", "ap@example.org", "André Pirard", NULL, 0},
    {"δοκιμή@παράδειγμα.δοκιμή", "δοκιμή@xn--hxajbheg2az3al.xn--jxalpdlp", NULL, NULL, 1},
    {"用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v", NULL, NULL, 1},
    {"\"=?utf-8?q?not?=\" <x@example.org>", "x@example.org", "=?utf-8?q?not?=", NULL, 0},
    {"a.b.c@d-e.f_g.example", "a.b.c@d-e.f_g.example", NULL, "a.b.c@d-e.f_g.example", 0},
};

typedef struct {
    const char *in;
    const char *why; /* substring of the message */
} bad_case;

static const bad_case bad[] = {
    {"", "empty address"},
    {"   ", "empty address"},
    {"a@b@c", "more than one '@'"},
    {"abc", "missing '@'"},
    {"@example.org", "empty local part"},
    {"a@", "empty domain"},
    {"\"unbalanced@example.org", "unterminated quoted string"},
    {"John <a@example.org", "missing '>'"},
    {"a@example.org\r\nBcc: x@y", "CR/LF/NUL"},
    {"a\n@example.org", "CR/LF/NUL"},
    {".a@example.org", "dots"},
    {"a..b@example.org", "dots"},
    {"a.@example.org", "dots"},
    {"a@-bad.example", "'-'"},
    {"a@b..example", "empty label"},
    {"a@[300.1.1.1]", "IPv4"},
    {"a@[IPv6:zz::1]", "IPv6"},
    {"a@b.example, c@d.example", "several addresses"},
    {"a@(unterminated", "unterminated comment"},
    {"John Smith a@example.org", "display name"},
    {"a@exa mple.org", "unexpected"},
    {"\xff@example.org", "UTF-8"},
    {"a@xn--a.example", "domain"},
};

TEST(address_good)
{
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(good); i++) {
        const good_case *c = &good[i];
        smtpc_address *a = NULL;
        char eb[256] = "";
        int rc = smtpc_address_parse(&a, c->in, eb, sizeof eb);
        if (rc) {
            T_FAILF("parse(%s) failed: %s", c->in, eb);
            continue;
        }
        CHECK_STR(smtpc_address_envelope(a), c->envelope);
        if (c->display)
            CHECK_STR(smtpc_address_display_name(a), c->display);
        else
            CHECK(smtpc_address_display_name(a) == NULL);
        CHECK_INT(smtpc_address_needs_smtputf8(a), c->utf8);
        char *f = smtpc_address_format(a, 0);
        if (c->format) CHECK_STR(f, c->format);
        /* round trip: parse(format(a)) is the same address */
        smtpc_address *b = NULL;
        rc = smtpc_address_parse(&b, f, eb, sizeof eb);
        if (rc) {
            T_FAILF("reparse(%s) failed: %s", f, eb);
        } else {
            CHECK_STR(smtpc_address_envelope(b), smtpc_address_envelope(a));
            if (c->display) CHECK_STR(smtpc_address_display_name(b), c->display);
            char *f2 = smtpc_address_format(b, 0);
            CHECK_STR(f2, f);
            free(f2);
        }
        char *fu = smtpc_address_format(a, SMTPC_FORMAT_UTF8);
        smtpc_address *u = NULL;
        if (smtpc_address_parse(&u, fu, eb, sizeof eb) == 0) {
            CHECK_STR(smtpc_address_envelope(u), c->envelope);
            smtpc_address_free(u);
        } else {
            T_FAILF("utf8 reparse(%s) failed: %s", fu, eb);
        }
        free(fu);
        free(f);
        smtpc_address_free(b);
        smtpc_address_free(a);
    }
}

TEST(address_bad)
{
    for (size_t i = 0; i < SMTPC__ARRAY_LEN(bad); i++) {
        smtpc_address *a = (smtpc_address *)0x1;
        char eb[256] = "";
        int rc = smtpc_address_parse(&a, bad[i].in, eb, sizeof eb);
        if (rc != SMTPC_EINVAL) {
            T_FAILF("parse(%s) = %d, expected SMTPC_EINVAL", bad[i].in, rc);
            if (!rc) smtpc_address_free(a);
            continue;
        }
        CHECK(a == (smtpc_address *)0x1); /* untouched on failure */
        if (!strstr(eb, bad[i].why)) T_FAILF("parse(%s): message \"%s\" lacks \"%s\"", bad[i].in, eb, bad[i].why);
    }
    /* NUL inside: only reachable through the length-taking internal parser */
    smtpc_address_list l = {0};
    char eb[128];
    CHECK_INT(smtpc__address_parse_n("a@b\0.example", 13, false, &l, eb, sizeof eb), SMTPC_EINVAL);
    CHECK(strstr(eb, "CR/LF/NUL") != NULL);
}

TEST(address_list_and_groups)
{
    smtpc_address_list *l = NULL;
    char eb[256] = "";
    int rc = smtpc_address_list_parse(
        &l, "a@example.org, Friends: b@example.org, \"C, c\" <c@example.org>;, Empty:;, d@example.org", eb,
        sizeof eb);
    CHECK_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "%s\n", eb);
        return;
    }
    CHECK_INT(smtpc_address_list_count(l), 4);
    CHECK_STR(smtpc_address_envelope(smtpc_address_list_get(l, 0)), "a@example.org");
    CHECK(smtpc_address_group(smtpc_address_list_get(l, 0)) == NULL);
    CHECK_STR(smtpc_address_group(smtpc_address_list_get(l, 1)), "Friends");
    CHECK_STR(smtpc_address_group(smtpc_address_list_get(l, 2)), "Friends");
    CHECK_STR(smtpc_address_display_name(smtpc_address_list_get(l, 2)), "C, c");
    CHECK_STR(smtpc_address_envelope(smtpc_address_list_get(l, 3)), "d@example.org");
    CHECK(smtpc_address_list_get(l, 4) == NULL);
    smtpc_address_list_free(l);

    l = NULL;
    CHECK_INT(smtpc_address_list_parse(&l, "a@example.org,, b@example.org", eb, sizeof eb), SMTPC_EINVAL);
    CHECK_INT(smtpc_address_list_parse(&l, "a@example.org,", eb, sizeof eb), SMTPC_EINVAL);
    CHECK(strstr(eb, "after ','") != NULL);
    CHECK_INT(smtpc_address_list_parse(&l, "G: a@example.org", eb, sizeof eb), SMTPC_EINVAL);
    CHECK(strstr(eb, "missing ';'") != NULL);
    CHECK_INT(smtpc_address_list_parse(&l, "a@example.org b@example.org", eb, sizeof eb), SMTPC_EINVAL);
    CHECK(l == NULL);

    /* an empty group alone is a valid list with no address */
    CHECK_INT(smtpc_address_list_parse(&l, "undisclosed-recipients:;", eb, sizeof eb), 0);
    CHECK_INT(smtpc_address_list_count(l), 0);
    smtpc_address_list_free(l);
    /* the lenient mode (loaded messages) skips empty elements */
    smtpc_address_list ll = {0};
    CHECK_INT(smtpc__address_parse_n(" , a@example.org, , b@example.org,", 34, 2, &ll, eb, sizeof eb), 0);
    CHECK_INT(ll.n, 2);
    smtpc__alist_clear(&ll);
}

TEST(address_new)
{
    smtpc_address *a = NULL;
    char eb[128];
    CHECK_INT(smtpc_address_new(&a, "Ann \"The\" <Boss>", "ann@example.org", eb, sizeof eb), 0);
    char *f = smtpc_address_format(a, 0);
    CHECK_STR(f, "\"Ann \\\"The\\\" <Boss>\" <ann@example.org>");
    smtpc_address *b = NULL;
    CHECK_INT(smtpc_address_parse(&b, f, eb, sizeof eb), 0);
    if (b) CHECK_STR(smtpc_address_display_name(b), "Ann \"The\" <Boss>");
    free(f);
    smtpc_address_free(a);
    smtpc_address_free(b);
    CHECK_INT(smtpc_address_new(&a, "x\r\nBcc: y", "ann@example.org", eb, sizeof eb), SMTPC_EINVAL);
    CHECK_INT(smtpc_address_new(&a, NULL, "ann@example.org>", eb, sizeof eb), SMTPC_EINVAL);
}

int main(void)
{
    RUN(address_good);
    RUN(address_bad);
    RUN(address_list_and_groups);
    RUN(address_new);
    T_DONE();
}
