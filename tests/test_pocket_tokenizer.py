"""Pocket CLIP's tokenizer: CLIP's BPE format, loaded by both tokenizer classes, nothing truncated."""

import json

import pytest
from transformers import CLIPTokenizer, CLIPTokenizerFast

from genaug.pocket.captions import all_caption_texts
from genaug.pocket.tokenizer import (
    BOS,
    EOS,
    METHOD_PROMPTS,
    MODEL_MAX_LENGTH,
    build_tokenizer,
    bytes_to_unicode,
    check_no_truncation,
    learn_merges,
    pocket_corpus,
)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    build_tokenizer(path).save_pretrained(path)
    return path


def test_files_are_clip_bpe_format(tok_dir):
    vocab = json.loads((tok_dir / "vocab.json").read_text(encoding="utf-8"))
    symbols = list(bytes_to_unicode().values())
    assert [vocab[s] for s in symbols] == list(range(256))
    assert [vocab[s + "</w>"] for s in symbols] == list(range(256, 512))
    assert vocab[BOS] == len(vocab) - 2 and vocab[EOS] == len(vocab) - 1
    merges = (tok_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version")
    assert len(merges) - 1 == len(vocab) - 514


@pytest.mark.parametrize("cls", [CLIPTokenizer, CLIPTokenizerFast])
def test_loads_with_both_tokenizer_classes_and_round_trips(tok_dir, cls):
    tok = cls.from_pretrained(tok_dir)
    assert tok.model_max_length == MODEL_MAX_LENGTH
    text = "a photo of the digit seven, red on blue"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert _decode(tok, ids) == text
    # unknown words still tokenize (into sub-word / byte tokens) and round trip
    odd = "zebra quokka xylophone, ukiyo-e"
    assert len(tok.tokenize("zebra")) > 1
    assert _decode(tok, tok(odd)["input_ids"]) == odd


def _decode(tok, ids):
    # CLIP's decoder puts a space after every word, also before punctuation (as OpenAI's does)
    return tok.decode(ids, skip_special_tokens=True).strip().replace(" ,", ",").replace(" - ", "-")


def test_every_caption_word_is_one_token(tok_dir):
    tok = CLIPTokenizer.from_pretrained(tok_dir)
    for text in all_caption_texts()[:: 7] + ["a high quality photo of a class."]:
        tokens = tok.tokenize(text)
        assert len(tokens) == len(text.replace(",", " ,").replace(".", " .").split()), (text, tokens)


def test_class_is_a_single_token_for_sdi(tok_dir):
    tok = CLIPTokenizer.from_pretrained(tok_dir)
    tokens = tok.convert_ids_to_tokens(tok("a high quality photo of a class.")["input_ids"])
    assert tokens.count("class</w>") == 1


def test_no_corpus_text_is_truncated(tok_dir):
    tok = CLIPTokenizer.from_pretrained(tok_dir)
    assert check_no_truncation(tok) <= MODEL_MAX_LENGTH
    for prompt in METHOD_PROMPTS:
        assert len(tok(prompt.format("seven"))["input_ids"]) <= MODEL_MAX_LENGTH
    assert len(pocket_corpus()) > 700


def test_learn_merges_makes_every_word_one_symbol():
    merges = learn_merges(["low lower lowest", "new newer"])
    merged = {a + b for a, b in merges}
    for word in ["low", "lower", "lowest", "new", "newer"]:
        assert word + "</w>" in merged
