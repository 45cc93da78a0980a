"""The byte-level BPE Tokenizer: encode, decode, streaming encode.

Encoding a text: split on special tokens (longest match first), cut each piece into pre-tokens with the
pre-tokenizer regex, and turn each pre-token into ids by applying merges in creation order. Natural text repeats
its pre-tokens, so a pre-token → ids cache answers most of them with one dict lookup; the BPE itself runs only on
cache misses.

Lone surrogates (which a Python ``str`` can hold but UTF-8 cannot encode) are replaced by U+FFFD before encoding,
as tiktoken does; a high+low surrogate pair in a ``str`` becomes the code point it stands for.
Decoding replaces malformed UTF-8 (ids that split a character) with U+FFFD.

When the C extension ``lmfs.tokenizer._ctext`` is built (see :mod:`lmfs.tokenizer.native`), encoding runs there:
GPT-2's pre-tokenizer, special-token splitting, the BPE and the cache all in C over UTF-8 bytes. Other
pre-tokenizer regexes (cl100k) stay in Python and only the BPE of their pre-tokens runs in C. Text holding lone
surrogates always takes the pure-Python path. Both give identical ids (tests compare them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, pairwise

from lmfs.tokenizer import native
from lmfs.tokenizer.pretokenize import (
    GPT2_PATTERN,
    check_pattern_covers,
    check_special_list,
    coarse_pattern,
    compile_pattern,
    special_regex,
    split_on_specials,
    uncovered,
)

#: a cache (pre-tokens, or coarse pieces) that reaches this many entries is cleared, so memory stays bounded on
#: endless streams (~200 MB at most per cache); 100 MB of Gutenberg text has ~730K distinct coarse pieces
CACHE_LIMIT = 1_000_000
#: ``encode_iterable`` processes buffered text in pieces of about this many characters
STREAM_PIECE = 1 << 16
_INF = 1 << 62
#: ids may leave gaps, but the largest id must stay below ``len(vocab) + ID_SLACK``: lookups use a dense table
#: of ``max id + 1`` entries, so an id of 10**12 would ask for terabytes
ID_SLACK = 1 << 16
_NO_MERGE = (_INF, -1)


class Tokenizer:
    """Byte-level BPE tokenizer.

    Args:
        vocab: id → token bytes.
        merges: merged pairs of token bytes, in creation order (rank 0 first).
        special_tokens: strings that are always one token and never split; added to the vocab when missing.
        pattern: the pre-tokenizer regex (default GPT-2's; see :data:`~lmfs.tokenizer.pretokenize.CL100K_PATTERN`).
        backend: ``auto``/``c``/``python`` for the encoder (default: ``LMFS_TOKENIZER_BACKEND``, see
            :mod:`lmfs.tokenizer.native`).
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: Sequence[tuple[bytes, bytes]],
        special_tokens: Sequence[str] | None = None,
        pattern: str = GPT2_PATTERN,
        *,
        backend: str | None = None,
    ) -> None:
        specials_in = check_special_list(special_tokens)
        self.vocab: dict[int, bytes] = dict(vocab)
        bad_id = next((i for i in self.vocab if not isinstance(i, int) or isinstance(i, bool) or i < 0), None)
        if bad_id is not None:
            raise ValueError(f"vocab id {bad_id!r} is not a non-negative integer")
        if self.vocab and max(self.vocab) >= len(self.vocab) + ID_SLACK:
            raise ValueError(
                f"vocab id {max(self.vocab)} is far beyond the vocab's {len(self.vocab)} tokens (ids must stay "
                f"below the token count + {ID_SLACK})"
            )
        check_pattern_covers(pattern)
        self.merges: list[tuple[bytes, bytes]] = list(merges)
        self.pattern = pattern
        self.token_to_id: dict[bytes, int] = {b: i for i, b in self.vocab.items()}
        if len(self.token_to_id) != len(self.vocab):
            raise ValueError("vocab maps two ids to the same bytes; each token must appear once")
        missing = [bytes([x]) for x in range(256) if bytes([x]) not in self.token_to_id]
        if missing:
            raise ValueError(
                f"vocab lacks single-byte tokens {missing[:5]}...; a byte-level vocab needs all 256"
            )
        self.special_tokens: list[str] = list(dict.fromkeys(specials_in))
        self.special_to_id: dict[str, int] = {}
        for s in self.special_tokens:
            b = s.encode("utf-8")
            if b not in self.token_to_id:
                new = max(self.vocab) + 1
                self.vocab[new] = b
                self.token_to_id[b] = new
            self.special_to_id[s] = self.token_to_id[b]
        # merge ranks on ids: (left id, right id) -> (rank, merged id)
        self.ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (left, right) in enumerate(self.merges):
            try:
                key = (self.token_to_id[left], self.token_to_id[right])
                merged = self.token_to_id[left + right]
            except KeyError:
                raise ValueError(
                    f"merge #{rank} {left!r} + {right!r} uses or makes a token that is not in the vocab"
                ) from None
            self.ranks.setdefault(key, (rank, merged))
        self._pat = compile_pattern(pattern)
        self._specials = special_regex(self.special_tokens)
        self._max_special = max((len(s) for s in self.special_tokens), default=0)
        self._id_bytes: list[bytes] = [b""] * (max(self.vocab) + 1)
        for i, b in self.vocab.items():
            self._id_bytes[i] = b
        self._cache: dict[str, list[int]] = {}  # pre-token -> ids
        self._coarse = coarse_pattern(pattern)
        self._piece_cache: dict[str, list[int]] = {}  # coarse piece (e.g. " word,") -> ids
        # ids of the 256 single bytes (GPT-2's files do not give byte x the id x)
        byte_ids = [self.token_to_id[bytes([x])] for x in range(256)]
        self._byte_ids: list[int] | None = None if byte_ids == list(range(256)) else byte_ids
        self._backend_request = backend
        self._native: object | None = None  # the C encoder, built on first use (never pickled)
        self._native_tried = False

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_native"], state["_native_tried"] = None, False
        return state

    def _native_encoder(self):
        """The C encoder (``_ctext.Encoder``) for this tokenizer, or None when the pure-Python code is used."""
        if not self._native_tried:
            mod = native.load_ctext(self._backend_request)
            if mod is not None:
                tid = self.token_to_id
                merges = [(tid[a], tid[b], tid[a + b]) for a, b in self.merges]
                byte_ids = self._byte_ids or list(range(256))
                specials = [(s.encode("utf-8"), i) for s, i in self.special_to_id.items()]
                self._native = mod.Encoder(merges, byte_ids, specials, CACHE_LIMIT)
            self._native_tried = True
        return self._native

    def _native_bytes_encoder(self):
        """The C encoder when it pre-tokenizes raw UTF-8 bytes itself (GPT-2's pattern), else None."""
        return self._native_encoder() if self._coarse is not None else None

    @property
    def backend(self) -> str:
        """``c`` when encoding runs in the C extension, else ``python``."""
        return "python" if self._native_encoder() is None else "c"

    def cache_size(self) -> int:
        """Number of cached pre-tokens (bounded by :data:`CACHE_LIMIT`)."""
        enc = self._native_encoder()
        return len(self._cache) if enc is None else max(enc.cache_size(), len(self._cache))

    # ------------------------------------------------------------------------------------------ encode

    def __len__(self) -> int:
        return len(self.vocab)

    def _bpe(self, piece: str) -> list[int]:
        """Ids of one pre-token: repeatedly merge the adjacent pair of lowest rank (leftmost on ties).

        ``pair_ranks[i]`` is the rank of ``(ids[i], ids[i + 1])``; after a merge only its two neighbours change.
        Merging one occurrence at a time equals merging all occurrences of the pair: a pair that contains the new
        token always ranks after the merge that made it, so the next occurrence is the next minimum.
        """
        try:
            data = piece.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates
            data = piece.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")
        ids = list(data) if self._byte_ids is None else [self._byte_ids[x] for x in data]
        if len(ids) < 2:
            return ids
        get = self.ranks.get
        none = _NO_MERGE
        pair_ranks = [get(pair, none)[0] for pair in pairwise(ids)]
        while pair_ranks:
            best = min(pair_ranks)
            if best == _INF:
                break
            i = pair_ranks.index(best)
            ids[i : i + 2] = [get((ids[i], ids[i + 1]))[1]]
            del pair_ranks[i]
            if i > 0:
                pair_ranks[i - 1] = get((ids[i - 1], ids[i]), none)[0]
            if i < len(pair_ranks):
                pair_ranks[i] = get((ids[i], ids[i + 1]), none)[0]
        return ids

    def _encode_pretokens(self, pretokens: list[str]) -> list[int]:
        enc = self._native_encoder()
        if enc is not None:
            try:
                return enc.encode_pieces(pretokens)
            except UnicodeEncodeError:  # lone surrogates: the Python path below replaces them
                pass
        cache = self._cache
        parts = list(map(cache.get, pretokens))
        if None in parts:
            for j, ids in enumerate(parts):
                if ids is None:
                    tok = pretokens[j]
                    ids = cache.get(tok)
                    if ids is None:
                        if len(cache) >= CACHE_LIMIT:
                            cache.clear()
                        ids = cache[tok] = self._bpe(tok)
                    parts[j] = ids
        return list(chain.from_iterable(parts))

    def _encode_native(self, text: str, use_specials: bool) -> list[int] | None:
        """Ids from the C encoder (GPT-2's pre-tokenizer in C), or None when the pure-Python path must run: no C
        encoder, another pattern, or lone surrogates in ``text``."""
        enc = self._native_bytes_encoder()
        if enc is None:
            return None
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return enc.encode(data, use_specials)

    def _encode_plain(self, text: str) -> list[int]:
        """Ids of text without special tokens. With GPT-2's regex, a fast coarse split (one piece per word with
        its punctuation, e.g. ``" word,"``) is looked up in a second cache; only new pieces are pre-tokenized."""
        ids = self._encode_native(text, use_specials=False)
        if ids is not None:
            return ids
        if self._coarse is None:
            pretokens = self._pat.findall(text)
            if sum(map(len, pretokens)) != len(text):  # the pattern skipped something: never drop text
                at = uncovered(self._pat, text)
                raise ValueError(
                    f"the pre-tokenizer pattern {self.pattern!r} does not cover the text: {text[at:at + 20]!r} at "
                    f"position {at} matches nothing (it would be dropped)"
                )
            return self._encode_pretokens(pretokens)
        pieces = self._coarse.findall(text)
        cache = self._piece_cache
        parts = list(map(cache.get, pieces))
        if None in parts:
            findall = self._pat.findall
            for j, ids in enumerate(parts):
                if ids is None:
                    piece = pieces[j]
                    ids = cache.get(piece)
                    if ids is None:
                        if len(cache) >= CACHE_LIMIT:
                            cache.clear()
                        ids = cache[piece] = self._encode_pretokens(findall(piece))
                    parts[j] = ids
        return list(chain.from_iterable(parts))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        ids = self._encode_native(text, use_specials=True)
        if ids is not None:
            return ids
        if self._specials is None:
            return self._encode_plain(text)
        out: list[int] = []
        for piece, is_special in split_on_specials(text, self._specials):
            if is_special:
                out.append(self.special_to_id[piece])
            else:
                out += self._encode_plain(piece)
        return out

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Lazily yield the ids of the concatenation of the strings in ``iterable`` (e.g. a text file handle).

        The result equals ``encode("".join(iterable))`` however the text is cut into strings; memory holds only
        a small buffer (plus the current string), never the whole stream.
        """
        carry = ""
        pending: list[str] = []
        size = 0
        for chunk in iterable:
            pending.append(chunk)
            size += len(chunk)
            if size < STREAM_PIECE:
                continue
            text = "".join(pending)
            pending.clear()
            size = 0
            for start in range(0, len(text), STREAM_PIECE * 16):  # a huge single string: bounded pieces
                carry, ids = self._encode_stable(carry + text[start : start + STREAM_PIECE * 16])
                yield from ids
        carry += "".join(pending)
        if carry:
            yield from self.encode(carry)

    def _encode_stable(self, buf: str) -> tuple[str, list[int]]:
        """Encode the part of ``buf`` that no continuation can change; return (rest, its ids).

        Specials starting before ``limit`` are complete (any longer special starting there would fit in buf).
        In the text after the last such special, a pre-token's match depends on at most the first character of
        the pre-token two places later, so pre-tokens whose successor-of-successor starts before ``limit`` are
        final. We keep one more for margin.
        """
        limit = len(buf) - max(self._max_special - 1, 0)
        out: list[int] = []
        base = 0
        if self._specials is not None:
            for m in self._specials.finditer(buf):
                if m.start() >= limit:
                    break
                if m.start() > base:
                    out += self._encode_plain(buf[base : m.start()])
                out.append(self.special_to_id[m.group()])
                base = m.end()
        if self._coarse is not None:
            cut = self._last_safe_space(buf, base, limit)
            if cut > base:
                out += self._encode_plain(buf[base:cut])
                return buf[cut:], out
        starts: list[int] = []
        toks: list[str] = []
        for m in self._pat.finditer(buf, base):
            if m.start() >= limit:
                break
            starts.append(m.start())
            toks.append(m.group())
        keep = len(starts) - 3  # the last three pre-tokens before limit stay in the buffer
        if keep > 0:
            out += self._encode_pretokens(toks[:keep])
            return buf[starts[keep] :], out
        return buf[base:], out

    @staticmethod
    def _last_safe_space(buf: str, lo: int, hi: int) -> int:
        """The last index ``i`` in ``(lo, hi)`` of a space between two non-space characters, or -1.

        Cutting the text just before such a space changes no GPT-2 pre-token, whatever follows the buffer: the
        pre-token ending before it is a non-space run, and " <next>" starts a new pre-token. (``str.isspace``
        is a superset of the regex's ``\\s``, so this errs towards not cutting.)
        """
        i = hi
        while True:
            i = buf.rfind(" ", lo + 1, i)
            if i < 0:
                return -1
            if i + 1 < len(buf) and not buf[i - 1].isspace() and not buf[i + 1].isspace():
                return i

    # ------------------------------------------------------------------------------------------ decode

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The raw bytes of ``ids`` (raises a clear error on an unknown id)."""
        table = self._id_bytes
        try:
            return b"".join([table[i] for i in ids])
        except (IndexError, TypeError):
            bad = [i for i in ids if not (isinstance(i, int) and 0 <= i < len(table) and i in self.vocab)]
            raise ValueError(f"unknown token id(s) {bad[:5]} (vocab has {len(self.vocab)} ids)") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; malformed UTF-8 (e.g. an id sequence that splits a character) becomes U+FFFD."""
        return self.decode_bytes(list(ids)).decode("utf-8", errors="replace")
