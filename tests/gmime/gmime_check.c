/* A second, independent MIME parser for the writer's output (GMime 3).
 * Usage: gmime_check MESSAGE OUTDIR
 * Prints "subject\t<decoded subject>" and, for every leaf part in order,
 * "part\t<n>\t<type/subtype>\t<filename or ->\t<content-id or ->" after
 * saving its decoded content to OUTDIR/<n>. Exit 1 when parsing fails.
 * Built by tests/integration/test_mime_parsers.py with pkg-config gmime-3.0. */
#include <fcntl.h>
#include <gmime/gmime.h>
#include <stdio.h>
#include <string.h>

static int counter;
static const char *outdir;

static void save(GMimeObject *parent, GMimeObject *part, gpointer ud)
{
    (void)parent;
    (void)ud;
    if (GMIME_IS_MESSAGE_PART(part)) {
        /* embedded message: save its raw bytes */
        GMimeMessage *msg = g_mime_message_part_get_message(GMIME_MESSAGE_PART(part));
        char path[4096];
        snprintf(path, sizeof path, "%s/%d", outdir, counter);
        FILE *f = fopen(path, "wb");
        GMimeStream *fs = g_mime_stream_file_new(f);
        g_mime_object_write_to_stream(GMIME_OBJECT(msg), NULL, fs);
        g_object_unref(fs);
        printf("part\t%d\tmessage/rfc822\t-\t-\n", counter++);
        return;
    }
    if (!GMIME_IS_PART(part)) return;
    GMimePart *p = GMIME_PART(part);
    GMimeContentType *ct = g_mime_object_get_content_type(part);
    const char *fn = g_mime_part_get_filename(p);
    const char *cid = g_mime_object_get_content_id(part);
    char path[4096];
    snprintf(path, sizeof path, "%s/%d", outdir, counter);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    GMimeStream *fs = g_mime_stream_file_new(f);
    GMimeDataWrapper *dw = g_mime_part_get_content(p);
    if (dw) g_mime_data_wrapper_write_to_stream(dw, fs);
    g_object_unref(fs);
    printf("part\t%d\t%s/%s\t%s\t%s\n", counter++, g_mime_content_type_get_media_type(ct),
           g_mime_content_type_get_media_subtype(ct), fn ? fn : "-", cid ? cid : "-");
}

int main(int argc, char **argv)
{
    if (argc != 3) return 2;
    outdir = argv[2];
    g_mime_init();
    GMimeStream *st = g_mime_stream_fs_open(argv[1], O_RDONLY, 0, NULL);
    if (!st) return 1;
    GMimeParser *ps = g_mime_parser_new_with_stream(st);
    GMimeMessage *m = g_mime_parser_construct_message(ps, NULL);
    if (!m) {
        fprintf(stderr, "GMime could not parse the message\n");
        return 1;
    }
    const char *subj = g_mime_message_get_subject(m);
    printf("subject\t%s\n", subj ? subj : "");
    InternetAddressList *from = g_mime_message_get_from(m);
    char *fs = internet_address_list_to_string(from, NULL, FALSE);
    printf("from\t%s\n", fs ? fs : "");
    g_free(fs);
    g_mime_message_foreach(m, save, NULL);
    g_object_unref(m);
    g_object_unref(ps);
    g_object_unref(st);
    return 0;
}
