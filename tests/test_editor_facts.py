"""Editors state their own facts; no module outside ``generation/editors/`` tests an editor's name.

1. An ``ast`` scan of every module of the package outside ``genaug/generation/editors/``
   finds no comparison of an editor-ish value with a string equal to a registered editor
   name (``==``, ``!=``, ``in``/``not in`` a literal collection, ``match``/``case``), and no
   name table (a dict literal keyed by editor names). The scan is shown to fail on a
   snippet that holds each kind of violation, and to pass unrelated strings.
2. A toy img2img-style editor written from docs/adding-a-method.md alone (a class with the
   facts that page lists, registered with ``@EDITORS.register(name)``) gets the cost estimate the
   method defines: ``steps x mean(strengths)`` UNet calls on 2 latents (classifier-free
   guidance), a VAE encode of the source and a decode, for ``per_image`` items per image.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import genaug
from genaug.generation.editors import EDITORS

PACKAGE = Path(genaug.__file__).parent
EDITORS_DIR = PACKAGE / "generation" / "editors"
#: Identifiers that make an operand "about an editor": an editor config or class, its name or
#: manifest method, the frontier's generator.
EDITOR_WORDS = ("editor", "generator", "method")


def _about_editor(node: ast.AST) -> bool:
    """An operand that holds an editor's name: ``editor.name``, ``config.editor.name``,
    ``generator``, ``record.method``, ``cls.name``, a variable ``name``..."""
    text = ast.unparse(node).lower()
    if any(word in text for word in EDITOR_WORDS):
        return True
    return isinstance(node, (ast.Name, ast.Attribute)) and text.rsplit(".", 1)[-1] == "name"


def _constants(node: ast.AST) -> list[str]:
    """The string constants of a literal (a constant, or a tuple / list / set of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [element.value for element in node.elts if isinstance(element, ast.Constant) and isinstance(element.value, str)]
    return []


def editor_name_tests(source: str, names: set[str], filename: str = "<snippet>") -> list[str]:
    """``file:line: code`` of every place in ``source`` that tests an editor's name against a literal."""
    found = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        hits = False
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for left, op, right in zip(operands, node.ops, operands[1:]):
                if not isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn, ast.Is, ast.IsNot)):
                    continue
                for literal, other in ((left, right), (right, left)):
                    if names & set(_constants(literal)) and _about_editor(other):
                        hits = True
        elif isinstance(node, ast.Dict):
            # a table keyed by editor names, or mapping other things to them ({"pocket:sd": "txt2img"});
            # a config's {"name": "instruct"} names an editor, it tests nothing
            hits = any(key is not None and names & set(_constants(key)) for key in node.keys) or any(
                key is not None and _constants(key) and not any(word in _constants(key)[0] for word in (*EDITOR_WORDS, "name"))
                and names & set(_constants(value))
                for key, value in zip(node.keys, node.values)
            )
        elif isinstance(node, ast.Match):
            hits = _about_editor(node.subject) and any(
                isinstance(case.pattern, ast.MatchValue) and names & set(_constants(case.pattern.value)) for case in node.cases
            )
        if hits:
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node)[:120]}")
    return found


def test_no_module_outside_the_editors_tests_an_editor_name():
    names = set(EDITORS.names())
    assert {"instruct", "img2img", "txt2img", "dafusion", "diffmix", "real_guidance"} <= names
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if EDITORS_DIR in path.parents:
            continue
        found += editor_name_tests(path.read_text(encoding="utf-8"), names, str(path.relative_to(PACKAGE)))
    assert not found, "editor facts belong on the editor's class:\n" + "\n".join(found)


def test_the_name_scan_finds_each_kind_of_violation_and_nothing_else():
    names = set(EDITORS.names())
    violations = '''
if editor.name == "img2img":
    pass
steps = 3 if config.editor.name != "instruct" else 2
ok = generator in ("txt2img", "instruct")
LABELS = {"instruct": "Edited", "concat": "Concatenated"}
if "diffmix" == record.method:
    pass
match editor.name:
    case "dafusion":
        pass
POCKET = {"pocket:sd": "txt2img"}
'''
    found = editor_name_tests(violations, names)
    assert sorted(int(line.split(":")[1]) for line in found) == [2, 4, 5, 6, 7, 9, 12], found
    clean = '''
if node.kind == "generate" and record.method == "shb":
    pass
if generator == "sdi":
    pass
ADAPTER = "diffmix"
default = {"name": "instruct", "steps": 10}
title = "instruct" + suffix
if prompt == "img2img":
    pass
'''
    assert editor_name_tests(clean, names) == []


# ---------------------------------------------------------------------------- a new editor's cost estimate


@pytest.fixture
def toy_editor():
    """A new img2img-style method, as docs/adding-a-method.md tells a contributor to write it:
    a module's class with its facts and ``@EDITORS.register(name)``, ``Options`` for its parameters,
    ``items_per_image`` and ``step_strengths`` for its plan."""
    from genaug.config import StrictModel
    from genaug.generation.editors.img2img import Img2ImgEditor

    class ToyOptions(StrictModel):
        per_image: int = 3
        strengths: list[float] = [0.2, 0.6]

    @EDITORS.register("toy_sdedit")
    class ToyEditor(Img2ImgEditor):
        default_model = "pocket:sd"
        report_label = "Toy edits"
        Options = ToyOptions

        @classmethod
        def items_per_image(cls, config) -> float:
            return float(cls.check_options(config.options).per_image)

        @classmethod
        def step_strengths(cls, config) -> list[float]:
            return list(cls.check_options(config.options).strengths)

    yield ToyEditor
    EDITORS.unregister("toy_sdedit")


def _experiment(tmp_path: Path, editor: dict, guidance: float | None = None):
    import yaml

    from genaug.experiment import load_experiment

    if guidance is not None:
        editor = {**editor, "guidance_scale": guidance}
    data = {
        "name": "toy",
        "dataset": {"name": "pocket_digits", "labels_per_class": 10},
        "seeds": [0],
        "train": {"recipe": "pocket", "epochs": 2},
        "stages": {"edits": {"kind": "generate", "editor": editor}},
        "arms": [{"name": "baseline"}, {"name": "edits", "data": "edits"}],
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_experiment(path)


def test_a_new_img2img_style_editor_gets_its_cost_from_its_own_facts(tmp_path, toy_editor):
    from genaug.rehearsal import cost

    experiment = _experiment(tmp_path, {"name": "toy_sdedit", "steps": 20})
    estimate = cost.estimate_experiment(experiment)
    row = next(row for row in estimate["rows"] if row["stage"] == "edits")
    n = estimate["dataset"]["train"]
    model = "pocket:sd"
    size = cost.native_size(model)  # the pocket model's own unet.sample_size x VAE scale (16 px)
    latent = size // cost.vae_scale(model)
    assert (size, latent) == (16, 8)
    steps = 20 * (0.2 + 0.6) / 2  # steps x the strengths' mean: 8 steps run per item
    expected = steps * cost.unet_flops(model, latent, 2) + cost.vae_flops(model, size, False) + cost.vae_flops(model, size, True)
    assert toy_editor.method == "toy_sdedit"  # its name, without stating it again
    assert row["items"] == 3 * n
    assert row["flops_per_item"] == pytest.approx(expected)
    assert "8 steps x UNet on 2 latents" in row["what"]
    # the same editor unguided (scale 1): one UNet row per step
    unguided = cost.estimate_experiment(_experiment(tmp_path, {"name": "toy_sdedit", "steps": 20}, guidance=1.0))
    row1 = next(row for row in unguided["rows"] if row["stage"] == "edits")
    assert row1["flops_per_item"] == pytest.approx(expected - steps * (cost.unet_flops(model, latent, 2) - cost.unet_flops(model, latent, 1)))
    # the rehearsal's real step count reads the same fact
    from genaug.rehearsal.run import editor_steps

    from genaug.config import EditorConfig

    assert editor_steps(EditorConfig(**experiment.stages["edits"].params["editor"])) == steps


def test_the_built_in_editors_state_the_facts_cost_estimates_read():
    from genaug.config import EditorConfig

    instruct, img2img, txt2img = EDITORS["instruct"], EDITORS["img2img"], EDITORS["txt2img"]
    assert instruct.branches(EditorConfig(name="instruct")) == 3 and instruct.configured_guidance(EditorConfig(name="instruct")) == 4.0
    assert img2img.branches(EditorConfig(name="img2img")) == 2 and img2img.branches(EditorConfig(name="img2img", guidance_scale=1.0)) == 1
    assert img2img.steps_run(EditorConfig(name="img2img", steps=30, strength=0.4)) == pytest.approx(12.0)
    assert txt2img.steps_run(EditorConfig(name="txt2img", steps=30)) == 30.0 and not txt2img.needs_source
    assert (instruct.unet_inputs, img2img.unet_inputs) == ("latent+image", "latent")
    assert instruct.prompts_for(EditorConfig(name="instruct")) == "pocket"
    assert instruct.prompts_for(EditorConfig(name="instruct", model="timbrooks/instruct-pix2pix")) == "diffusemix"
    assert txt2img.prompts_for(EditorConfig(name="txt2img", model="/some/sd")) == "class_template"
    assert (instruct.report_label, img2img.report_label, txt2img.report_label) == ("Edited", "Edited", "Generated")
    # the manifest's method is the registered name (a subclass registered again gets its own)
    assert [EDITORS[name].method for name in EDITORS.names()] == EDITORS.names()
    assert instruct.preset_key_for(None) == "instruct/pocket:ip2p"
    # a preset sets the steps a cost estimate counts
    from genaug.generation.presets import sampling_preset

    fast = sampling_preset("instruct/pocket:ip2p", "fast")["num_inference_steps"]
    assert instruct.configured_steps(EditorConfig(name="instruct", preset="fast")) == fast
