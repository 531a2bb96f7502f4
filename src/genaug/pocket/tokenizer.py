"""Pocket CLIP's tokenizer: a CLIP byte-level BPE vocabulary that genaug writes itself.

The files are exactly OpenAI CLIP's format (``vocab.json`` + ``merges.txt``; the 256
byte symbols, the same 256 with the end-of-word marker ``</w>``, one token per merge,
then ``<|startoftext|>`` and ``<|endoftext|>``), so ``CLIPTokenizer`` and
``CLIPTokenizerFast`` load them unchanged. The merges are learnt by simulating BPE over a
small corpus (every caption, instruction and prompt the pocket world and the methods use):
pairs are merged most-frequent first until every corpus word is a single token. Any other
word still tokenizes, into a few sub-word or byte tokens.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from functools import lru_cache
from pathlib import Path

import regex

from genaug.pocket.captions import all_caption_texts
from genaug.pocket.render import COLOR_NAMES, DIGIT_NAMES

#: Longest token sequence (with start and end tokens) the pocket text encoder reads.
MODEL_MAX_LENGTH = 24
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
#: CLIP's pre-tokenizer (the one in ``CLIPTokenizer``), so the simulated BPE sees the same words.
_PRETOKENIZE = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)

#: Prompts that later stages send to the text encoder verbatim (docs/methods/diffusemix.md, 3, 5).
METHOD_PROMPTS: tuple[str, ...] = (
    "a high quality photo of a class.",
    "monochrome, lowres, bad anatomy, worst quality, low quality",
    "Autumn",
    "snowy",
    "watercolor art",
    "sunset",
    "rainbow",
    "aurora",
    "mosaic",
    "ukiyo-e",
    "a sketch with crayon",
    "a photo of a {}",
    "a photo of the {}",
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible map from bytes to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def pocket_corpus() -> list[str]:
    """Every text the pocket world trains on or that a method sends verbatim."""
    texts = list(all_caption_texts())
    for prompt in METHOD_PROMPTS:
        if "{}" in prompt:
            texts += [prompt.format(name) for name in DIGIT_NAMES]
        else:
            texts.append(prompt)
    texts += [f"a photo of a {name}" for name in DIGIT_NAMES + COLOR_NAMES]
    return texts


def _words(text: str) -> list[str]:
    """CLIP's text normalisation (whitespace collapse, lower case) then its pre-tokenizer."""
    text = " ".join(text.split()).lower()
    return _PRETOKENIZE.findall(text)


def learn_merges(texts: list[str]) -> list[tuple[str, str]]:
    """Simulate BPE: merge the most frequent adjacent pair until every word is one symbol.

    Words are byte-level symbol sequences whose last symbol carries ``</w>``, as in CLIP.
    Ties are broken by the pair itself, so the result is deterministic.
    """
    byte_map = bytes_to_unicode()
    counts = Counter(w for text in texts for w in _words(text))
    words: dict[tuple[str, ...], int] = {}
    for word, n in counts.items():
        symbols = [byte_map[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        words[tuple(symbols)] = words.get(tuple(symbols), 0) + n
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter = Counter()
        for symbols, n in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += n
        if not pairs:
            return merges
        best = max(pairs.items(), key=lambda item: (item[1], item[0]))[0]
        merges.append(best)
        merged = best[0] + best[1]
        new_words: dict[tuple[str, ...], int] = {}
        for symbols, n in words.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + n
        words = new_words


def write_tokenizer_files(out_dir: str | Path, texts: list[str] | None = None) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` (CLIP format) learnt from ``texts``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    merges = learn_merges(pocket_corpus() if texts is None else texts)
    byte_symbols = list(bytes_to_unicode().values())
    vocab_list = byte_symbols + [s + "</w>" for s in byte_symbols]
    vocab_list += ["".join(pair) for pair in merges]
    vocab_list += [BOS, EOS]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2 - genaug pocket CLIP merges"] + [f"{a} {b}" for a, b in merges]
    (out_dir / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_dir


def build_tokenizer(out_dir: str | Path):
    """Write the vocabulary to ``out_dir`` and return a ``CLIPTokenizer`` loaded from it."""
    from transformers import CLIPTokenizer

    write_tokenizer_files(out_dir)
    # transformers 5: CLIPTokenizer is the tokenizers-backed class; it reads vocab.json + merges.txt.
    return CLIPTokenizer.from_pretrained(str(out_dir), model_max_length=MODEL_MAX_LENGTH, pad_token=EOS)


@lru_cache(maxsize=1)
def cached_tokenizer():
    """The pocket tokenizer, built once per process in a temporary folder."""
    return build_tokenizer(tempfile.mkdtemp(prefix="genaug-pocket-tok-"))


def check_no_truncation(tokenizer, texts: list[str] | None = None) -> int:
    """Raise if any corpus text needs more than ``model_max_length`` tokens; return the longest."""
    texts = pocket_corpus() if texts is None else texts
    longest = 0
    for text in texts:
        n = len(tokenizer(text, truncation=False)["input_ids"])
        longest = max(longest, n)
        if n > tokenizer.model_max_length:
            raise ValueError(f"{text!r} needs {n} tokens > model_max_length {tokenizer.model_max_length}")
    return longest
