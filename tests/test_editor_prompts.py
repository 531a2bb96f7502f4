"""Prompt encoding of the editors: one text-encoder call per batch, each text's own states."""

import pytest
import torch

from genaug.config import EditorConfig
from genaug.generation.editors import create_editor
from genaug.generation.items import WorkItem
from genaug.pocket.store import SHIPPED_DIR, is_complete

pytestmark = pytest.mark.skipif(not is_complete(SHIPPED_DIR), reason="no shipped pocket weights")


@pytest.fixture(scope="module")
def editor():
    return create_editor(EditorConfig(name="txt2img"), device="cpu", dtype="fp32")


def test_a_batch_of_texts_is_encoded_in_one_call_with_each_text_in_its_row(editor):
    calls = []
    handle = editor.pipeline.text_encoder.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    try:
        texts = ["a photo of the digit two, red on blue", "a photo of the digit one, white on black", "a photo of the digit two, red on blue"]
        states = editor.text_embeddings(texts)
    finally:
        handle.remove()
    assert calls == [2]  # one call, the two distinct texts
    assert states.shape[0] == 3 and torch.equal(states[0], states[2])
    for text, row in zip(texts, states):
        alone = editor.text_embeddings([text])[0]
        torch.testing.assert_close(row, alone, atol=1e-6, rtol=0)


def test_prompt_embeddings_split_positives_and_negatives(editor):
    items = [WorkItem(id=f"i{k}", seed=k, label=k, class_name=str(k), prompt=f"a photo of the digit {name}")
             for k, name in enumerate(["zero", "one"])]
    positive, negative = editor.prompt_embeddings(items)
    assert positive.shape[0] == negative.shape[0] == 2
    torch.testing.assert_close(positive[1], editor.text_embeddings(["a photo of the digit one"])[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(negative, editor.text_embeddings(["", ""]), atol=1e-6, rtol=0)
