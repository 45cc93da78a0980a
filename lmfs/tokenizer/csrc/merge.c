/* The BPE training merge loop in C: lmfs.tokenizer._cmerge.merge.
 *
 * Same algorithm and same result as the pure-Python loop in lmfs/tokenizer/train.py
 * (_train_from_counts_python), which is the readable reference:
 *
 *   - every distinct pre-token ("word") is an array of token ids with a frequency;
 *   - every pair (a, b) seen in some word has a record: its count over the corpus and a list of the words that
 *     (may) contain it; stale entries are tolerated and skipped when the pair is merged;
 *   - the pairs with a positive count sit in a binary max-heap that knows each pair's position (an indexed
 *     heap), ordered by count, then by the pair's byte strings (the greater pair wins a tie), then by the
 *     smaller ids (only possible when two ids spell the same bytes; the Python heap breaks that tie the same
 *     way);
 *   - merging (a, b) into c rewrites only the words in the pair's list, left to right, non-overlapping; around
 *     each merge site (prev, a) and (b, next) lose the word's frequency and (prev, c) and (c, next) gain it.
 *     The pairs whose count changed are marked dirty and their heap positions are repaired once per merge.
 *
 * Internally the i-th merged token has id 256 + i; the ids returned are shifted to first_id + i (the special
 * tokens sit between the bytes and the merges in the vocabulary and never occur in a word).
 *
 * Counts are int64. The sum over words of freq * (len - 1) bounds every pair count at every step (a merge
 * never adds pairs to a word), so the input is checked once for that sum to fit and nothing can overflow later.
 *
 * The GIL is released for the whole computation and taken back only to call the progress callback.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PROGRESS_EVERY 64

typedef struct {
    int32_t a, b;      /* internal token ids */
    int64_t count;     /* occurrences in the corpus (word frequency x occurrences in the word) */
    int32_t heap_pos;  /* index in the heap, -1 when not in it */
    int32_t dirty;     /* count changed during the current merge */
    int32_t *words;    /* word indices that (may) contain the pair; may hold stale entries and repeats */
    int32_t nwords, capwords;
} Pair;

typedef struct {
    /* words: symbols of word w are sym[woff[w] .. woff[w] + wlen[w]) (merged in place, so they only shrink) */
    int32_t *sym;
    int64_t *woff;
    int32_t *wlen;
    int64_t *freq;
    int32_t *stamp; /* the last merge that rewrote the word (skips repeats in a pair's word list) */
    int32_t nwords;

    /* tokens: bytes of internal id t are bytes[toff[t] .. toff[t] + tlen[t]) */
    unsigned char *bytes;
    int64_t *toff;
    int32_t *tlen;
    int64_t nbytes, capbytes;
    int32_t ntok;

    Pair *pairs;
    int32_t npairs, cappairs;

    /* open-addressing hash table (linear probing): key (a << 32 | b) -> pair index, -1 = empty */
    uint64_t *hkeys;
    int32_t *hvals;
    uint64_t hmask;
    int hshift;

    int32_t *heap; /* pair indices; room for every pair */
    int32_t heap_n;
    int64_t heap_cap;

    int32_t *dirty_list;
    int32_t ndirty, capdirty;
    int32_t *scratch; /* heap positions, for heap_repair */
    int32_t capscratch;

    int32_t *result_a, *result_b; /* internal ids of each merged pair */
    int32_t nmerges;
} State;

/* ------------------------------------------------------------------------------------------------ helpers */

static int grow(void **ptr, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 0;
    int64_t ncap = *cap > 0 ? *cap : 16;
    while (ncap < need) ncap *= 2;
    void *p = realloc(*ptr, (size_t)ncap * elem);
    if (!p) return -1;
    *ptr = p;
    *cap = ncap;
    return 0;
}

static int grow32(void **ptr, int32_t *cap, int64_t need, size_t elem) {
    int64_t c = *cap;
    if (need > INT32_MAX) return -1;
    if (grow(ptr, &c, need, elem) < 0) return -1;
    *cap = c > INT32_MAX ? INT32_MAX : (int32_t)c;
    return 0;
}

static inline uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static inline uint64_t hash_slot(const State *s, uint64_t key) {
    return (key * 0x9E3779B97F4A7C15ULL) >> s->hshift;
}

static int hash_init(State *s, int logcap) {
    uint64_t cap = (uint64_t)1 << logcap;
    s->hkeys = malloc(cap * sizeof *s->hkeys);
    s->hvals = malloc(cap * sizeof *s->hvals);
    if (!s->hkeys || !s->hvals) return -1;
    memset(s->hvals, 0xff, cap * sizeof *s->hvals);
    s->hmask = cap - 1;
    s->hshift = 64 - logcap;
    return 0;
}

/* index of pair (a, b), or -1 */
static inline int32_t pair_find(const State *s, int32_t a, int32_t b) {
    uint64_t key = pair_key(a, b);
    uint64_t i = hash_slot(s, key);
    for (;;) {
        int32_t v = s->hvals[i];
        if (v < 0) return -1;
        if (s->hkeys[i] == key) return v;
        i = (i + 1) & s->hmask;
    }
}

static int hash_rehash(State *s) {
    uint64_t oldcap = s->hmask + 1;
    uint64_t *oldkeys = s->hkeys;
    int32_t *oldvals = s->hvals;
    int logcap = 64 - s->hshift + 1;
    if (logcap > 40) return -1;
    s->hkeys = NULL;
    s->hvals = NULL;
    if (hash_init(s, logcap) < 0) {
        free(s->hkeys);
        free(s->hvals);
        s->hkeys = oldkeys;
        s->hvals = oldvals;
        s->hmask = oldcap - 1;
        s->hshift = 64 - (logcap - 1);
        return -1;
    }
    for (uint64_t j = 0; j < oldcap; j++) {
        if (oldvals[j] < 0) continue;
        uint64_t i = hash_slot(s, oldkeys[j]);
        while (s->hvals[i] >= 0) i = (i + 1) & s->hmask;
        s->hkeys[i] = oldkeys[j];
        s->hvals[i] = oldvals[j];
    }
    free(oldkeys);
    free(oldvals);
    return 0;
}

/* index of pair (a, b), created with count 0 when new; -1 on allocation failure */
static int32_t pair_get(State *s, int32_t a, int32_t b) {
    uint64_t key = pair_key(a, b);
    uint64_t i = hash_slot(s, key);
    for (;;) {
        int32_t v = s->hvals[i];
        if (v < 0) break;
        if (s->hkeys[i] == key) return v;
        i = (i + 1) & s->hmask;
    }
    if (grow32((void **)&s->pairs, &s->cappairs, (int64_t)s->npairs + 1, sizeof(Pair)) < 0) return -1;
    int32_t idx = s->npairs++;
    Pair *p = &s->pairs[idx];
    memset(p, 0, sizeof *p);
    p->a = a;
    p->b = b;
    p->heap_pos = -1;
    s->hkeys[i] = key;
    s->hvals[i] = idx;
    if ((uint64_t)s->npairs * 2 > s->hmask + 1 && hash_rehash(s) < 0) return -1;
    return idx;
}

static inline int pair_add_word(Pair *p, int32_t w) {
    if (p->nwords > 0 && p->words[p->nwords - 1] == w) return 0;
    if (p->nwords == p->capwords &&
        grow32((void **)&p->words, &p->capwords, (int64_t)p->nwords + 1, sizeof(int32_t)) < 0)
        return -1;
    p->words[p->nwords++] = w;
    return 0;
}

static inline int mark_dirty(State *s, int32_t idx) {
    if (s->pairs[idx].dirty) return 0;
    if (s->ndirty == s->capdirty &&
        grow32((void **)&s->dirty_list, &s->capdirty, (int64_t)s->ndirty + 1, sizeof(int32_t)) < 0)
        return -1;
    s->pairs[idx].dirty = 1;
    s->dirty_list[s->ndirty++] = idx;
    return 0;
}

/* ------------------------------------------------------------------------------------------------ heap */

/* byte-string order of two tokens: <0, 0, >0 (a proper prefix is smaller) */
static inline int tok_cmp(const State *s, int32_t x, int32_t y) {
    if (x == y) return 0;
    int32_t lx = s->tlen[x], ly = s->tlen[y];
    int c = memcmp(s->bytes + s->toff[x], s->bytes + s->toff[y], (size_t)(lx < ly ? lx : ly));
    if (c) return c;
    return (lx > ly) - (lx < ly);
}

/* does pair i go above pair j: higher count; then the greater (bytes(a), bytes(b)); then smaller ids */
static inline int above(const State *s, int32_t i, int32_t j) {
    const Pair *p = &s->pairs[i], *q = &s->pairs[j];
    if (p->count != q->count) return p->count > q->count;
    int c = tok_cmp(s, p->a, q->a);
    if (c) return c > 0;
    c = tok_cmp(s, p->b, q->b);
    if (c) return c > 0;
    if (p->a != q->a) return p->a < q->a;
    return p->b < q->b;
}

static inline void heap_set(State *s, int32_t pos, int32_t idx) {
    s->heap[pos] = idx;
    s->pairs[idx].heap_pos = pos;
}

static void sift_up(State *s, int32_t pos) {
    int32_t idx = s->heap[pos];
    while (pos > 0) {
        int32_t parent = (pos - 1) / 2;
        if (!above(s, idx, s->heap[parent])) break;
        heap_set(s, pos, s->heap[parent]);
        pos = parent;
    }
    heap_set(s, pos, idx);
}

static void sift_down(State *s, int32_t pos) {
    int32_t idx = s->heap[pos];
    int32_t n = s->heap_n;
    for (;;) {
        int32_t child = 2 * pos + 1;
        if (child >= n) break;
        if (child + 1 < n && above(s, s->heap[child + 1], s->heap[child])) child++;
        if (!above(s, s->heap[child], idx)) break;
        heap_set(s, pos, s->heap[child]);
        pos = child;
    }
    heap_set(s, pos, idx);
}

static void heap_remove(State *s, int32_t idx) {
    int32_t pos = s->pairs[idx].heap_pos;
    s->pairs[idx].heap_pos = -1;
    int32_t last = s->heap[--s->heap_n];
    if (pos == s->heap_n) return;
    heap_set(s, pos, last);
    sift_up(s, pos);
    sift_down(s, s->pairs[last].heap_pos);
}

/* the heap array must hold every pair */
static int heap_reserve(State *s) {
    if (s->npairs + 1 <= s->heap_cap) return 0;
    int64_t ncap = s->heap_cap > 0 ? s->heap_cap : 16;
    while (ncap < s->npairs + 1) ncap *= 2;
    int32_t *h = realloc(s->heap, (size_t)ncap * sizeof *h);
    if (!h) return -1;
    s->heap = h;
    s->heap_cap = ncap;
    return 0;
}

static int pos_descending(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a < b) - (a > b);
}

/* put every dirty pair where its new count belongs; -1 on allocation failure.
 *
 * The pairs already in the heap only lost counts during the merge (gains go to pairs with the new token, which
 * are new and not in the heap yet), so each can only sit too high. Sifting them down in order of decreasing
 * position restores the heap the way heapify does: when a position is sifted, the subtrees below it are heaps
 * again. (Repairing them one by one in any order would not: a sift compares against dirty pairs whose
 * positions are not repaired yet.) Then the pairs whose count fell to 0 leave, and the new pairs enter. */
static int heap_repair(State *s) {
    if (heap_reserve(s) < 0) return -1;
    if (s->ndirty > s->capscratch &&
        grow32((void **)&s->scratch, &s->capscratch, s->ndirty, sizeof(int32_t)) < 0)
        return -1;
    int32_t nold = 0;
    for (int32_t k = 0; k < s->ndirty; k++) {
        int32_t pos = s->pairs[s->dirty_list[k]].heap_pos;
        if (pos >= 0) s->scratch[nold++] = pos;
    }
    if (nold > 1) qsort(s->scratch, (size_t)nold, sizeof(int32_t), pos_descending); /* scratch may be NULL */
    for (int32_t k = 0; k < nold; k++) sift_down(s, s->scratch[k]);
    for (int32_t k = 0; k < s->ndirty; k++) {
        int32_t idx = s->dirty_list[k];
        Pair *p = &s->pairs[idx];
        p->dirty = 0;
        if (p->count <= 0) {
            if (p->heap_pos >= 0) heap_remove(s, idx);
        } else if (p->heap_pos < 0) {
            heap_set(s, s->heap_n++, idx);
            sift_up(s, p->heap_pos);
        }
    }
    s->ndirty = 0;
    return 0;
}

/* ------------------------------------------------------------------------------------------------ merging */

static int lose_count(State *s, int32_t a, int32_t b, int64_t delta) {
    int32_t idx = pair_find(s, a, b);
    if (idx < 0) return 0; /* cannot happen: a pair that loses occurrences was counted before */
    s->pairs[idx].count -= delta;
    return mark_dirty(s, idx);
}

static int gain_count(State *s, int32_t a, int32_t b, int64_t delta, int32_t w) {
    int32_t idx = pair_get(s, a, b);
    if (idx < 0) return -1;
    s->pairs[idx].count += delta;
    if (pair_add_word(&s->pairs[idx], w) < 0) return -1;
    return mark_dirty(s, idx);
}

/* merge pair `top` into the new token c; -1 on allocation failure */
static int merge_one(State *s, int32_t top) {
    Pair *p = &s->pairs[top];
    const int32_t a = p->a, b = p->b, c = s->ntok;
    const int32_t stamp = s->nmerges + 1;

    /* the new token's bytes */
    int64_t la = s->tlen[a], lb = s->tlen[b];
    if (grow((void **)&s->bytes, &s->capbytes, s->nbytes + la + lb, 1) < 0) return -1;
    memcpy(s->bytes + s->nbytes, s->bytes + s->toff[a], (size_t)la);
    memcpy(s->bytes + s->nbytes + la, s->bytes + s->toff[b], (size_t)lb);
    s->toff[c] = s->nbytes;
    if (la + lb > INT32_MAX) return -1;
    s->tlen[c] = (int32_t)(la + lb);
    s->nbytes += la + lb;
    s->ntok++;
    s->result_a[s->nmerges] = a;
    s->result_b[s->nmerges] = b;
    s->nmerges++;

    /* take the word list: appends during this merge only go to pairs with c, never to (a, b) */
    int32_t *list = p->words, nlist = p->nwords;
    p->words = NULL;
    p->nwords = p->capwords = 0;
    heap_remove(s, top);

    int rc = 0;
    for (int32_t li = 0; li < nlist && rc == 0; li++) {
        int32_t wi = list[li];
        if (s->stamp[wi] == stamp) continue;
        s->stamp[wi] = stamp;
        int32_t *w = s->sym + s->woff[wi];
        int32_t n = s->wlen[wi];
        int32_t i = 0;
        while (i + 1 < n && !(w[i] == a && w[i + 1] == b)) i++;
        if (i + 1 >= n) continue; /* stale entry */
        const int64_t f = s->freq[wi];
        int32_t j = i; /* symbols before the first site stay where they are */
        while (i < n) {
            int32_t x = w[i];
            if (x == a && i + 1 < n && w[i + 1] == b) {
                if (j > 0) {
                    int32_t prev = w[j - 1];
                    if (lose_count(s, prev, a, f) < 0 || gain_count(s, prev, c, f, wi) < 0) {
                        rc = -1;
                        break;
                    }
                }
                if (i + 2 < n) {
                    int32_t next = w[i + 2];
                    if (lose_count(s, b, next, f) < 0 || gain_count(s, c, next, f, wi) < 0) {
                        rc = -1;
                        break;
                    }
                }
                w[j++] = c;
                i += 2;
            } else {
                w[j++] = x;
                i++;
            }
        }
        if (rc == 0) s->wlen[wi] = j;
    }
    free(list);
    s->pairs[top].count = 0; /* (a, a) loses counts at overlapping sites; the pair is gone either way */
    if (heap_repair(s) < 0) return -1;
    return rc;
}

/* ------------------------------------------------------------------------------------------------ setup */

static void state_free(State *s) {
    free(s->sym);
    free(s->woff);
    free(s->wlen);
    free(s->freq);
    free(s->stamp);
    free(s->bytes);
    free(s->toff);
    free(s->tlen);
    if (s->pairs) {
        for (int32_t i = 0; i < s->npairs; i++) free(s->pairs[i].words);
    }
    free(s->pairs);
    free(s->hkeys);
    free(s->hvals);
    free(s->heap);
    free(s->dirty_list);
    free(s->scratch);
    free(s->result_a);
    free(s->result_b);
    memset(s, 0, sizeof *s);
}

/* count all pairs, fill the heap; -1 on allocation failure (runs without the GIL) */
static int state_build(State *s, int32_t max_tokens) {
    s->toff = malloc((size_t)max_tokens * sizeof *s->toff);
    s->tlen = malloc((size_t)max_tokens * sizeof *s->tlen);
    s->capbytes = 4096;
    s->bytes = malloc((size_t)s->capbytes);
    if (!s->toff || !s->tlen || !s->bytes) return -1;
    for (int32_t t = 0; t < 256; t++) {
        s->bytes[t] = (unsigned char)t;
        s->toff[t] = t;
        s->tlen[t] = 1;
    }
    s->nbytes = 256;
    s->ntok = 256;

    if (hash_init(s, 12) < 0) return -1;
    for (int32_t wi = 0; wi < s->nwords; wi++) {
        const int32_t *w = s->sym + s->woff[wi];
        for (int32_t j = 0; j + 1 < s->wlen[wi]; j++) {
            int32_t idx = pair_get(s, w[j], w[j + 1]);
            if (idx < 0) return -1;
            s->pairs[idx].count += s->freq[wi];
            if (pair_add_word(&s->pairs[idx], wi) < 0) return -1;
        }
    }
    if (heap_reserve(s) < 0) return -1;
    s->heap_n = 0;
    for (int32_t i = 0; i < s->npairs; i++) heap_set(s, s->heap_n++, i);
    for (int32_t pos = s->heap_n / 2 - 1; pos >= 0; pos--) sift_down(s, pos);
    return 0;
}

static int call_progress(PyObject *progress, long n) {
    if (progress == NULL || n <= 0) return 0;
    PyObject *r = PyObject_CallFunction(progress, "l", n);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* ------------------------------------------------------------------------------------------------ entry */

PyDoc_STRVAR(merge_doc,
"merge(words, freqs, num_merges, first_id, progress=None) -> list[tuple[int, int]]\n"
"\n"
"Byte-level BPE merges. words: a sequence of bytes (distinct pre-tokens); freqs: their counts (ints,\n"
"entries with count <= 0 and words shorter than 2 bytes are ignored). Ids 0-255 are the single bytes; the\n"
"i-th merge creates id first_id + i. Returns the merged (left_id, right_id) pairs in creation order, at most\n"
"num_merges of them (fewer when no pair is left). The pair with the highest count is merged first; ties go to\n"
"the greater (bytes(left), bytes(right)). progress, when given, is called with the number of merges done\n"
"since its last call (every 64 merges and at the end).");

/* a tuple snapshot of a sequence (items held by it, whatever happens to the original) */
static PyObject *fast_tuple(PyObject *seq, const char *msg) {
    PyObject *fast = PySequence_Fast(seq, msg);
    if (!fast) return NULL;
    PyObject *t = PySequence_Tuple(fast);
    Py_DECREF(fast);
    return t;
}

static PyObject *merge(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"words", "freqs", "num_merges", "first_id", "progress", NULL};
    PyObject *words_obj, *freqs_obj, *progress = Py_None;
    long long num_merges_ll, first_id_ll;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOLL|O:merge", kwlist, &words_obj, &freqs_obj,
                                     &num_merges_ll, &first_id_ll, &progress))
        return NULL;
    if (num_merges_ll < 0) {
        PyErr_Format(PyExc_ValueError, "merge(): num_merges must be >= 0, got %lld", num_merges_ll);
        return NULL;
    }
    if (first_id_ll < 256 || first_id_ll > ((long long)1 << 62)) {
        PyErr_Format(PyExc_ValueError, "merge(): first_id must be >= 256 (ids 0-255 are the bytes), got %lld",
                     first_id_ll);
        return NULL;
    }
    if (progress == Py_None) {
        progress = NULL;
    } else if (!PyCallable_Check(progress)) {
        PyErr_Format(PyExc_TypeError, "merge(): progress must be callable or None, not %.100s",
                     Py_TYPE(progress)->tp_name);
        return NULL;
    }
    /* tuples, not PySequence_Fast: a list could be changed by a freq's __index__ during pass 1 (items freed,
       a word replaced by a longer one after its length was counted) */
    PyObject *words = fast_tuple(words_obj, "merge(): words must be a sequence of bytes");
    if (!words) return NULL;
    PyObject *freqs = fast_tuple(freqs_obj, "merge(): freqs must be a sequence of ints");
    if (!freqs) {
        Py_DECREF(words);
        return NULL;
    }
    State st;
    memset(&st, 0, sizeof st);
    PyObject *result = NULL;
    int64_t *fbuf = NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(words);
    if (PySequence_Fast_GET_SIZE(freqs) != n) {
        PyErr_Format(PyExc_ValueError, "merge(): words and freqs differ in length (%zd vs %zd)", n,
                     PySequence_Fast_GET_SIZE(freqs));
        goto done;
    }
    if (n >= INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "merge(): too many words (at most 2**31 - 2)");
        goto done;
    }

    /* pass 1: check types, count the symbols of the words that take part, check the count bound */
    PyObject **witems = PySequence_Fast_ITEMS(words), **fitems = PySequence_Fast_ITEMS(freqs);
    fbuf = malloc(((size_t)n + 1) * sizeof *fbuf); /* each word's frequency, 0 when the word is skipped */
    if (!fbuf) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t nsym = 0, nused = 0, total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        fbuf[i] = 0;
        if (!PyBytes_Check(witems[i])) {
            PyErr_Format(PyExc_TypeError, "merge(): words[%zd] must be bytes, not %.100s", i,
                         Py_TYPE(witems[i])->tp_name);
            goto done;
        }
        int overflow = 0;
        long long f;
        if (PyLong_Check(fitems[i])) {
            f = PyLong_AsLongLongAndOverflow(fitems[i], &overflow);
        } else if (PyIndex_Check(fitems[i])) { /* e.g. numpy integers */
            PyObject *v = PyNumber_Index(fitems[i]);
            if (!v) goto done;
            f = PyLong_AsLongLongAndOverflow(v, &overflow);
            Py_DECREF(v);
        } else {
            PyErr_Format(PyExc_TypeError, "merge(): freqs[%zd] must be an int, not %.100s", i,
                         Py_TYPE(fitems[i])->tp_name);
            goto done;
        }
        if (f == -1 && PyErr_Occurred()) goto done;
        if (overflow > 0) {
            PyErr_Format(PyExc_OverflowError, "merge(): freqs[%zd] does not fit in 64 bits", i);
            goto done;
        }
        Py_ssize_t len = PyBytes_GET_SIZE(witems[i]);
        if (overflow < 0 || f <= 0 || len < 2) continue;
        if (len > INT32_MAX) {
            PyErr_Format(PyExc_OverflowError, "merge(): words[%zd] is too long", i);
            goto done;
        }
        int64_t w_total;
        if (__builtin_mul_overflow((int64_t)f, (int64_t)(len - 1), &w_total) ||
            __builtin_add_overflow(total, w_total, &total)) {
            PyErr_SetString(PyExc_OverflowError,
                            "merge(): the pair counts (sum of freq * (len - 1)) do not fit in 64 bits");
            goto done;
        }
        fbuf[i] = f;
        nsym += len;
        nused++;
    }

    /* pass 2: copy the words */
    st.sym = malloc(((size_t)nsym + 1) * sizeof *st.sym);
    st.woff = malloc(((size_t)nused + 1) * sizeof *st.woff);
    st.wlen = malloc(((size_t)nused + 1) * sizeof *st.wlen);
    st.freq = malloc(((size_t)nused + 1) * sizeof *st.freq);
    st.stamp = calloc((size_t)nused + 1, sizeof *st.stamp);
    if (!st.sym || !st.woff || !st.wlen || !st.freq || !st.stamp) {
        PyErr_NoMemory();
        goto done;
    }
    {
        int64_t off = 0;
        int32_t wi = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t len = PyBytes_GET_SIZE(witems[i]);
            int64_t f = fbuf[i];
            if (f <= 0) continue;
            const unsigned char *src = (const unsigned char *)PyBytes_AS_STRING(witems[i]);
            for (Py_ssize_t j = 0; j < len; j++) st.sym[off + j] = src[j];
            st.woff[wi] = off;
            st.wlen[wi] = (int32_t)len;
            st.freq[wi] = f;
            wi++;
            off += len;
        }
        st.nwords = wi;
    }

    /* every merge removes at least one symbol, so there are at most nsym - nused merges */
    int64_t max_merges = nsym - nused;
    if (max_merges > num_merges_ll) max_merges = num_merges_ll;
    if (max_merges > INT32_MAX - 257) max_merges = INT32_MAX - 257;
    st.result_a = malloc(((size_t)max_merges + 1) * sizeof *st.result_a);
    st.result_b = malloc(((size_t)max_merges + 1) * sizeof *st.result_b);
    if (!st.result_a || !st.result_b) {
        PyErr_NoMemory();
        goto done;
    }

    int failed = 0;
    PyThreadState *ts = PyEval_SaveThread();
    if (state_build(&st, (int32_t)(256 + max_merges)) < 0) failed = 1;
    int32_t reported = 0;
    while (!failed && st.nmerges < max_merges && st.heap_n > 0 && st.pairs[st.heap[0]].count > 0) {
        if (merge_one(&st, st.heap[0]) < 0) {
            failed = 1;
            break;
        }
        if (progress && st.nmerges - reported >= PROGRESS_EVERY) {
            PyEval_RestoreThread(ts);
            int bad = call_progress(progress, st.nmerges - reported);
            reported = st.nmerges;
            if (bad) goto done; /* the exception is set; ts is restored */
            ts = PyEval_SaveThread();
        }
    }
    PyEval_RestoreThread(ts);
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    if (call_progress(progress, st.nmerges - reported) < 0) goto done;

    result = PyList_New(st.nmerges);
    if (!result) goto done;
    for (int32_t i = 0; i < st.nmerges; i++) {
        long long a = st.result_a[i], b = st.result_b[i];
        if (a >= 256) a = a - 256 + first_id_ll;
        if (b >= 256) b = b - 256 + first_id_ll;
        PyObject *t = Py_BuildValue("(LL)", a, b);
        if (!t) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, t);
    }

done:
    free(fbuf);
    state_free(&st);
    Py_DECREF(words);
    Py_DECREF(freqs);
    return result;
}

static PyMethodDef methods[] = {
    {"merge", (PyCFunction)(void (*)(void))merge, METH_VARARGS | METH_KEYWORDS, merge_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cmerge",
    "The BPE training merge loop in C (see lmfs/tokenizer/train.py for the Python reference).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cmerge(void) { return PyModule_Create(&module); }
