"""OpenAI CLIP's real tokenizer, offline: the 49,408-token BPE from the merges shipped in genaug.

Every OpenAI CLIP model (ViT-B/32, ViT-L/14) and Stable Diffusion 1.x's ``tokenizer`` folder
use one vocabulary: the 256 byte symbols, the same 256 with the end-of-word marker
``</w>``, one token per merge of the first 48,894 merges of ``bpe_simple_vocab_16e6.txt``,
then ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407). The merges file ships in
``genaug/rehearsal/bpe/`` (MIT, from the ``open_clip_torch`` wheel); :func:`write_clip_vocab`
converts it to the ``vocab.json`` + ``merges.txt`` pair that ``transformers.CLIPTokenizer``
reads, so "a photo of a cat" becomes [49406, 320, 1125, 539, 320, 2368, 49407] exactly as
with the hub's files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from importlib.resources import files
from pathlib import Path

from genaug.home import cache_dir
from genaug.pocket.tokenizer import BOS, EOS, bytes_to_unicode

#: sha256 of the shipped merges file (that of the open_clip_torch 3.3.0 wheel).
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
#: Merges CLIP uses: 49,152 - 256 - 2 (the vocabulary is 49,408 = 2 x 256 + merges + 2 specials).
CLIP_MERGES = 49152 - 256 - 2
CLIP_VOCAB_SIZE = 49408
#: OpenAI CLIP's context length (the text towers' position count; SD 1.x's prompt length).
CLIP_MAX_LENGTH = 77


def bpe_path() -> Path:
    """The shipped ``bpe_simple_vocab_16e6.txt.gz``."""
    return Path(str(files("genaug.rehearsal") / "bpe" / "bpe_simple_vocab_16e6.txt.gz"))


def clip_merges() -> list[tuple[str, str]]:
    """CLIP's 48,894 merges, in rank order, from the shipped file (checked against its hash)."""
    raw = bpe_path().read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != BPE_SHA256:
        raise ValueError(f"{bpe_path()} has sha256 {digest}, expected {BPE_SHA256}: the shipped merges were altered")
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    return [tuple(line.split()) for line in lines[1 : CLIP_MERGES + 1]]


def write_clip_vocab(out_dir: str | Path) -> Path:
    """Write CLIP's ``vocab.json`` and ``merges.txt`` (the hub's format) to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    merges = clip_merges()
    byte_symbols = list(bytes_to_unicode().values())
    tokens = byte_symbols + [symbol + "</w>" for symbol in byte_symbols] + ["".join(pair) for pair in merges] + [BOS, EOS]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ValueError(f"CLIP's vocabulary built to {len(vocab)} tokens, expected {CLIP_VOCAB_SIZE}")
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_text = "\n".join(["#version: 0.2"] + [f"{a} {b}" for a, b in merges]) + "\n"
    (out_dir / "merges.txt").write_text(merges_text, encoding="utf-8")
    return out_dir


def clip_tokenizer(model_max_length: int = CLIP_MAX_LENGTH):
    """OpenAI CLIP's tokenizer (``transformers.CLIPTokenizer``), built once into GENAUG_HOME.

    Padding uses ``<|endoftext|>``, as the hub's ``openai/clip-vit-*`` and SD 1.5's
    ``tokenizer`` folders configure it.
    """
    from transformers import CLIPTokenizer

    folder = cache_dir("rehearsal", f"clip-tokenizer-{BPE_SHA256[:12]}")
    if not (folder / "merges.txt").is_file():
        write_clip_vocab(folder)
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=model_max_length, pad_token=EOS)
