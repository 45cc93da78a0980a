from __future__ import annotations

import pytest

from lmfs.paths import has_shared_data, shared_data


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    if not has_shared_data("tokenizers", "gpt2_encoder.json"):
        pytest.skip("needs ../shared/data/tokenizers")
    from lmfs.tokenizer.formats import load_gpt2

    return load_gpt2(
        shared_data("tokenizers", "gpt2_encoder.json"), shared_data("tokenizers", "gpt2_vocab.bpe")
    )


@pytest.fixture(scope="session")
def corpus_en() -> str:
    if not has_shared_data("text", "corpus.en"):
        pytest.skip("needs ../shared/data/text/corpus.en")
    return shared_data("text", "corpus.en").read_text(encoding="utf-8")

