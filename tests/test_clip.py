"""genaug.clip over a tiny random pocket CLIP: normalisation, batching, patch similarity."""

import numpy as np
import pytest
import torch

from genaug.clip import Clip, patch_starts
from genaug.pocket.render import styled_digits
from genaug.pocket.tiny import make_tiny_pocket


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    paths = make_tiny_pocket(tmp_path_factory.mktemp("tinyclip"))
    return Clip.from_pretrained(paths["clip"])


def test_embeddings_are_l2_normalised(clip):
    images = styled_digits(np.arange(5))[0]
    img = clip.image_embeds(images)
    txt = clip.text_embeds(["a photo of a seven", "a red digit"])
    assert img.shape == (5, clip.embed_dim) and txt.shape == (2, clip.embed_dim)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(txt.norm(dim=-1), torch.ones(2))
    raw = clip.image_embeds(images, normalize=False)
    torch.testing.assert_close(torch.nn.functional.normalize(raw, dim=-1), img)


def test_image_embeds_equal_clipmodel_output(clip):
    images = styled_digits(np.arange(4))[0]
    inputs = clip.processor(text=["a photo of a one"], images=list(images), return_tensors="pt", padding=True)
    with torch.no_grad():
        out = clip.model(**inputs)
    torch.testing.assert_close(clip.image_embeds(images), out.image_embeds, atol=1e-5, rtol=1e-5)


def test_batched_equals_one_at_a_time(clip):
    images = styled_digits(np.arange(7))[0]
    batched = clip.image_embeds(images, batch_size=3)
    single = torch.cat([clip.image_embeds(im) for im in images])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    texts = ["a photo of the digit one", "snowy", "a high quality photo of a class."]
    torch.testing.assert_close(clip.text_embeds(texts, batch_size=2), torch.cat([clip.text_embeds([t]) for t in texts]), atol=1e-5, rtol=1e-5)


def test_patch_starts():
    assert patch_starts(16, 8, 4) == [0, 4, 8]
    assert patch_starts(32, 32, 16) == [0]
    assert patch_starts(10, 4, 4) == [0, 6]  # (10-4)//4+1 = 2 patches; the last one moved to end at the edge
    assert patch_starts(8, 16, 8) == [0]


def test_patch_similarity_matches_cropping_by_hand(clip):
    images = styled_digits(np.arange(3))[0]
    prompts = ["a photo of a zero", "a photo of a one", "a photo of a two"]
    sim = clip.patch_similarity(images, prompts, patch_size=8, stride=4)
    assert sim.shape == (3, 3, 3)
    text = clip.text_embeds(prompts)
    by_hand = torch.stack([
        torch.stack([clip.image_embeds(images[i, r : r + 8, c : c + 8])[0] @ text[i] for c in (0, 4, 8)])
        for i in range(3) for r in (0, 4, 8)
    ]).view(3, 3, 3)
    torch.testing.assert_close(sim, by_hand, atol=1e-5, rtol=1e-5)
