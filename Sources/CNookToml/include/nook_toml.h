/*
 * toml++ (a C++17 library) behind a plain C surface. Swift cannot call
 * toml++'s templates and exceptions, so the whole document is parsed here
 * and handed back as a flat array of nodes that Swift walks and copies:
 * every key and value with the line and column where it starts, and a
 * parse error with its line and column.
 */
#ifndef NOOK_TOML_H
#define NOOK_TOML_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum nook_toml_kind {
    NOOK_TOML_TABLE = 1,
    NOOK_TOML_ARRAY = 2,
    NOOK_TOML_STRING = 3,
    NOOK_TOML_INTEGER = 4,
    NOOK_TOML_FLOAT = 5,
    NOOK_TOML_BOOLEAN = 6,
    NOOK_TOML_DATE = 7,
    NOOK_TOML_TIME = 8,
    NOOK_TOML_DATETIME = 9,
};

/* How an integer was written; lets a umask be accepted only as 0o022. */
enum nook_toml_format {
    NOOK_TOML_DECIMAL = 0,
    NOOK_TOML_BINARY = 1,
    NOOK_TOML_OCTAL = 2,
    NOOK_TOML_HEX = 3,
};

/* One key/value of the document. Node 0 is the root table. The children
 * of a table or array are the nodes first_child .. first_child+count-1,
 * in document order. Strings point into the document and are not
 * NUL-terminated (a TOML string may contain \u0000). */
struct nook_toml_node {
    int32_t kind;
    int32_t first_child;
    int32_t child_count;
    int32_t format;       /* NOOK_TOML_* format of an integer */
    int32_t is_inline;    /* a table written { ... } */
    const char *key;      /* the member's key in its table; NULL in an array */
    size_t key_length;
    uint32_t key_line, key_column;
    uint32_t line, column; /* where the value begins */
    const char *text;     /* a string, or a date/time as TOML writes it */
    size_t text_length;
    int64_t integer;
    double number;
    int32_t boolean;
};

struct nook_toml_error {
    uint32_t line, column;
    char message[512];
};

struct nook_toml_doc;

/* Parses length bytes of text. 0 with *out set, -EINVAL with *error filled
 * for a document that is not TOML 1.0, -ENOMEM. */
int nook_toml_parse(const char *text, size_t length, struct nook_toml_doc **out, struct nook_toml_error *error);
/* The nodes of a parsed document, valid until nook_toml_free. */
const struct nook_toml_node *nook_toml_nodes(const struct nook_toml_doc *doc, int32_t *count);
void nook_toml_free(struct nook_toml_doc *doc);

#ifdef __cplusplus
}
#endif

#endif
