"""What generation needs from a training run besides the model: its tokenizer and the end-of-text id.

The model itself comes from :func:`lmfs.train.checkpoint.load_model` (the train unit owns its checkpoints);
``lmfs generate`` puts the two together.
"""

from __future__ import annotations

import os
from typing import Any

EOT = "<|endoftext|>"


def load_run_tokenizer(cfg: dict[str, Any], override: str | os.PathLike | None = None) -> Any:
    """The tokenizer of a run: ``override`` if given, else the folder recorded as ``tokenizer`` in its config."""
    from lmfs.tokenizer.formats import load_tokenizer

    folder = override or cfg.get("tokenizer")
    if not folder:
        raise FileNotFoundError(
            "this run records no tokenizer; pass --tokenizer FOLDER (the folder with vocab.json and merges.txt)"
        )
    return load_tokenizer(folder)


def eot_id(tokenizer: Any) -> int | None:
    """The id of ``<|endoftext|>`` in ``tokenizer``, or None."""
    specials = getattr(tokenizer, "special_to_id", None)
    if isinstance(specials, dict) and EOT in specials:
        return int(specials[EOT])
    return None
