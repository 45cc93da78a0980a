/* lmfs.data._cminhash: MinHash signatures and n-gram hash sets of a batch of documents, in one pass per document.
 *
 * The numpy code in lmfs/data/dedup.py (normalize_text, MinHasher._doc_grams, MinHasher's multiply-add hash
 * family) is the reference; this module gives bit-identical results:
 *
 *   hash_documents(texts, mult, add, ngrams, resolve, fallback) -> (sigs, grams, offsets)
 *       texts     list of str
 *       mult, add the hash family, uint64[num_hashes] each (any buffer)
 *       resolve   resolve(cp) -> bytes | None: what code point cp becomes after normalization (UTF-8, every
 *                 whitespace character written as b" "), or None when the whole document must be normalized by
 *                 `fallback` (a character whose lowercase depends on its context, one that cannot be encoded).
 *                 Called once per code point per process; the answers are cached in a table here.
 *       fallback  fallback(text) -> str: the reference normalization of one document
 *       returns   three bytearrays: sigs uint64[len(texts) * num_hashes] (row-major; all ones for a document
 *                 without n-grams), grams uint64[] (each document's sorted unique n-gram hashes, concatenated),
 *                 offsets int64[len(texts) + 1]
 *   lsh_roots(sigs, n, num_hashes, grams, offsets, num_bands, threshold) -> roots
 *       lsh_clusters' loop: per band, documents whose rows hash to the same key (stable order), every pair
 *       of a bucket not yet in one cluster verified by the exact Jaccard of the sorted n-gram hash sets
 *       (two empty sets: 1.0), union-find keeping the smaller index as the root; int64[n] as a bytearray
 *   normalize(text, resolve, fallback) -> str   the normalized text (for tests)
 *   reset()                                     forget the cached table (for tests)
 *   simd() -> str                               which minimum loop runs ("avx512", "avx2", "generic")
 *   set_simd(name)                              choose it (for tests; an unavailable one is a ValueError)
 *
 * Per document: each code point is looked up in the table and its output bytes are fed, byte by byte, to a
 * word hasher (polynomial in P over byte + 1, plus the byte length, SplitMix-finalized; the separator is the
 * space byte, so runs of whitespace and leading/trailing whitespace produce no words, exactly as
 * " ".join(s.split()) followed by splitting on " "). Word n-grams are polynomials in Q over the word hashes
 * (a document shorter than n words has one n-gram, scaled by a constant and offset by its word count), sorted
 * and deduplicated, and every hash function x -> a_i * x + b_i (mod 2^64) is minimized over them.
 * Everything runs with the GIL held.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#define NCP 0x110000u
#define P_WORD 1000003ull
#define Q_GRAM 0x100000001B3ull
#define GOLDEN 0x9E3779B97F4A7C15ull

/* table entry: 0 not resolved yet, 1 fallback, else ((offset + 1) << 8) | length of the output in g_pool */
static uint64_t *g_map = NULL;
static uint8_t *g_pool = NULL;
static size_t g_pool_len = 0, g_pool_cap = 0;

static inline uint64_t mix64(uint64_t z) {
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ull;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------------------------------------------ buffers */

typedef struct {
    uint64_t *v;
    size_t n, cap;
} Vec;

static int vec_reserve(Vec *a, size_t need) {
    if (need <= a->cap) return 0;
    size_t cap = a->cap ? a->cap : 256;
    while (cap < need) cap *= 2;
    uint64_t *v = realloc(a->v, cap * sizeof(uint64_t));
    if (!v) {
        PyErr_NoMemory();
        return -1;
    }
    a->v = v;
    a->cap = cap;
    return 0;
}

static inline int vec_push(Vec *a, uint64_t x) {
    if (a->n == a->cap && vec_reserve(a, a->n + 1) < 0) return -1;
    a->v[a->n++] = x;
    return 0;
}

/* ------------------------------------------------------------------------------------------------ table */

static int table_ready(void) {
    if (!g_map) {
        g_map = calloc(NCP, sizeof(uint64_t));
        if (!g_map) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

/* Resolve code point cp through the Python callback; returns the entry (never 0) or 0 with an exception set. */
static uint64_t table_resolve(uint32_t cp, PyObject *resolve) {
    PyObject *r = PyObject_CallFunction(resolve, "I", (unsigned int)cp);
    if (!r) return 0;
    uint64_t entry;
    if (r == Py_None) {
        entry = 1;
    } else {
        char *s;
        Py_ssize_t len;
        if (PyBytes_AsStringAndSize(r, &s, &len) < 0) {
            Py_DECREF(r);
            return 0;
        }
        if (len > 255) {
            Py_DECREF(r);
            PyErr_Format(PyExc_ValueError, "resolve(%u) returned %zd bytes (at most 255)", cp, len);
            return 0;
        }
        if (g_pool_len + (size_t)len > g_pool_cap) {
            size_t cap = g_pool_cap ? g_pool_cap : 4096;
            while (cap < g_pool_len + (size_t)len) cap *= 2;
            uint8_t *p = realloc(g_pool, cap);
            if (!p) {
                Py_DECREF(r);
                PyErr_NoMemory();
                return 0;
            }
            g_pool = p;
            g_pool_cap = cap;
        }
        memcpy(g_pool + g_pool_len, s, (size_t)len);
        entry = ((uint64_t)(g_pool_len + 1) << 8) | (uint64_t)len;
        g_pool_len += (size_t)len;
    }
    Py_DECREF(r);
    g_map[cp] = entry;
    return entry;
}

/* ------------------------------------------------------------------------------------------------ words */

typedef struct {
    uint64_t h, pw, len;
} Word;

/* Feed one output byte; a finished word's hash goes to `words`. */
static inline int feed(Word *w, uint8_t b, Vec *words) {
    if (b == ' ') {
        if (w->len) {
            if (vec_push(words, mix64(w->h + w->len)) < 0) return -1;
            w->h = 0;
            w->pw = 1;
            w->len = 0;
        }
    } else {
        w->h += ((uint64_t)b + 1) * w->pw;
        w->pw *= P_WORD;
        w->len++;
    }
    return 0;
}

/* Normalize `text` into word hashes (words->n words); when `bytes_out` is given, also the normalized bytes. */
static int doc_words(PyObject *text, PyObject *resolve, PyObject *fallback, Vec *words, Vec *bytes_out) {
    Word w = {0, 1, 0};
    words->n = 0;
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "texts must be str, not %.100s", Py_TYPE(text)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    /* bytes_out collects into a byte buffer stored in a Vec of uint64 words: use it as raw bytes */
    size_t nb = 0;
#define EMIT(b)                                                                                              \
    do {                                                                                                     \
        uint8_t b_ = (b);                                                                                    \
        if (feed(&w, b_, words) < 0) return -1;                                                              \
        if (bytes_out) {                                                                                     \
            if (vec_reserve(bytes_out, nb / 8 + 1) < 0) return -1;                                           \
            ((uint8_t *)bytes_out->v)[nb++] = b_;                                                            \
        }                                                                                                    \
    } while (0)
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t cp = PyUnicode_READ(kind, data, i);
        uint64_t e = g_map[cp];
        if (!e && !(e = table_resolve(cp, resolve))) return -1;
        if (e == 1) goto slow;
        const uint8_t *s = g_pool + ((e >> 8) - 1);
        size_t len = (size_t)(e & 0xFF);
        for (size_t k = 0; k < len; k++) EMIT(s[k]);
    }
    EMIT(' ');
    if (bytes_out) bytes_out->n = nb;
    return 0;
slow : {
    /* a character whose output depends on its context: the reference normalizes the whole document */
    w.h = 0;
    w.pw = 1;
    w.len = 0;
    words->n = 0;
    nb = 0;
    PyObject *norm = PyObject_CallOneArg(fallback, text);
    if (!norm) return -1;
    if (!PyUnicode_Check(norm)) {
        Py_DECREF(norm);
        PyErr_SetString(PyExc_TypeError, "fallback must return str");
        return -1;
    }
    Py_ssize_t len;
    const char *u = PyUnicode_AsUTF8AndSize(norm, &len); /* raises on lone surrogates, like str.encode */
    if (!u) {
        Py_DECREF(norm);
        return -1;
    }
    for (Py_ssize_t k = 0; k < len; k++) {
        uint8_t b_ = (uint8_t)u[k];
        if (feed(&w, b_, words) < 0 ||
            (bytes_out && vec_reserve(bytes_out, nb / 8 + 1) < 0)) {
            Py_DECREF(norm);
            return -1;
        }
        if (bytes_out) ((uint8_t *)bytes_out->v)[nb++] = b_;
    }
    Py_DECREF(norm);
    if (feed(&w, ' ', words) < 0) return -1;
    if (bytes_out) bytes_out->n = nb;
    return 0;
}
#undef EMIT
}

/* ------------------------------------------------------------------------------------------------ sorting */

static void insertion_sort(uint64_t *a, size_t n) {
    for (size_t i = 1; i < n; i++) {
        uint64_t x = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > x) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

/* LSD radix sort, 8 passes of 8 bits (passes where every key has the same digit are skipped) */
static int radix_sort(uint64_t *a, size_t n, Vec *tmp) {
    if (vec_reserve(tmp, n) < 0) return -1;
    uint64_t *src = a, *dst = tmp->v;
    size_t count[8][256];
    memset(count, 0, sizeof(count));
    for (size_t i = 0; i < n; i++) {
        uint64_t x = a[i];
        for (int d = 0; d < 8; d++) count[d][(x >> (8 * d)) & 0xFF]++;
    }
    for (int d = 0; d < 8; d++) {
        size_t *c = count[d];
        if (c[(a[0] >> (8 * d)) & 0xFF] == n) continue;
        size_t sum = 0;
        for (int k = 0; k < 256; k++) {
            size_t t = c[k];
            c[k] = sum;
            sum += t;
        }
        for (size_t i = 0; i < n; i++) {
            uint64_t x = src[i];
            dst[c[(x >> (8 * d)) & 0xFF]++] = x;
        }
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof(uint64_t));
    return 0;
}

/* sort and deduplicate a[0..n); returns the new length, or (size_t)-1 on memory error */
static size_t sort_unique(uint64_t *a, size_t n, Vec *tmp) {
    if (n < 2) return n;
    if (n <= 48)
        insertion_sort(a, n);
    else if (radix_sort(a, n, tmp) < 0)
        return (size_t)-1;
    size_t m = 1;
    for (size_t i = 1; i < n; i++)
        if (a[i] != a[m - 1]) a[m++] = a[i];
    return m;
}

/* ------------------------------------------------------------------------------------------------ minimum */

#define MIN_BODY                                                                                             \
    {                                                                                                        \
        for (size_t i = 0; i < h; i++) sig[i] = UINT64_MAX;                                                  \
        for (size_t k = 0; k < n; k++) {                                                                     \
            const uint64_t g = grams[k];                                                                     \
            for (size_t i = 0; i < h; i++) {                                                                 \
                uint64_t v = mult[i] * g + add[i];                                                           \
                sig[i] = v < sig[i] ? v : sig[i];                                                            \
            }                                                                                                \
        }                                                                                                    \
    }

typedef void (*min_fn)(const uint64_t *, size_t, const uint64_t *, const uint64_t *, size_t, uint64_t *);

static void min_generic(const uint64_t *restrict grams, size_t n, const uint64_t *restrict mult,
                        const uint64_t *restrict add, size_t h, uint64_t *restrict sig) MIN_BODY

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_CLONES 1
__attribute__((target("avx2"))) static void min_avx2(const uint64_t *restrict grams, size_t n,
                                                      const uint64_t *restrict mult, const uint64_t *restrict add,
                                                      size_t h, uint64_t *restrict sig) MIN_BODY

__attribute__((target("avx512f,avx512dq"))) static void min_avx512_tail(const uint64_t *restrict grams, size_t n,
                                                                         const uint64_t *restrict mult,
                                                                         const uint64_t *restrict add, size_t h,
                                                                         uint64_t *restrict sig) MIN_BODY

/* 64 hash functions at a time in eight registers of accumulators, one pass over the n-grams each */
__attribute__((target("avx512f,avx512dq"))) static void min_avx512(const uint64_t *restrict grams, size_t n,
                                                                    const uint64_t *restrict mult,
                                                                    const uint64_t *restrict add, size_t h,
                                                                    uint64_t *restrict sig) {
    size_t i0 = 0;
    for (; i0 + 64 <= h; i0 += 64) {
        __m512i a[8], b[8], m[8];
        for (int r = 0; r < 8; r++) {
            a[r] = _mm512_loadu_si512((const void *)(mult + i0 + 8 * r));
            b[r] = _mm512_loadu_si512((const void *)(add + i0 + 8 * r));
            m[r] = _mm512_set1_epi64(-1);
        }
        for (size_t k = 0; k < n; k++) {
            __m512i g = _mm512_set1_epi64((long long)grams[k]);
            for (int r = 0; r < 8; r++)
                m[r] = _mm512_min_epu64(m[r], _mm512_add_epi64(_mm512_mullo_epi64(a[r], g), b[r]));
        }
        for (int r = 0; r < 8; r++) _mm512_storeu_si512((void *)(sig + i0 + 8 * r), m[r]);
    }
    if (i0 < h) min_avx512_tail(grams, n, mult + i0, add + i0, h - i0, sig + i0);
}
#endif

static min_fn g_min = min_generic;
static const char *g_simd = "generic";

/* ------------------------------------------------------------------------------------------------ Python */

static int get_u64(PyObject *obj, Py_buffer *view, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len % 8) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "%s must hold uint64 values (%zd bytes)", name, view->len);
        return -1;
    }
    return 0;
}

static PyObject *hash_documents(PyObject *self, PyObject *args) {
    PyObject *texts, *mult_obj, *add_obj, *resolve, *fallback;
    Py_ssize_t ngrams;
    if (!PyArg_ParseTuple(args, "O!OOnOO:hash_documents", &PyList_Type, &texts, &mult_obj, &add_obj, &ngrams,
                          &resolve, &fallback))
        return NULL;
    if (ngrams <= 0) return PyErr_Format(PyExc_ValueError, "ngrams must be positive, got %zd", ngrams);
    if (table_ready() < 0) return NULL;
    Py_buffer mv, av;
    if (get_u64(mult_obj, &mv, "mult") < 0) return NULL;
    if (get_u64(add_obj, &av, "add") < 0) {
        PyBuffer_Release(&mv);
        return NULL;
    }
    PyObject *result = NULL, *sigs_b = NULL, *grams_b = NULL, *offs_b = NULL;
    Vec words = {0}, grams = {0}, tmp = {0};
    size_t h = (size_t)(mv.len / 8);
    if ((size_t)(av.len / 8) != h || h == 0) {
        PyErr_SetString(PyExc_ValueError, "mult and add must have the same, positive number of values");
        goto done;
    }
    const uint64_t *mult = mv.buf, *add = av.buf;
    Py_ssize_t ndocs = PyList_GET_SIZE(texts);
    sigs_b = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(ndocs * h * 8));
    offs_b = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)((ndocs + 1) * 8));
    if (!sigs_b || !offs_b) goto done;
    uint64_t *sigs = (uint64_t *)PyByteArray_AS_STRING(sigs_b);
    int64_t *offs = (int64_t *)PyByteArray_AS_STRING(offs_b);
    uint64_t qpow[64];
    size_t nq = (size_t)ngrams < 64 ? (size_t)ngrams : 64;
    qpow[0] = 1;
    for (size_t j = 1; j < nq; j++) qpow[j] = qpow[j - 1] * Q_GRAM;
    offs[0] = 0;
    for (Py_ssize_t d = 0; d < ndocs; d++) {
        if (doc_words(PyList_GET_ITEM(texts, d), resolve, fallback, &words, NULL) < 0) goto done;
        size_t nw = words.n, n = (size_t)ngrams, start = grams.n, cnt;
        const uint64_t *wv = words.v;
        if (nw == 0) {
            cnt = 0;
        } else if (nw < n) { /* the whole (short) document is its one n-gram */
            uint64_t acc = 0, qp = 1;
            for (size_t j = 0; j < nw; j++) {
                acc += wv[j] * qp * GOLDEN;
                qp *= Q_GRAM;
            }
            if (vec_push(&grams, mix64(acc + nw)) < 0) goto done;
            cnt = 1;
        } else {
            cnt = nw - n + 1;
            if (vec_reserve(&grams, start + cnt) < 0) goto done;
            uint64_t *out = grams.v + start;
            if (n <= 64) {
                for (size_t i = 0; i < cnt; i++) {
                    uint64_t acc = 0;
                    for (size_t j = 0; j < n; j++) acc += wv[i + j] * qpow[j];
                    out[i] = mix64(acc);
                }
            } else {
                for (size_t i = 0; i < cnt; i++) {
                    uint64_t acc = 0, qp = 1;
                    for (size_t j = 0; j < n; j++) {
                        acc += wv[i + j] * qp;
                        qp *= Q_GRAM;
                    }
                    out[i] = mix64(acc);
                }
            }
            grams.n = start + cnt;
        }
        uint64_t *sig = sigs + (size_t)d * h;
        if (cnt) {
            size_t m = sort_unique(grams.v + start, cnt, &tmp);
            if (m == (size_t)-1) goto done;
            grams.n = start + m;
            g_min(grams.v + start, m, mult, add, h, sig);
        } else {
            for (size_t i = 0; i < h; i++) sig[i] = UINT64_MAX;
        }
        offs[d + 1] = (int64_t)grams.n;
    }
    grams_b = PyByteArray_FromStringAndSize((const char *)grams.v, (Py_ssize_t)(grams.n * 8));
    if (!grams_b) goto done;
    result = PyTuple_Pack(3, sigs_b, grams_b, offs_b);
done:
    Py_XDECREF(sigs_b);
    Py_XDECREF(grams_b);
    Py_XDECREF(offs_b);
    free(words.v);
    free(grams.v);
    free(tmp.v);
    PyBuffer_Release(&mv);
    PyBuffer_Release(&av);
    return result;
}

/* ------------------------------------------------------------------------------------------------ LSH */

typedef struct {
    uint64_t key;
    int64_t idx;
} KeyIdx;

/* stable LSD radix sort of (key, idx) by key: equal keys keep their input (index) order */
static int sort_keyidx(KeyIdx *a, size_t n, KeyIdx *tmp) {
    size_t count[256];
    KeyIdx *src = a, *dst = tmp;
    for (int d = 0; d < 8; d++) {
        memset(count, 0, sizeof(count));
        for (size_t i = 0; i < n; i++) count[(src[i].key >> (8 * d)) & 0xFF]++;
        if (count[(src[0].key >> (8 * d)) & 0xFF] == n) continue;
        size_t sum = 0;
        for (int k = 0; k < 256; k++) {
            size_t t = count[k];
            count[k] = sum;
            sum += t;
        }
        for (size_t i = 0; i < n; i++) dst[count[(src[i].key >> (8 * d)) & 0xFF]++] = src[i];
        KeyIdx *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof(KeyIdx));
    return 0;
}

static int64_t uf_find(int64_t *parent, int64_t i) {
    int64_t root = i;
    while (parent[root] != root) root = parent[root];
    while (parent[i] != root) {
        int64_t next = parent[i];
        parent[i] = root;
        i = next;
    }
    return root;
}

/* |a ∩ b| of two sorted arrays of distinct values */
static size_t intersect_count(const uint64_t *a, size_t na, const uint64_t *b, size_t nb) {
    size_t i = 0, j = 0, c = 0;
    while (i < na && j < nb) {
        uint64_t x = a[i], y = b[j];
        c += x == y;
        i += x <= y;
        j += y <= x;
    }
    return c;
}

static PyObject *lsh_roots(PyObject *self, PyObject *args) {
    PyObject *sigs_obj, *grams_obj, *offs_obj;
    Py_ssize_t n, h, bands;
    double threshold;
    if (!PyArg_ParseTuple(args, "OnnOOnd:lsh_roots", &sigs_obj, &n, &h, &grams_obj, &offs_obj, &bands, &threshold))
        return NULL;
    if (n < 0 || h <= 0 || bands <= 0 || h % bands)
        return PyErr_Format(PyExc_ValueError, "bad shape: n=%zd num_hashes=%zd num_bands=%zd", n, h, bands);
    Py_buffer sv, gv, ov;
    if (get_u64(sigs_obj, &sv, "sigs") < 0) return NULL;
    if (get_u64(grams_obj, &gv, "grams") < 0) {
        PyBuffer_Release(&sv);
        return NULL;
    }
    if (get_u64(offs_obj, &ov, "offsets") < 0) {
        PyBuffer_Release(&sv);
        PyBuffer_Release(&gv);
        return NULL;
    }
    PyObject *roots_b = NULL;
    KeyIdx *ki = NULL, *tmp = NULL;
    const uint64_t *sigs = sv.buf, *grams = gv.buf;
    const int64_t *offs = ov.buf;
    size_t ng = (size_t)(gv.len / 8);
    if ((size_t)(sv.len / 8) != (size_t)n * (size_t)h || (size_t)(ov.len / 8) != (size_t)n + 1) {
        PyErr_SetString(PyExc_ValueError, "sigs must be n x num_hashes and offsets n + 1 values");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (offs[i] < 0 || offs[i] > offs[i + 1] || (size_t)offs[i + 1] > ng) {
            PyErr_SetString(PyExc_ValueError, "offsets must be non-decreasing and within grams");
            goto done;
        }
    roots_b = PyByteArray_FromStringAndSize(NULL, n * 8);
    if (!roots_b) goto done;
    int64_t *parent = (int64_t *)PyByteArray_AS_STRING(roots_b);
    for (Py_ssize_t i = 0; i < n; i++) parent[i] = i;
    if (n >= 2) {
        ki = malloc((size_t)n * sizeof(KeyIdx));
        tmp = malloc((size_t)n * sizeof(KeyIdx));
        if (!ki || !tmp) {
            PyErr_NoMemory();
            Py_CLEAR(roots_b);
            goto done;
        }
        size_t rows = (size_t)(h / bands);
        for (Py_ssize_t band = 0; band < bands; band++) {
            for (Py_ssize_t i = 0; i < n; i++) {
                const uint64_t *row = sigs + (size_t)i * (size_t)h + (size_t)band * rows;
                uint64_t key = 0;
                for (size_t r = 0; r < rows; r++) key = mix64(key ^ row[r]) + (uint64_t)(r + 1);
                ki[i].key = key;
                ki[i].idx = i;
            }
            sort_keyidx(ki, (size_t)n, tmp);
            size_t g0 = 0;
            while (g0 < (size_t)n) {
                size_t g1 = g0 + 1;
                while (g1 < (size_t)n && ki[g1].key == ki[g0].key) g1++;
                for (size_t a = g0; a + 1 < g1; a++) {
                    for (size_t b = a + 1; b < g1; b++) {
                        int64_t i = ki[a].idx, j = ki[b].idx;
                        int64_t ri = uf_find(parent, i), rj = uf_find(parent, j);
                        if (ri == rj) continue;
                        size_t na = (size_t)(offs[i + 1] - offs[i]), nb = (size_t)(offs[j + 1] - offs[j]);
                        double sim;
                        if (na == 0 && nb == 0) {
                            sim = 1.0;
                        } else {
                            size_t inter = intersect_count(grams + offs[i], na, grams + offs[j], nb);
                            sim = (double)inter / (double)(na + nb - inter);
                        }
                        if (sim >= threshold) { /* the smaller root stays: the first document of its cluster */
                            if (ri < rj)
                                parent[rj] = ri;
                            else
                                parent[ri] = rj;
                        }
                    }
                }
                g0 = g1;
            }
        }
        for (Py_ssize_t i = 0; i < n; i++) parent[i] = uf_find(parent, i);
    }
done:
    free(ki);
    free(tmp);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&gv);
    PyBuffer_Release(&ov);
    return roots_b;
}

static PyObject *normalize(PyObject *self, PyObject *args) {
    PyObject *text, *resolve, *fallback;
    if (!PyArg_ParseTuple(args, "OOO:normalize", &text, &resolve, &fallback)) return NULL;
    if (table_ready() < 0) return NULL;
    Vec words = {0}, bytes = {0};
    PyObject *out = NULL;
    if (doc_words(text, resolve, fallback, &words, &bytes) == 0) {
        /* the bytes as the reference joins them: words separated by one space */
        const uint8_t *b = (const uint8_t *)bytes.v;
        size_t n = bytes.n, m = 0;
        uint8_t *s = malloc(n + 1);
        if (!s) {
            PyErr_NoMemory();
        } else {
            for (size_t i = 0; i < n; i++) {
                if (b[i] == ' ' && (m == 0 || s[m - 1] == ' ')) continue;
                s[m++] = b[i];
            }
            if (m && s[m - 1] == ' ') m--;
            out = PyUnicode_DecodeUTF8((const char *)s, (Py_ssize_t)m, "strict");
            free(s);
        }
    }
    free(words.v);
    free(bytes.v);
    return out;
}

static PyObject *reset(PyObject *self, PyObject *noargs) {
    free(g_map);
    free(g_pool);
    g_map = NULL;
    g_pool = NULL;
    g_pool_len = g_pool_cap = 0;
    Py_RETURN_NONE;
}

static PyObject *simd(PyObject *self, PyObject *noargs) { return PyUnicode_FromString(g_simd); }

static PyObject *set_simd(PyObject *self, PyObject *arg) {
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    if (strcmp(name, "generic") == 0) {
        g_min = min_generic;
        g_simd = "generic";
        Py_RETURN_NONE;
    }
#ifdef HAVE_X86_CLONES
    __builtin_cpu_init();
    if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2")) {
        g_min = min_avx2;
        g_simd = "avx2";
        Py_RETURN_NONE;
    }
    if (strcmp(name, "avx512") == 0 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) {
        g_min = min_avx512;
        g_simd = "avx512";
        Py_RETURN_NONE;
    }
#endif
    PyErr_Format(PyExc_ValueError, "minimum loop %R is not available on this machine", arg);
    return NULL;
}

static PyMethodDef methods[] = {
    {"hash_documents", hash_documents, METH_VARARGS,
     "hash_documents(texts, mult, add, ngrams, resolve, fallback) -> (sigs, grams, offsets) as bytearrays"},
    {"lsh_roots", lsh_roots, METH_VARARGS,
     "lsh_roots(sigs, n, num_hashes, grams, offsets, num_bands, threshold) -> int64 cluster roots (bytearray)"},
    {"normalize", normalize, METH_VARARGS, "normalize(text, resolve, fallback) -> the normalized text"},
    {"reset", reset, METH_NOARGS, "forget the cached code point table"},
    {"simd", simd, METH_NOARGS, "the minimum loop in use: avx512, avx2 or generic"},
    {"set_simd", set_simd, METH_O, "choose the minimum loop (for tests): avx512, avx2 or generic"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cminhash",
    "MinHash signatures of document batches in C (see lmfs/data/dedup.py for the numpy reference).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cminhash(void) {
#ifdef HAVE_X86_CLONES
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) {
        g_min = min_avx512;
        g_simd = "avx512";
    } else if (__builtin_cpu_supports("avx2")) {
        g_min = min_avx2;
        g_simd = "avx2";
    }
#endif
    return PyModule_Create(&module);
}
