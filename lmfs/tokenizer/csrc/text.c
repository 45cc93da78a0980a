/* lmfs.tokenizer._ctext: GPT-2 pre-tokenization, pre-token counting and BPE encoding over UTF-8 bytes.
 *
 * The pure-Python code in lmfs/tokenizer/ (pretokenize.py, counting.py, tokenizer.py) is the reference; this
 * module gives identical results, faster:
 *
 *   set_classes(table)             install the per-code-point class table (0 other, 1 letter, 2 number,
 *                                  3 whitespace; 0x110000 bytes, built by lmfs.tokenizer.native from `regex`)
 *   pretokenize(data)              GPT-2 pre-tokens of UTF-8 bytes, as a list of bytes (no specials)
 *   split_specials(data, specials) [(piece, is_special)], leftmost match first, longest among those
 *   Counter(specials)              pre-token -> count table: feed(data), merge(other), dumps(), loads(blob),
 *                                  to_dict(target, str_keys)
 *   Encoder(merges, byte_ids, specials, cache_limit)
 *                                  encode(data) / encode_array(data, itemsize) / encode_pieces(list)
 *
 * Scanner: `'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, leftmost alternative
 * first, greedy. Bytes that are not valid UTF-8 count as one-byte characters of class "other".
 * BPE: merge the adjacent pair of lowest rank, leftmost on ties; short pieces use arrays, long pieces a
 * doubly linked list with a lazily invalidated heap (O(n log n)).
 * Everything runs with the GIL held (the encoder's cache is not locked).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NCP 0x110000u
enum { C_OTHER = 0, C_LETTER = 1, C_NUMBER = 2, C_SPACE = 3 };

static uint8_t *g_class = NULL; /* NCP entries once set_classes ran */
static uint8_t g_ascii[128];

/* ------------------------------------------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 character at s (1..4) with its code point, or 0 when the bytes are not one. */
static inline size_t utf8_char(const uint8_t *s, size_t avail, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        if (avail < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (avail < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && s[1] > 0x9F) return 0; /* surrogate */
        *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (avail < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;
        if (c == 0xF4 && s[1] > 0x8F) return 0;
        *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
              (s[3] & 0x3F);
        return 4;
    }
    return 0;
}

/* Class of the character at s[i] and its byte length. */
static inline int class_at(const uint8_t *s, size_t n, size_t i, size_t *len) {
    uint8_t c = s[i];
    if (c < 0x80) {
        *len = 1;
        return g_ascii[c];
    }
    uint32_t cp;
    size_t l = utf8_char(s + i, n - i, &cp);
    if (!l) {
        *len = 1;
        return C_OTHER;
    }
    *len = l;
    return g_class[cp];
}

/* End of the run of characters of class k starting at j. */
static inline size_t run_end(const uint8_t *s, size_t n, size_t j, int k) {
    for (;;) {
        while (j < n && s[j] < 0x80 && g_ascii[s[j]] == k) j++;
        if (j >= n || s[j] < 0x80) return j;
        size_t l;
        if (class_at(s, n, j, &l) != k) return j;
        j += l;
    }
}

/* End of the GPT-2 pre-token starting at i (< n). */
static inline size_t scan_token(const uint8_t *s, size_t n, size_t i) {
    uint8_t c = s[i];
    if (c == '\'' && i + 1 < n) {
        uint8_t d = s[i + 1];
        if (d == 's' || d == 'd' || d == 'm' || d == 't') return i + 2;
        if (i + 2 < n) {
            uint8_t e = s[i + 2];
            if ((d == 'l' && e == 'l') || (d == 'v' && e == 'e') || (d == 'r' && e == 'e')) return i + 3;
        }
    }
    size_t len;
    int k = class_at(s, n, i, &len);
    if (k != C_SPACE) return run_end(s, n, i + len, k);
    if (c == ' ' && i + 1 < n) { /* " ?X+" where X is the class of the next character */
        size_t l2;
        int k2 = class_at(s, n, i + 1, &l2);
        if (k2 != C_SPACE) return run_end(s, n, i + 1 + l2, k2);
    }
    /* a whitespace run: whole at the end of the text; before a non-space, all but its last character
       (`\s+(?!\S)`) unless that leaves nothing (`\s+`) */
    size_t last = i, j = i + len;
    while (j < n) {
        size_t l;
        if (class_at(s, n, j, &l) != C_SPACE) break;
        last = j;
        j += l;
    }
    if (j == n) return n;
    return last > i ? last : j;
}

/* ------------------------------------------------------------------------------------------------ specials */

typedef struct {
    Py_ssize_t n;
    uint8_t **data; /* sorted longest first, then bytewise */
    size_t *len;
    uint32_t *id;
    uint8_t first[256];
    int single_first; /* -1, or the one first byte all specials share */
} Specials;

static void specials_free(Specials *sp) {
    for (Py_ssize_t k = 0; k < sp->n; k++) PyMem_Free(sp->data[k]);
    PyMem_Free(sp->data);
    PyMem_Free(sp->len);
    PyMem_Free(sp->id);
    memset(sp, 0, sizeof(*sp));
    sp->single_first = -1;
}

static int specials_cmp(const Specials *sp, Py_ssize_t a, Py_ssize_t b) {
    if (sp->len[a] != sp->len[b]) return sp->len[a] > sp->len[b] ? -1 : 1;
    return memcmp(sp->data[a], sp->data[b], sp->len[a]);
}

/* From a sequence of bytes (with_ids = 0) or of (bytes, id) pairs (with_ids = 1). Duplicates are dropped. */
static int specials_init(Specials *sp, PyObject *seq, int with_ids) {
    memset(sp, 0, sizeof(*sp));
    sp->single_first = -1;
    PyObject *fast = PySequence_Fast(seq, "specials must be a sequence");
    if (!fast) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    sp->data = PyMem_Calloc(n ? n : 1, sizeof(uint8_t *));
    sp->len = PyMem_Calloc(n ? n : 1, sizeof(size_t));
    sp->id = PyMem_Calloc(n ? n : 1, sizeof(uint32_t));
    if (!sp->data || !sp->len || !sp->id) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, k), *b = item;
        unsigned long id = 0;
        if (with_ids) {
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
                PyErr_SetString(PyExc_TypeError, "specials must be (bytes, id) pairs");
                goto fail;
            }
            b = PyTuple_GET_ITEM(item, 0);
            id = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(item, 1));
            if (id == (unsigned long)-1 && PyErr_Occurred()) goto fail;
            if (id > UINT32_MAX) {
                PyErr_SetString(PyExc_ValueError, "special token id too large");
                goto fail;
            }
        }
        if (!PyBytes_Check(b)) {
            PyErr_SetString(PyExc_TypeError, "special tokens must be bytes");
            goto fail;
        }
        Py_ssize_t L = PyBytes_GET_SIZE(b);
        if (L == 0) {
            PyErr_SetString(PyExc_ValueError, "special tokens must be non-empty");
            goto fail;
        }
        Py_ssize_t m = sp->n;
        sp->data[m] = PyMem_Malloc(L);
        if (!sp->data[m]) {
            PyErr_NoMemory();
            goto fail;
        }
        memcpy(sp->data[m], PyBytes_AS_STRING(b), L);
        sp->len[m] = (size_t)L;
        sp->id[m] = (uint32_t)id;
        sp->n++;
        /* insertion sort; drop a duplicate */
        Py_ssize_t j = m;
        while (j > 0 && specials_cmp(sp, j - 1, j) > 0) {
            uint8_t *td = sp->data[j]; size_t tl = sp->len[j]; uint32_t ti = sp->id[j];
            sp->data[j] = sp->data[j - 1]; sp->len[j] = sp->len[j - 1]; sp->id[j] = sp->id[j - 1];
            sp->data[j - 1] = td; sp->len[j - 1] = tl; sp->id[j - 1] = ti;
            j--;
        }
        if (j > 0 && specials_cmp(sp, j - 1, j) == 0) { /* a duplicate: the first occurrence (at j - 1) stays */
            PyMem_Free(sp->data[j]);
            memmove(sp->data + j, sp->data + j + 1, (sp->n - j - 1) * sizeof(uint8_t *));
            memmove(sp->len + j, sp->len + j + 1, (sp->n - j - 1) * sizeof(size_t));
            memmove(sp->id + j, sp->id + j + 1, (sp->n - j - 1) * sizeof(uint32_t));
            sp->n--;
        }
    }
    Py_DECREF(fast);
    int firsts = 0;
    for (Py_ssize_t k = 0; k < sp->n; k++) {
        if (!sp->first[sp->data[k][0]]) firsts++;
        sp->first[sp->data[k][0]] = 1;
    }
    if (firsts == 1) sp->single_first = sp->data[0][0];
    return 0;
fail:
    Py_DECREF(fast);
    specials_free(sp);
    return -1;
}

/* Position of the next special at or after pos (n when none); *which is its index. */
static size_t specials_next(const Specials *sp, const uint8_t *s, size_t n, size_t pos, Py_ssize_t *which) {
    if (sp->n == 0) return n;
    size_t i = pos;
    while (i < n) {
        if (sp->single_first >= 0) {
            const uint8_t *q = memchr(s + i, sp->single_first, n - i);
            if (!q) return n;
            i = (size_t)(q - s);
        } else if (!sp->first[s[i]]) {
            i++;
            continue;
        }
        for (Py_ssize_t k = 0; k < sp->n; k++) {
            if (sp->len[k] <= n - i && memcmp(s + i, sp->data[k], sp->len[k]) == 0) {
                *which = k;
                return i;
            }
        }
        i++;
    }
    return n;
}

/* ------------------------------------------------------------------------------------------------ hashing */

static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x243F6A8885A308D3ull ^ ((uint64_t)n * 0x9E3779B97F4A7C15ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * 0x94D049BB133111EBull;
    }
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return h;
}

/* A table keyed by byte strings: dense entries plus an open-addressing index whose slots hold
   (high 32 bits of the hash << 32) | (entry index + 1); 0 is empty. */
typedef struct {
    uint64_t koff;
    uint32_t klen;
    uint32_t vlen; /* encoder cache: number of ids */
    uint64_t val;  /* counter: count; encoder cache: offset of the ids */
} Entry;

typedef struct {
    uint64_t *slots;
    size_t mask;
    Entry *ents;
    size_t n, ecap;
    uint8_t *keys;
    size_t kused, kcap;
} Table;

static int table_init(Table *t, size_t slots) {
    memset(t, 0, sizeof(*t));
    size_t cap = 64;
    while (cap < slots) cap <<= 1;
    t->slots = calloc(cap, sizeof(uint64_t));
    t->ents = malloc((cap / 2) * sizeof(Entry));
    t->keys = malloc(4096);
    if (!t->slots || !t->ents || !t->keys) {
        free(t->slots); free(t->ents); free(t->keys);
        memset(t, 0, sizeof(*t));
        return -1;
    }
    t->mask = cap - 1;
    t->ecap = cap / 2;
    t->kcap = 4096;
    return 0;
}

static void table_free(Table *t) {
    free(t->slots);
    free(t->ents);
    free(t->keys);
    memset(t, 0, sizeof(*t));
}

static void table_clear(Table *t) {
    memset(t->slots, 0, (t->mask + 1) * sizeof(uint64_t));
    t->n = 0;
    t->kused = 0;
}

static int table_grow(Table *t) {
    size_t cap = (t->mask + 1) * 2;
    uint64_t *slots = calloc(cap, sizeof(uint64_t));
    Entry *ents = realloc(t->ents, (cap / 2) * sizeof(Entry));
    if (!slots || !ents) {
        free(slots);
        if (ents) t->ents = ents;
        return -1;
    }
    t->ents = ents;
    t->ecap = cap / 2;
    size_t mask = cap - 1;
    for (size_t i = 0; i < t->n; i++) {
        const Entry *e = &ents[i];
        uint64_t h = hash_bytes(t->keys + e->koff, e->klen);
        size_t at = (size_t)h & mask;
        while (slots[at]) at = (at + 1) & mask;
        slots[at] = (h & 0xFFFFFFFF00000000ull) | (uint64_t)(i + 1);
    }
    free(t->slots);
    t->slots = slots;
    t->mask = mask;
    return 0;
}

/* The entry for key (NULL when absent and insert == 0; NULL with *oom set on allocation failure). A new
   entry has val = 0, vlen = 0 and *created = 1. */
static inline Entry *table_get(Table *t, const uint8_t *key, size_t len, int insert, int *created, int *oom) {
    uint64_t h = hash_bytes(key, len);
    uint64_t tag = h & 0xFFFFFFFF00000000ull;
    size_t at = (size_t)h & t->mask;
    for (;;) {
        uint64_t s = t->slots[at];
        if (!s) break;
        if ((s & 0xFFFFFFFF00000000ull) == tag) {
            Entry *e = &t->ents[(s & 0xFFFFFFFFull) - 1];
            if (e->klen == len && memcmp(t->keys + e->koff, key, len) == 0) return e;
        }
        at = (at + 1) & t->mask;
    }
    if (!insert) return NULL;
    if (len > UINT32_MAX || t->n >= 0xFFFFFFFEull) {
        *oom = 1;
        return NULL;
    }
    if (t->kused + len > t->kcap) {
        size_t kcap = t->kcap * 2;
        while (kcap < t->kused + len) kcap *= 2;
        uint8_t *keys = realloc(t->keys, kcap);
        if (!keys) {
            *oom = 1;
            return NULL;
        }
        t->keys = keys;
        t->kcap = kcap;
    }
    if ((t->n + 1) * 2 > t->mask + 1) {
        if (table_grow(t) < 0) {
            *oom = 1;
            return NULL;
        }
        at = (size_t)h & t->mask;
        while (t->slots[at]) at = (at + 1) & t->mask;
    }
    Entry *e = &t->ents[t->n];
    e->koff = t->kused;
    e->klen = (uint32_t)len;
    e->vlen = 0;
    e->val = 0;
    memcpy(t->keys + t->kused, key, len);
    t->kused += len;
    t->n++;
    t->slots[at] = tag | (uint64_t)t->n;
    *created = 1;
    return e;
}

/* ------------------------------------------------------------------------------------------------ growable ids */

typedef struct {
    uint32_t *v;
    size_t n, cap;
} U32Vec;

static int vec_reserve(U32Vec *a, size_t extra) {
    if (a->n + extra <= a->cap) return 0;
    size_t cap = a->cap ? a->cap : 1024;
    while (cap < a->n + extra) cap *= 2;
    uint32_t *v = realloc(a->v, cap * sizeof(uint32_t));
    if (!v) return -1;
    a->v = v;
    a->cap = cap;
    return 0;
}

/* ------------------------------------------------------------------------------------------------ module funcs */

static int need_classes(void) {
    if (!g_class) {
        PyErr_SetString(PyExc_RuntimeError,
                        "lmfs.tokenizer._ctext: character classes not set (use lmfs.tokenizer.native.load_ctext())");
        return -1;
    }
    return 0;
}

static PyObject *py_set_classes(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*:set_classes", &buf)) return NULL;
    if ((size_t)buf.len != NCP) {
        PyBuffer_Release(&buf);
        return PyErr_Format(PyExc_ValueError, "class table must have %u entries", NCP);
    }
    const uint8_t *src = buf.buf;
    for (size_t i = 0; i < NCP; i++) {
        if (src[i] > C_SPACE) {
            PyBuffer_Release(&buf);
            return PyErr_Format(PyExc_ValueError, "class table entry %zu is %d (expected 0-3)", i, (int)src[i]);
        }
    }
    uint8_t *table = g_class ? g_class : PyMem_RawMalloc(NCP);
    if (!table) {
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    memcpy(table, src, NCP);
    memcpy(g_ascii, src, 128);
    g_class = table;
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
}

static PyObject *py_classes_ready(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyBool_FromLong(g_class != NULL);
}

static PyObject *py_pretokenize(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*:pretokenize", &buf)) return NULL;
    if (need_classes() < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    PyObject *out = PyList_New(0);
    const uint8_t *s = buf.buf;
    size_t n = (size_t)buf.len, i = 0;
    while (out && i < n) {
        size_t j = scan_token(s, n, i);
        PyObject *b = PyBytes_FromStringAndSize((const char *)s + i, (Py_ssize_t)(j - i));
        if (!b || PyList_Append(out, b) < 0) {
            Py_XDECREF(b);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(b);
        i = j;
    }
    PyBuffer_Release(&buf);
    return out;
}

static PyObject *py_split_specials(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer buf;
    PyObject *seq;
    if (!PyArg_ParseTuple(args, "y*O:split_specials", &buf, &seq)) return NULL;
    Specials sp;
    if (specials_init(&sp, seq, 0) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    PyObject *out = PyList_New(0);
    const uint8_t *s = buf.buf;
    size_t n = (size_t)buf.len, pos = 0;
    while (out && pos < n) {
        Py_ssize_t k = -1;
        size_t at = specials_next(&sp, s, n, pos, &k);
        PyObject *item = NULL;
        if (at > pos) {
            item = Py_BuildValue("(y#O)", s + pos, (Py_ssize_t)(at - pos), Py_False);
            if (!item || PyList_Append(out, item) < 0) Py_CLEAR(out);
            Py_XDECREF(item);
        }
        if (out && at < n) {
            item = Py_BuildValue("(y#O)", sp.data[k], (Py_ssize_t)sp.len[k], Py_True);
            if (!item || PyList_Append(out, item) < 0) Py_CLEAR(out);
            Py_XDECREF(item);
            at += sp.len[k];
        }
        pos = at;
    }
    specials_free(&sp);
    PyBuffer_Release(&buf);
    return out;
}

/* ------------------------------------------------------------------------------------------------ Counter */

typedef struct {
    PyObject_HEAD
    Table t;
    Specials sp;
    uint64_t total;
} CounterObject;

static void Counter_dealloc(CounterObject *self) {
    table_free(&self->t);
    specials_free(&self->sp);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Counter_init(CounterObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"specials", NULL};
    PyObject *seq = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:Counter", kw, &seq)) return -1;
    table_free(&self->t);
    specials_free(&self->sp);
    self->total = 0;
    if (seq) {
        if (specials_init(&self->sp, seq, 0) < 0) return -1;
    } else {
        memset(&self->sp, 0, sizeof(self->sp));
        self->sp.single_first = -1;
    }
    if (table_init(&self->t, 1 << 16) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int counter_ready(CounterObject *self) {
    if (!self->t.slots) {
        PyErr_SetString(PyExc_RuntimeError, "Counter not initialized");
        return -1;
    }
    return 0;
}

static int counter_add(CounterObject *self, const uint8_t *key, size_t len, uint64_t count) {
    int created = 0, oom = 0;
    Entry *e = table_get(&self->t, key, len, 1, &created, &oom);
    if (!e) {
        PyErr_NoMemory();
        return -1;
    }
    e->val += count;
    self->total += count;
    return 0;
}

static PyObject *Counter_feed(CounterObject *self, PyObject *args) {
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*:feed", &buf)) return NULL;
    if (counter_ready(self) < 0 || need_classes() < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    const uint8_t *s = buf.buf;
    size_t n = (size_t)buf.len, pos = 0;
    int err = 0;
    while (pos < n && !err) {
        Py_ssize_t k = -1;
        size_t end = specials_next(&self->sp, s, n, pos, &k);
        size_t i = pos;
        while (i < end) {
            size_t j = scan_token(s, end, i);
            if (counter_add(self, s + i, j - i, 1) < 0) {
                err = 1;
                break;
            }
            i = j;
        }
        pos = end < n ? end + self->sp.len[k] : n;
    }
    PyBuffer_Release(&buf);
    if (err) return NULL;
    Py_RETURN_NONE;
}

static PyTypeObject CounterType;

static PyObject *Counter_merge(CounterObject *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &CounterType)) {
        PyErr_SetString(PyExc_TypeError, "merge() expects a Counter");
        return NULL;
    }
    CounterObject *o = (CounterObject *)arg;
    if (counter_ready(self) < 0 || counter_ready(o) < 0) return NULL;
    if (o == self) { /* doubling */
        for (size_t i = 0; i < self->t.n; i++) self->t.ents[i].val *= 2;
        self->total *= 2;
        Py_RETURN_NONE;
    }
    for (size_t i = 0; i < o->t.n; i++) {
        const Entry *e = &o->t.ents[i];
        if (counter_add(self, o->t.keys + e->koff, e->klen, e->val) < 0) return NULL;
    }
    Py_RETURN_NONE;
}

/* blob: repeated [u32 key length][u64 count][key bytes], little-endian host order */
static PyObject *Counter_dumps(CounterObject *self, PyObject *Py_UNUSED(ignored)) {
    if (counter_ready(self) < 0) return NULL;
    size_t size = self->t.kused + self->t.n * 12;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (!out) return NULL;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(out);
    for (size_t i = 0; i < self->t.n; i++) {
        const Entry *e = &self->t.ents[i];
        uint32_t l = e->klen;
        uint64_t c = e->val;
        memcpy(p, &l, 4);
        memcpy(p + 4, &c, 8);
        memcpy(p + 12, self->t.keys + e->koff, l);
        p += 12 + l;
    }
    return out;
}

static PyObject *Counter_loads(CounterObject *self, PyObject *args) {
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*:loads", &buf)) return NULL;
    if (counter_ready(self) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    const uint8_t *p = buf.buf;
    size_t n = (size_t)buf.len, i = 0;
    while (i < n) {
        uint32_t l;
        uint64_t c;
        if (n - i < 12) goto bad;
        memcpy(&l, p + i, 4);
        memcpy(&c, p + i + 4, 8);
        if (n - i - 12 < l) goto bad;
        if (counter_add(self, p + i + 12, l, c) < 0) {
            PyBuffer_Release(&buf);
            return NULL;
        }
        i += 12 + (size_t)l;
    }
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
bad:
    PyBuffer_Release(&buf);
    PyErr_SetString(PyExc_ValueError, "Counter.loads: truncated or malformed blob");
    return NULL;
}

static PyObject *Counter_to_dict(CounterObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"target", "str_keys", NULL};
    PyObject *target = NULL;
    int str_keys = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Op:to_dict", kw, &target, &str_keys)) return NULL;
    if (counter_ready(self) < 0) return NULL;
    if (target == NULL || target == Py_None) {
        target = PyDict_New();
        if (!target) return NULL;
    } else if (!PyDict_Check(target)) {
        PyErr_SetString(PyExc_TypeError, "to_dict: target must be a dict (or a dict subclass)");
        return NULL;
    } else {
        Py_INCREF(target);
    }
    int empty = PyDict_GET_SIZE(target) == 0;
    for (size_t i = 0; i < self->t.n; i++) {
        const Entry *e = &self->t.ents[i];
        const char *k = (const char *)self->t.keys + e->koff;
        PyObject *key = str_keys ? PyUnicode_DecodeUTF8(k, e->klen, "strict")
                                 : PyBytes_FromStringAndSize(k, e->klen);
        if (!key) goto fail;
        /* the lookup may run Python code (__eq__ of a key in target) that changes this Counter: read the count
           first and touch no entry afterwards */
        const uint64_t count = e->val;
        PyObject *val;
        PyObject *old = empty ? NULL : PyDict_GetItemWithError(target, key);
        if (old) {
            Py_INCREF(old);
            PyObject *add = PyLong_FromUnsignedLongLong(count);
            val = add ? PyNumber_Add(old, add) : NULL;
            Py_XDECREF(add);
            Py_DECREF(old);
        } else if (PyErr_Occurred()) {
            val = NULL;
        } else {
            val = PyLong_FromUnsignedLongLong(count);
        }
        if (!val || PyDict_SetItem(target, key, val) < 0) {
            Py_DECREF(key);
            Py_XDECREF(val);
            goto fail;
        }
        Py_DECREF(key);
        Py_DECREF(val);
    }
    return target;
fail:
    Py_DECREF(target);
    return NULL;
}

static Py_ssize_t Counter_len(CounterObject *self) { return self->t.slots ? (Py_ssize_t)self->t.n : 0; }

static PyObject *Counter_get_total(CounterObject *self, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(self->total);
}

static PyObject *Counter_reduce(CounterObject *self, PyObject *Py_UNUSED(ignored)) {
    (void)self;
    PyErr_SetString(PyExc_TypeError, "cannot pickle a _ctext.Counter: send Counter.dumps() and use loads()");
    return NULL;
}

static PyMethodDef Counter_methods[] = {
    {"feed", (PyCFunction)Counter_feed, METH_VARARGS,
     "feed(data): count the GPT-2 pre-tokens of UTF-8 bytes; special tokens split the text, are not counted"},
    {"merge", (PyCFunction)Counter_merge, METH_O, "merge(other): add another Counter's counts"},
    {"dumps", (PyCFunction)Counter_dumps, METH_NOARGS, "dumps() -> bytes: the table, for loads()"},
    {"loads", (PyCFunction)Counter_loads, METH_VARARGS, "loads(blob): add the counts of a dumps() blob"},
    {"to_dict", (PyCFunction)(void (*)(void))Counter_to_dict, METH_VARARGS | METH_KEYWORDS,
     "to_dict(target=None, str_keys=False) -> dict: pre-token -> count added into target (a new dict when None)"},
    {"__reduce__", (PyCFunction)Counter_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Counter_getset[] = {
    {"total", (getter)Counter_get_total, NULL, "number of pre-tokens counted", NULL}, {NULL, NULL, NULL, NULL, NULL}};

static PySequenceMethods Counter_as_sequence = {.sq_length = (lenfunc)Counter_len};

static PyTypeObject CounterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lmfs.tokenizer._ctext.Counter",
    .tp_basicsize = sizeof(CounterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Counter(specials=()): GPT-2 pre-token counts of fed UTF-8 text",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Counter_init,
    .tp_dealloc = (destructor)Counter_dealloc,
    .tp_methods = Counter_methods,
    .tp_getset = Counter_getset,
    .tp_as_sequence = &Counter_as_sequence,
};

/* ------------------------------------------------------------------------------------------------ Encoder */

#define NO_RANK UINT32_MAX
#define SHORT_PIECE 96

typedef struct {
    uint64_t key; /* (left << 32) | right; UINT64_MAX = empty */
    uint32_t rank, merged;
} MergeSlot;

typedef struct {
    PyObject_HEAD
    MergeSlot *merges;
    size_t mmask;
    uint32_t byte_ids[256];
    Specials sp;
    Table cache;
    U32Vec cache_ids; /* the cached pieces' ids */
    size_t cache_limit;
    uint32_t max_id;
    PyObject **idobj; /* max_id + 1 cached ints */
    U32Vec out;       /* scratch output */
    uint32_t *scratch; /* long-piece BPE arrays */
    size_t scratch_n;
} EncoderObject;

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    return x;
}

static inline const MergeSlot *merge_find(const EncoderObject *e, uint32_t a, uint32_t b) {
    uint64_t key = ((uint64_t)a << 32) | b;
    size_t at = (size_t)mix64(key) & e->mmask;
    for (;;) {
        const MergeSlot *m = &e->merges[at];
        if (m->key == key) return m;
        if (m->key == UINT64_MAX) return NULL;
        at = (at + 1) & e->mmask;
    }
}

static inline uint32_t merge_rank(const EncoderObject *e, uint32_t a, uint32_t b, uint32_t *merged) {
    const MergeSlot *m = merge_find(e, a, b);
    if (!m) return NO_RANK;
    *merged = m->merged;
    return m->rank;
}

static void Encoder_clear_all(EncoderObject *self) {
    free(self->merges);
    self->merges = NULL;
    specials_free(&self->sp);
    table_free(&self->cache);
    free(self->cache_ids.v);
    memset(&self->cache_ids, 0, sizeof(U32Vec));
    free(self->out.v);
    memset(&self->out, 0, sizeof(U32Vec));
    free(self->scratch);
    self->scratch = NULL;
    self->scratch_n = 0;
    if (self->idobj) {
        for (size_t i = 0; i <= self->max_id; i++) Py_XDECREF(self->idobj[i]);
        PyMem_Free(self->idobj);
        self->idobj = NULL;
    }
}

static void Encoder_dealloc(EncoderObject *self) {
    Encoder_clear_all(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int read_u32(PyObject *o, uint32_t *v, const char *what) {
    unsigned long x = PyLong_AsUnsignedLong(o);
    if (x == (unsigned long)-1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s out of range", what);
        }
        return -1;
    }
    if (x >= UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s out of range", what);
        return -1;
    }
    *v = (uint32_t)x;
    return 0;
}

static int Encoder_init(EncoderObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"merges", "byte_ids", "specials", "cache_limit", NULL};
    PyObject *merges, *byte_ids, *specials = NULL;
    Py_ssize_t cache_limit = 1000000;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|On:Encoder", kw, &merges, &byte_ids, &specials, &cache_limit))
        return -1;
    Encoder_clear_all(self);
    self->sp.single_first = -1;
    self->max_id = 0;
    if (cache_limit < 1) {
        PyErr_SetString(PyExc_ValueError, "cache_limit must be >= 1");
        return -1;
    }
    self->cache_limit = (size_t)cache_limit;
    PyObject *bf = PySequence_Fast(byte_ids, "byte_ids must be a sequence of 256 ints");
    if (!bf) return -1;
    if (PySequence_Fast_GET_SIZE(bf) != 256) {
        Py_DECREF(bf);
        PyErr_SetString(PyExc_ValueError, "byte_ids must have 256 entries");
        return -1;
    }
    for (int i = 0; i < 256; i++) {
        if (read_u32(PySequence_Fast_GET_ITEM(bf, i), &self->byte_ids[i], "byte id") < 0) {
            Py_DECREF(bf);
            return -1;
        }
        if (self->byte_ids[i] > self->max_id) self->max_id = self->byte_ids[i];
    }
    Py_DECREF(bf);
    PyObject *mf = PySequence_Fast(merges, "merges must be a sequence of (left, right, merged) id triples");
    if (!mf) return -1;
    Py_ssize_t nm = PySequence_Fast_GET_SIZE(mf);
    size_t cap = 64;
    while (cap < (size_t)nm * 2 + 2) cap <<= 1;
    self->merges = malloc(cap * sizeof(MergeSlot));
    if (!self->merges) {
        Py_DECREF(mf);
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < cap; i++) self->merges[i].key = UINT64_MAX;
    self->mmask = cap - 1;
    for (Py_ssize_t r = 0; r < nm; r++) {
        PyObject *t = PySequence_Fast_GET_ITEM(mf, r);
        uint32_t a, b, c;
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3) {
            Py_DECREF(mf);
            PyErr_SetString(PyExc_TypeError, "merges must be (left, right, merged) int triples");
            return -1;
        }
        if (read_u32(PyTuple_GET_ITEM(t, 0), &a, "merge id") < 0 || read_u32(PyTuple_GET_ITEM(t, 1), &b, "merge id") < 0 ||
            read_u32(PyTuple_GET_ITEM(t, 2), &c, "merge id") < 0) {
            Py_DECREF(mf);
            return -1;
        }
        if (c > self->max_id) self->max_id = c;
        uint64_t key = ((uint64_t)a << 32) | b;
        size_t at = (size_t)mix64(key) & self->mmask;
        while (self->merges[at].key != UINT64_MAX && self->merges[at].key != key) at = (at + 1) & self->mmask;
        if (self->merges[at].key == UINT64_MAX) { /* the first (lowest-rank) merge of a pair wins */
            self->merges[at].key = key;
            self->merges[at].rank = (uint32_t)r;
            self->merges[at].merged = c;
        }
    }
    Py_DECREF(mf);
    if (specials && specials != Py_None) {
        if (specials_init(&self->sp, specials, 1) < 0) return -1;
        for (Py_ssize_t k = 0; k < self->sp.n; k++)
            if (self->sp.id[k] > self->max_id) self->max_id = self->sp.id[k];
    }
    if (self->max_id >= (1u << 28)) {
        PyErr_SetString(PyExc_ValueError, "token ids must be < 2**28");
        return -1;
    }
    if (table_init(&self->cache, 1 << 14) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    self->idobj = PyMem_Calloc(self->max_id + 1, sizeof(PyObject *));
    if (!self->idobj) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int encoder_ready(EncoderObject *self) {
    if (!self->merges || !self->idobj || !self->cache.slots) {
        PyErr_SetString(PyExc_RuntimeError, "Encoder not initialized");
        return -1;
    }
    return 0;
}

/* BPE of a short piece (n <= SHORT_PIECE) appended to out. */
static void bpe_short(const EncoderObject *e, const uint8_t *p, size_t n, U32Vec *out) {
    uint32_t ids[SHORT_PIECE], rk[SHORT_PIECE], mg[SHORT_PIECE];
    size_t m = n;
    for (size_t i = 0; i < n; i++) ids[i] = e->byte_ids[p[i]];
    for (size_t i = 0; i + 1 < m; i++) rk[i] = merge_rank(e, ids[i], ids[i + 1], &mg[i]);
    while (m > 1) {
        size_t best = 0;
        uint32_t br = rk[0];
        for (size_t i = 1; i + 1 < m; i++)
            if (rk[i] < br) {
                br = rk[i];
                best = i;
            }
        if (br == NO_RANK) break;
        ids[best] = mg[best];
        memmove(ids + best + 1, ids + best + 2, (m - best - 2) * sizeof(uint32_t));
        memmove(rk + best, rk + best + 1, (m - best - 2) * sizeof(uint32_t));
        memmove(mg + best, mg + best + 1, (m - best - 2) * sizeof(uint32_t));
        m--;
        if (best > 0) rk[best - 1] = merge_rank(e, ids[best - 1], ids[best], &mg[best - 1]);
        if (best + 1 < m) rk[best] = merge_rank(e, ids[best], ids[best + 1], &mg[best]);
    }
    memcpy(out->v + out->n, ids, m * sizeof(uint32_t));
    out->n += m;
}

/* min-heap of (rank << 32 | position) */
static inline void heap_push(uint64_t *h, size_t *n, uint64_t x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent] <= x) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = x;
}

static inline void heap_sift_down(uint64_t *h, size_t n, size_t i) {
    uint64_t x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[c] >= x) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static inline uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0];
    h[0] = h[--(*n)];
    if (*n) heap_sift_down(h, *n, 0);
    return top;
}

#define NONE32 UINT32_MAX

/* BPE of a long piece: ids in a doubly linked list, candidate pairs in a heap; an entry is valid when its
   position is alive, has a successor, and the pair there still has the entry's rank. Stale entries are
   skipped, and the heap is rebuilt from the live pairs when it holds too many of them. */
static int bpe_long(const EncoderObject *e, const uint8_t *p, size_t n, U32Vec *out) {
    if (n >= NONE32) return -1;
    uint32_t *ids = malloc(n * sizeof(uint32_t));
    uint32_t *nxt = malloc(n * sizeof(uint32_t));
    uint32_t *prv = malloc(n * sizeof(uint32_t));
    size_t hcap = 2 * n + 16;
    uint64_t *heap = malloc(hcap * sizeof(uint64_t));
    if (!ids || !nxt || !prv || !heap) {
        free(ids); free(nxt); free(prv); free(heap);
        return -1;
    }
    size_t hn = 0, alive = n;
    for (size_t i = 0; i < n; i++) {
        ids[i] = e->byte_ids[p[i]];
        nxt[i] = i + 1 < n ? (uint32_t)(i + 1) : NONE32;
        prv[i] = i > 0 ? (uint32_t)(i - 1) : NONE32;
    }
    uint32_t mgd = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t r = merge_rank(e, ids[i], ids[i + 1], &mgd);
        if (r != NO_RANK) heap[hn++] = ((uint64_t)r << 32) | i;
    }
    for (size_t i = hn / 2; i-- > 0;) heap_sift_down(heap, hn, i);
    while (hn) {
        uint64_t top = heap_pop(heap, &hn);
        uint32_t r = (uint32_t)(top >> 32), i = (uint32_t)top;
        if (ids[i] == NONE32 || nxt[i] == NONE32) continue;
        uint32_t q = nxt[i];
        uint32_t rr = merge_rank(e, ids[i], ids[q], &mgd);
        if (rr != r) continue;
        ids[i] = mgd;
        ids[q] = NONE32;
        nxt[i] = nxt[q];
        if (nxt[q] != NONE32) prv[nxt[q]] = i;
        alive--;
        if (hn + 2 > hcap || hn > 2 * alive + 64) { /* rebuild from the live pairs */
            hn = 0;
            for (uint32_t a = 0; a != NONE32 && nxt[a] != NONE32; a = nxt[a]) {
                uint32_t ra = merge_rank(e, ids[a], ids[nxt[a]], &mgd);
                if (ra != NO_RANK) heap[hn++] = ((uint64_t)ra << 32) | a;
            }
            for (size_t k = hn / 2; k-- > 0;) heap_sift_down(heap, hn, k);
            continue;
        }
        if (nxt[i] != NONE32) {
            uint32_t ra = merge_rank(e, ids[i], ids[nxt[i]], &mgd);
            if (ra != NO_RANK) heap_push(heap, &hn, ((uint64_t)ra << 32) | i);
        }
        if (prv[i] != NONE32) {
            uint32_t a = prv[i];
            uint32_t ra = merge_rank(e, ids[a], ids[i], &mgd);
            if (ra != NO_RANK) heap_push(heap, &hn, ((uint64_t)ra << 32) | a);
        }
    }
    for (uint32_t a = 0; a != NONE32; a = nxt[a]) out->v[out->n++] = ids[a];
    free(ids); free(nxt); free(prv); free(heap);
    return 0;
}

/* Append the ids of one pre-token (cached). */
static int encode_piece(EncoderObject *e, const uint8_t *p, size_t n, U32Vec *out) {
    if (vec_reserve(out, n) < 0) return -1;
    if (n == 1) {
        out->v[out->n++] = e->byte_ids[p[0]];
        return 0;
    }
    int created = 0, oom = 0;
    Entry *ent = table_get(&e->cache, p, n, 0, &created, &oom);
    if (ent) {
        memcpy(out->v + out->n, e->cache_ids.v + ent->val, ent->vlen * sizeof(uint32_t));
        out->n += ent->vlen;
        return 0;
    }
    size_t start = out->n;
    if (n <= SHORT_PIECE)
        bpe_short(e, p, n, out);
    else if (bpe_long(e, p, n, out) < 0)
        return -1;
    size_t m = out->n - start;
    if (n > 4096) return 0; /* do not cache huge pieces */
    if (e->cache.n >= e->cache_limit) {
        table_clear(&e->cache);
        e->cache_ids.n = 0;
    }
    if (vec_reserve(&e->cache_ids, m) < 0) return -1;
    ent = table_get(&e->cache, p, n, 1, &created, &oom);
    if (!ent) return -1;
    ent->val = e->cache_ids.n;
    ent->vlen = (uint32_t)m;
    memcpy(e->cache_ids.v + e->cache_ids.n, out->v + start, m * sizeof(uint32_t));
    e->cache_ids.n += m;
    return 0;
}

static int encode_text(EncoderObject *e, const uint8_t *s, size_t n, int use_specials, U32Vec *out) {
    size_t pos = 0;
    while (pos < n) {
        Py_ssize_t k = -1;
        size_t end = use_specials ? specials_next(&e->sp, s, n, pos, &k) : n;
        size_t i = pos;
        while (i < end) {
            size_t j = scan_token(s, end, i);
            if (encode_piece(e, s + i, j - i, out) < 0) return -1;
            i = j;
        }
        if (end < n) {
            if (vec_reserve(out, 1) < 0) return -1;
            out->v[out->n++] = e->sp.id[k];
            pos = end + e->sp.len[k];
        } else {
            pos = n;
        }
    }
    return 0;
}

static PyObject *ids_to_list(EncoderObject *e, const U32Vec *v) {
    PyObject *list = PyList_New((Py_ssize_t)v->n);
    if (!list) return NULL;
    for (size_t i = 0; i < v->n; i++) {
        uint32_t id = v->v[i];
        PyObject *o = id <= e->max_id ? e->idobj[id] : NULL;
        if (!o) {
            o = PyLong_FromUnsignedLong(id);
            if (!o) {
                Py_DECREF(list);
                return NULL;
            }
            if (id <= e->max_id) {
                e->idobj[id] = o;
                Py_INCREF(o);
            }
        } else {
            Py_INCREF(o);
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, o);
    }
    return list;
}

static void shrink_scratch(EncoderObject *e) {
    e->out.n = 0;
    if (e->out.cap > (1u << 22)) { /* keep at most 16 MB of scratch between calls */
        free(e->out.v);
        memset(&e->out, 0, sizeof(U32Vec));
    }
}

static PyObject *Encoder_encode(EncoderObject *self, PyObject *args) {
    Py_buffer buf;
    int use_specials = 1;
    if (!PyArg_ParseTuple(args, "y*|p:encode", &buf, &use_specials)) return NULL;
    if (encoder_ready(self) < 0 || need_classes() < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    self->out.n = 0;
    int rc = encode_text(self, buf.buf, (size_t)buf.len, use_specials, &self->out);
    PyBuffer_Release(&buf);
    PyObject *res = rc < 0 ? PyErr_NoMemory() : ids_to_list(self, &self->out);
    shrink_scratch(self);
    return res;
}

static PyObject *Encoder_encode_array(EncoderObject *self, PyObject *args) {
    Py_buffer buf;
    int itemsize = 4, use_specials = 1;
    if (!PyArg_ParseTuple(args, "y*|ip:encode_array", &buf, &itemsize, &use_specials)) return NULL;
    if (itemsize != 2 && itemsize != 4) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "itemsize must be 2 (uint16) or 4 (uint32)");
        return NULL;
    }
    if (encoder_ready(self) < 0 || need_classes() < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    if (itemsize == 2 && self->max_id > 0xFFFF) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "token ids do not fit in uint16");
        return NULL;
    }
    self->out.n = 0;
    int rc = encode_text(self, buf.buf, (size_t)buf.len, use_specials, &self->out);
    PyBuffer_Release(&buf);
    PyObject *res = NULL;
    if (rc < 0) {
        PyErr_NoMemory();
    } else {
        res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(self->out.n * (size_t)itemsize));
        if (res) {
            if (itemsize == 4) {
                if (self->out.n) memcpy(PyBytes_AS_STRING(res), self->out.v, self->out.n * 4); /* v may be NULL */
            } else {
                uint16_t *d = (uint16_t *)PyBytes_AS_STRING(res);
                for (size_t i = 0; i < self->out.n; i++) d[i] = (uint16_t)self->out.v[i];
            }
        }
    }
    shrink_scratch(self);
    return res;
}

static PyObject *Encoder_encode_pieces(EncoderObject *self, PyObject *arg) {
    if (encoder_ready(self) < 0) return NULL;
    PyObject *fast = PySequence_Fast(arg, "encode_pieces expects a list of str or bytes pre-tokens");
    if (!fast) return NULL;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(fast);
    self->out.n = 0;
    PyObject *res = NULL;
    for (Py_ssize_t k = 0; k < m; k++) {
        PyObject *o = PySequence_Fast_GET_ITEM(fast, k);
        const char *p;
        Py_ssize_t len;
        if (PyUnicode_Check(o)) {
            p = PyUnicode_AsUTF8AndSize(o, &len);
            if (!p) goto done;
        } else if (PyBytes_Check(o)) {
            p = PyBytes_AS_STRING(o);
            len = PyBytes_GET_SIZE(o);
        } else {
            PyErr_Format(PyExc_TypeError, "pre-tokens must be str or bytes, not %.100s", Py_TYPE(o)->tp_name);
            goto done;
        }
        if (len && encode_piece(self, (const uint8_t *)p, (size_t)len, &self->out) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    res = ids_to_list(self, &self->out);
done:
    Py_DECREF(fast);
    shrink_scratch(self);
    return res;
}

static PyObject *Encoder_cache_size(EncoderObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromSize_t(self->cache.slots ? self->cache.n : 0);
}

static PyObject *Encoder_clear_cache(EncoderObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->cache.slots) {
        table_clear(&self->cache);
        self->cache_ids.n = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *Encoder_reduce(EncoderObject *self, PyObject *Py_UNUSED(ignored)) {
    (void)self;
    PyErr_SetString(PyExc_TypeError, "cannot pickle a _ctext.Encoder (rebuild it from the tokenizer)");
    return NULL;
}

static PyMethodDef Encoder_methods[] = {
    {"encode", (PyCFunction)Encoder_encode, METH_VARARGS,
     "encode(data, use_specials=True) -> list[int]: ids of UTF-8 bytes (GPT-2 pre-tokenizer; special tokens\n"
     "unless use_specials is false)"},
    {"encode_array", (PyCFunction)Encoder_encode_array, METH_VARARGS,
     "encode_array(data, itemsize=4, use_specials=True) -> bytes: the ids as native uint16 (itemsize 2) or\n"
     "uint32 values"},
    {"encode_pieces", (PyCFunction)Encoder_encode_pieces, METH_O,
     "encode_pieces(pretokens) -> list[int]: ids of already cut pre-tokens (str or bytes; no specials)"},
    {"cache_size", (PyCFunction)Encoder_cache_size, METH_NOARGS, "number of cached pre-tokens"},
    {"clear_cache", (PyCFunction)Encoder_clear_cache, METH_NOARGS, "empty the pre-token cache"},
    {"__reduce__", (PyCFunction)Encoder_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lmfs.tokenizer._ctext.Encoder",
    .tp_basicsize = sizeof(EncoderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Encoder(merges, byte_ids, specials=(), cache_limit=1000000): byte-level BPE with a pre-token cache;\n"
              "merges are (left_id, right_id, merged_id) in rank order, specials (bytes, id) pairs",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Encoder_init,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_methods = Encoder_methods,
};

/* ------------------------------------------------------------------------------------------------ module */

static PyMethodDef module_methods[] = {
    {"set_classes", py_set_classes, METH_VARARGS,
     "set_classes(table): install the 0x110000-entry class table (0 other, 1 letter, 2 number, 3 space)"},
    {"classes_ready", py_classes_ready, METH_NOARGS, "whether set_classes ran in this process"},
    {"pretokenize", py_pretokenize, METH_VARARGS, "pretokenize(data) -> list[bytes]: GPT-2 pre-tokens"},
    {"split_specials", py_split_specials, METH_VARARGS,
     "split_specials(data, specials) -> list[(bytes, bool)]: leftmost special first, longest among those"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_ctext",
                                       "GPT-2 pre-tokenization, pre-token counting and BPE encoding in C", -1,
                                       module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__ctext(void) {
    if (PyType_Ready(&CounterType) < 0 || PyType_Ready(&EncoderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&CounterType);
    if (PyModule_AddObject(m, "Counter", (PyObject *)&CounterType) < 0) {
        Py_DECREF(&CounterType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&EncoderType);
    if (PyModule_AddObject(m, "Encoder", (PyObject *)&EncoderType) < 0) {
        Py_DECREF(&EncoderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
