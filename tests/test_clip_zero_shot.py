"""``clip_zero_shot``: Real-Guidance's official CLIP selection (softmax over the class
prompts, keep p > 1/K; optionally exactly n per class) - the math and the filter stage."""

from __future__ import annotations

import numpy as np
import torch

from genaug.clip import Clip
from genaug.config import FilterConfig
from genaug.filtering import filter_set
from genaug.filtering.zero_shot import class_probability, zero_shot_keep
from genaug.manifest import SampleRecord, SetWriter, read_manifest

from test_sdi_helpers import digits, tiny_models


def test_class_probability_is_the_softmax_over_the_class_prompts():
    text = np.eye(3, dtype=np.float32)
    image = np.array([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0]], dtype=np.float32)
    p = class_probability(image, text, [0, 2], logit_scale=10.0)
    cos0 = np.array([1.0, 0.0, 0.0]) * 10
    cos1 = np.array([1, 1, 0]) / np.sqrt(2) * 10
    expected = [np.exp(cos0[0]) / np.exp(cos0).sum(), np.exp(cos1[2]) / np.exp(cos1).sum()]
    np.testing.assert_allclose(p, expected, rtol=1e-6)


def test_keep_above_chance_strictly():
    p = np.array([0.5, 0.25, 0.2500001, 0.9, 0.1])
    labels = np.array([0, 0, 1, 1, 1])
    assert zero_shot_keep(p, labels, 4).tolist() == [True, False, True, True, False]  # p > 1/4
    candidates = np.array([True, True, True, False, True])
    assert zero_shot_keep(p, labels, 4, candidates=candidates).tolist() == [True, False, True, False, False]


def test_per_class_tops_up_with_the_most_confident_or_samples_among_the_passing():
    p = np.array([0.9, 0.1, 0.05, 0.8, 0.7, 0.6, 0.95])
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    keep = zero_shot_keep(p, labels, 2, per_class=2, seed=0)
    assert keep[:3].tolist() == [True, True, False]  # one passes: the two most confident
    assert keep[3:].sum() == 2  # four pass: two drawn among them
    draws = {tuple(zero_shot_keep(p, labels, 2, per_class=2, seed=s)[3:]) for s in range(30)}
    assert len(draws) > 2 and tuple(zero_shot_keep(p, labels, 2, per_class=2, seed=3)) == tuple(zero_shot_keep(p, labels, 2, per_class=2, seed=3))


def test_the_filter_stage_scores_and_keeps_above_one_over_k(tmp_path):
    torch.set_num_threads(1)
    clip = Clip.from_pretrained(str(tiny_models()["clip"]))
    images = digits(4, pool="pretrain", classes=3)
    with SetWriter(tmp_path) as writer:
        for i in range(len(images.labels)):
            name = images.class_names[images.labels[i]]
            writer.add(SampleRecord(id=f"img-{i:02d}", path=writer.image_path(f"img-{i:02d}", name), label=int(images.labels[i]),
                                    class_name=name, method="real_guidance"), images.images[i])
    config = FilterConfig(set_dir=tmp_path, filters=[{"name": "clip_zero_shot"}], clip=str(tiny_models()["clip"]),
                          progress=False, dataset={"name": "pocket_digits"})
    report = filter_set(config, clip=clip)
    records = read_manifest(tmp_path)
    p = np.array([r.scores["clip_zero_shot"] for r in records])
    assert ((p > 0) & (p < 1)).all()
    assert [r.kept for r in records] == (p > 1 / 3).tolist()
    assert report.kept == int((p > 1 / 3).sum())
