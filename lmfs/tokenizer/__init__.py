"""Byte-level BPE: training (:mod:`.train`), the :class:`Tokenizer`, file formats (:mod:`.formats`), whole-file
tokenization to token arrays (:mod:`.encode_file`). Pre-tokenization and chunking live in :mod:`.pretokenize`."""

from lmfs.tokenizer.pretokenize import CL100K_PATTERN, GPT2_PATTERN
from lmfs.tokenizer.tokenizer import Tokenizer
from lmfs.tokenizer.train import TrainStats, train_bpe

__all__ = ["CL100K_PATTERN", "GPT2_PATTERN", "Tokenizer", "TrainStats", "train_bpe"]
