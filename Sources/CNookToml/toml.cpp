// The toml++ side of nook_toml.h: parse, then flatten the tree breadth
// first so that each container's children sit next to each other.
#define TOML_HEADER_ONLY 0
#define TOML_SHARED_LIB 1
#include <toml++/toml.h>

#include "nook_toml.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <new>
#include <sstream>
#include <string>
#include <vector>

struct nook_toml_doc {
    toml::table root;
    std::vector<nook_toml_node> nodes;
    std::deque<std::string> texts; // dates and times as written
};

namespace {

struct pending {
    const toml::node *node;
    int32_t index;
};

void fill_value(nook_toml_doc &doc, nook_toml_node &out, const toml::node &node) {
    out.line = node.source().begin.line;
    out.column = node.source().begin.column;
    switch (node.type()) {
    case toml::node_type::table:
        out.kind = NOOK_TOML_TABLE;
        out.is_inline = node.as_table()->is_inline() ? 1 : 0;
        break;
    case toml::node_type::array: out.kind = NOOK_TOML_ARRAY; break;
    case toml::node_type::string: {
        out.kind = NOOK_TOML_STRING;
        const std::string &s = node.as_string()->get();
        out.text = s.data();
        out.text_length = s.size();
        break;
    }
    case toml::node_type::integer: {
        out.kind = NOOK_TOML_INTEGER;
        out.integer = node.as_integer()->get();
        auto flags = node.as_integer()->flags();
        if ((flags & toml::value_flags::format_as_hexadecimal) == toml::value_flags::format_as_hexadecimal)
            out.format = NOOK_TOML_HEX;
        else if ((flags & toml::value_flags::format_as_octal) == toml::value_flags::format_as_octal)
            out.format = NOOK_TOML_OCTAL;
        else if ((flags & toml::value_flags::format_as_binary) == toml::value_flags::format_as_binary)
            out.format = NOOK_TOML_BINARY;
        break;
    }
    case toml::node_type::floating_point:
        out.kind = NOOK_TOML_FLOAT;
        out.number = node.as_floating_point()->get();
        break;
    case toml::node_type::boolean:
        out.kind = NOOK_TOML_BOOLEAN;
        out.boolean = node.as_boolean()->get() ? 1 : 0;
        break;
    default: {
        std::ostringstream s;
        if (auto d = node.as_date()) { out.kind = NOOK_TOML_DATE; s << d->get(); }
        else if (auto t = node.as_time()) { out.kind = NOOK_TOML_TIME; s << t->get(); }
        else if (auto dt = node.as_date_time()) { out.kind = NOOK_TOML_DATETIME; s << dt->get(); }
        doc.texts.push_back(s.str());
        out.text = doc.texts.back().data();
        out.text_length = doc.texts.back().size();
        break;
    }
    }
}

void flatten(nook_toml_doc &doc) {
    doc.nodes.push_back(nook_toml_node{});
    fill_value(doc, doc.nodes[0], doc.root);
    std::deque<pending> queue{ { &doc.root, 0 } };
    while (!queue.empty()) {
        pending p = queue.front();
        queue.pop_front();
        int32_t first = (int32_t)doc.nodes.size();
        int32_t count = 0;
        if (auto table = p.node->as_table()) {
            // toml++ keeps a table's members sorted by key; Swift gets them
            // in the order they were written.
            std::vector<std::pair<const toml::key *, const toml::node *>> members;
            for (auto &&[key, value] : *table) members.push_back({ &key, &value });
            std::stable_sort(members.begin(), members.end(), [](auto &a, auto &b) {
                auto pa = a.first->source().begin, pb = b.first->source().begin;
                return pa.line != pb.line ? pa.line < pb.line : pa.column < pb.column;
            });
            for (auto &&[keyp, valuep] : members) {
                const toml::key &key = *keyp;
                const toml::node &value = *valuep;
                nook_toml_node n{};
                n.key = key.str().data();
                n.key_length = key.str().size();
                n.key_line = key.source().begin.line;
                n.key_column = key.source().begin.column;
                fill_value(doc, n, value);
                doc.nodes.push_back(n);
                if (value.is_table() || value.is_array()) queue.push_back({ &value, first + count });
                count++;
            }
        } else if (auto array = p.node->as_array()) {
            for (auto &&value : *array) {
                nook_toml_node n{};
                fill_value(doc, n, value);
                doc.nodes.push_back(n);
                if (value.is_table() || value.is_array()) queue.push_back({ &value, first + count });
                count++;
            }
        }
        doc.nodes[p.index].first_child = first;
        doc.nodes[p.index].child_count = count;
    }
}

void set_error(nook_toml_error *error, uint32_t line, uint32_t column, std::string_view message) {
    if (error == nullptr) return;
    error->line = line;
    error->column = column;
    size_t n = message.size() < sizeof error->message - 1 ? message.size() : sizeof error->message - 1;
    std::memcpy(error->message, message.data(), n);
    error->message[n] = 0;
}

/* toml++ 3.3 bounds nested arrays and inline tables (256) but not tables
 * nested through dotted keys: `a.a.a...a = 1` with a few thousand parts
 * overflows its recursion and crashes. This scan finds how deep keys
 * nest (header parts + key parts + enclosing inline tables' keys) without
 * parsing values, and refuses a document deeper than any profile can be,
 * before toml++ sees it. Strings and comments are skipped so that their
 * dots and brackets do not count. */
constexpr int max_key_depth = 128;

bool too_deep(const char *text, size_t length, nook_toml_error *error) {
    uint32_t line = 1, column = 1;
    size_t i = 0;
    bool key_mode = true, line_start = true;
    int header = 0, parts = 1;
    struct frame { char kind; int parts; };
    std::vector<frame> stack;
    int inline_parts = 0;
    auto advance = [&](size_t n) {
        for (size_t k = 0; k < n && i < length; k++, i++) {
            if (text[i] == '\n') { line++; column = 1; } else { column++; }
        }
    };
    auto fail = [&]() {
        set_error(error, line, column, "keys nested more than 128 tables deep");
        return true;
    };
    while (i < length) {
        char c = text[i];
        if (c == '#') {
            while (i < length && text[i] != '\n') advance(1);
            continue;
        }
        if (c == '"' || c == '\'') {
            bool multi = i + 2 < length && text[i + 1] == c && text[i + 2] == c;
            advance(multi ? 3 : 1);
            while (i < length) {
                if (c == '"' && text[i] == '\\') { advance(2); continue; }
                if (!multi && text[i] == '\n') break;
                if (text[i] == c && (!multi || (i + 2 < length && text[i + 1] == c && text[i + 2] == c))) {
                    advance(multi ? 3 : 1);
                    break;
                }
                advance(1);
            }
            line_start = false;
            continue;
        }
        if (c == '\n') {
            if (stack.empty()) { key_mode = true; parts = 1; }
            line_start = true;
            advance(1);
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r') { advance(1); continue; }
        if (line_start && key_mode && stack.empty() && c == '[') {
            // A table header: its parts are the base depth of what follows.
            header = 1;
            advance(1);
            while (i < length && text[i] != '\n' && text[i] != ']') {
                if (text[i] == '"' || text[i] == '\'') break; // quoted parts: the general scan handles the rest
                if (text[i] == '.' && ++header > max_key_depth) return fail();
                advance(1);
            }
            line_start = false;
            continue;
        }
        line_start = false;
        if (key_mode) {
            if (c == '.' && header + inline_parts + ++parts > max_key_depth) return fail();
            if (c == '=') key_mode = false;
            if (c == '}' && !stack.empty() && stack.back().kind == '{') { // empty inline table
                inline_parts -= stack.back().parts;
                stack.pop_back();
                key_mode = false;
            }
        } else if (c == '{') {
            stack.push_back({ '{', parts });
            inline_parts += parts;
            if (header + inline_parts > max_key_depth) return fail();
            key_mode = true;
            parts = 1;
        } else if (c == '[') {
            stack.push_back({ '[', 0 });
        } else if ((c == ']' || c == '}') && !stack.empty()) {
            inline_parts -= stack.back().parts;
            stack.pop_back();
        } else if (c == ',' && !stack.empty() && stack.back().kind == '{') {
            key_mode = true;
            parts = 1;
        }
        advance(1);
    }
    return false;
}

} // namespace

extern "C" int nook_toml_parse(const char *text, size_t length, nook_toml_doc **out, nook_toml_error *error) {
    *out = nullptr;
    if (too_deep(text, length, error)) return -EINVAL;
    nook_toml_doc *doc = new (std::nothrow) nook_toml_doc;
    if (doc == nullptr) return -ENOMEM;
    try {
        doc->root = toml::parse(std::string_view(text, length));
        flatten(*doc);
    } catch (const toml::parse_error &e) {
        set_error(error, e.source().begin.line, e.source().begin.column, e.description());
        delete doc;
        return -EINVAL;
    } catch (const std::bad_alloc &) {
        delete doc;
        return -ENOMEM;
    } catch (const std::exception &e) {
        set_error(error, 0, 0, e.what());
        delete doc;
        return -EINVAL;
    }
    *out = doc;
    return 0;
}

extern "C" const nook_toml_node *nook_toml_nodes(const nook_toml_doc *doc, int32_t *count) {
    *count = (int32_t)doc->nodes.size();
    return doc->nodes.data();
}

extern "C" void nook_toml_free(nook_toml_doc *doc) { delete doc; }
