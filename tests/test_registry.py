"""The one registry idiom and the contracts every registered name must keep.

Tests here are parametrized over each registry's names, so a newly registered method,
stage, mixer, filter, policy, schedule or sampler is checked without a test of its own.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import Field

from genaug.config import ConfigError, StrictModel, parse_config
from genaug.experiment.config import load_experiment
from genaug.registry import STAGES, Registry

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


# ---------------------------------------------------------------------------- the idiom


class _Params(StrictModel):
    alpha: float = Field(default=1.0, ge=0.0)


def _registry() -> Registry:
    reg = Registry("widget", key="widget")

    @reg.register("spinner", params=_Params, heavy=True)
    def spinner(alpha: float = 1.0) -> tuple[str, float]:
        return ("spinner", alpha)

    @reg.register("wheel")
    class Wheel:
        spokes = 12

    return reg


def test_register_names_get_create_and_metadata():
    reg = _registry()
    assert reg.names() == ["spinner", "wheel"] and reg.names("sp*") == ["spinner"]
    assert "spinner" in reg and "nope" not in reg and len(reg) == 2
    assert reg.create("spinner", alpha=0.5) == ("spinner", 0.5)
    assert reg.create("spinner") == ("spinner", 1.0)
    assert reg.spec("spinner").metadata == {"heavy": True} and reg.spec("spinner").heavy is True
    # a registered class learns its name; its attributes are the entry's facts
    assert reg.get("wheel").name == "wheel" and reg.spec("wheel").spokes == 12
    with pytest.raises(AttributeError):
        reg.spec("spinner").spokes
    with pytest.raises(ValueError, match="widget 'spinner' is already registered"):
        reg.register("spinner")(print)
    with pytest.raises(TypeError):  # one idiom: the decorator, not an object or a "module:attr" path
        reg.register("lazy", "os.path:join")


def test_unknown_names_and_parameters_are_one_line_naming_the_key_and_the_allowed_values():
    reg = _registry()
    with pytest.raises(ConfigError) as error:
        reg.validate("spiner", {})
    assert str(error.value) == "widget: unknown widget 'spiner'; did you mean 'spinner'? (allowed: spinner, wheel)"
    with pytest.raises(ConfigError) as error:
        reg.validate("spinner", {"alhpa": 2})
    assert str(error.value) == "widget 'spinner': widget_kwargs.alhpa: unknown key 'alhpa'; did you mean 'alpha'? (allowed: alpha)"
    assert [p.path for p in error.value.problems] == ["widget_kwargs.alhpa"]
    with pytest.raises(ConfigError, match=r"widget_kwargs.alpha: Input should be greater than or equal to 0"):
        reg.create("spinner", alpha=-1)
    assert reg.validate("spinner", {"alpha": 3}).alpha == 3.0
    assert reg.validate("wheel", {"anything": 1}) == {"anything": 1}  # no params model: not checked


# ---------------------------------------------------------------------------- every registry


def _registries() -> list[tuple[str, str]]:
    """(module, attribute) of every module-level ``NAME = Registry(...)`` in the package, found
    in the source (a new registry is covered without an edit here)."""
    found = []
    for path in sorted((SRC / "genaug").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name)
                and node.value.func.id == "Registry"
            ):
                found += [(module, target.id) for target in node.targets if isinstance(target, ast.Name)]
    return found


REGISTRIES = _registries()


def _misspelt(name: str) -> str:
    """``name`` with its middle character doubled (``cutmix`` -> ``cutmmix``)."""
    middle = len(name) // 2
    return name[:middle] + name[middle] + name[middle:]


def test_the_registries_are_found():
    names = {attribute for _, attribute in REGISTRIES}
    assert {"STAGES", "MODELS", "DATASETS", "EDITORS", "SCHEDULERS", "PROMPT_PRESETS", "FILTERS", "MIXERS",
            "MIX_METHODS", "LOSSES", "LR_SCHEDULES", "POLICIES", "BLEND_SCHEDULES", "SAMPLERS"} <= names  # fmt: skip


@pytest.mark.parametrize(("module", "attribute"), REGISTRIES, ids=[attribute for _, attribute in REGISTRIES])
def test_every_registry_raises_one_config_error_with_the_close_match_for_a_misspelt_name(module, attribute):
    """Whichever lookup meets it (spec, get, validate, create, [] ), an unknown name is the
    registry's own one-line ConfigError naming its key, the close match and the allowed names."""
    import importlib

    registry = getattr(importlib.import_module(module), attribute)
    names = registry.names()
    assert names, f"{attribute} has no entries"
    for name in names:
        wrong = _misspelt(name)
        assert wrong not in registry
        expected = f"{registry.key}: unknown {registry.kind} '{wrong}'; did you mean '{name}'? (allowed: {', '.join(names)})"
        for lookup in (registry.spec, registry.get, registry.validate, registry.create, registry.__getitem__):
            with pytest.raises(ConfigError) as error:
                lookup(wrong)
            assert str(error.value) == expected, f"{attribute}.{lookup.__name__}"
            assert [problem.path for problem in error.value.problems] == [registry.key]
        with pytest.raises(ConfigError, match=r"^x\[2\]\.y: unknown "):
            registry.spec(wrong, key="x.2.y")


def test_the_public_builders_raise_the_registry_error_for_a_misspelt_name():
    """The functions that build a registered thing by name add no error of their own."""
    from genaug.config import EditorConfig
    from genaug.data.registry import dataset_spec
    from genaug.filtering.registry import create_filter
    from genaug.generation.prompts import resolve_prompts
    from genaug.mixing.mixers import create_mixer
    from genaug.models.registry import create_model
    from genaug.sdi.samplers import fit_sampler
    from genaug.training.losses import create_loss
    from genaug.training.policies import create_policy
    from genaug.training.schedules import blend_ratio, schedule_parameters

    calls = {
        "dataset 'cifar1000'; did you mean 'cifar100'": lambda: dataset_spec("cifar1000"),
        "filter 'framess'; did you mean 'frames'": lambda: create_filter({"name": "framess"}),
        "prompt preset 'diffusemixx'; did you mean 'diffusemix'": lambda: resolve_prompts("diffusemixx"),
        "mixer 'cutmixx'; did you mean 'cutmix'": lambda: create_mixer("cutmixx"),
        "model 'wrn28_22'; did you mean 'wrn28_2'": lambda: create_model("wrn28_22", num_classes=2),
        "sampler 'gausian'; did you mean 'gaussian'": lambda: fit_sampler([[0.0, 1.0]], "gausian"),
        "loss 'bce_softmx'; did you mean 'bce_softmax'": lambda: create_loss("bce_softmx"),
        "data policy 'concatt'; did you mean 'concat'": lambda: create_policy("concatt"),
        "rho schedule 'cosin'; did you mean 'cosine'": lambda: blend_ratio("cosin", 0, 1),
        "rho schedule 'warmupp'; did you mean 'warmup'": lambda: schedule_parameters("warmupp"),
        "editor 'instructt'; did you mean 'instruct'": lambda: parse_config(EditorConfig, {"name": "instructt"}),
    }
    for expected, call in calls.items():
        with pytest.raises(ConfigError, match=f"unknown {expected}"):
            call()


def test_registry_names_and_params_models_are_reachable_without_torch():
    """Every registry but the classifiers' lists its names and params models with no torch,
    torchvision, diffusers or transformers imported (config validation needs no more)."""
    pairs = [(module, attribute) for module, attribute in REGISTRIES if attribute != "MODELS"]
    code = (
        "import importlib, sys\n"
        f"for module, attribute in {pairs!r}:\n"
        "    registry = getattr(importlib.import_module(module), attribute)\n"
        "    for name in registry.names():\n"
        "        registry.spec(name).params\n"
        "        registry.validate(name, {}) if registry.spec(name).params is None or all(\n"
        "            not f.is_required() for f in registry.spec(name).params.model_fields.values()) else None\n"
        "print(','.join(sorted(m for m in ('torch', 'torchvision', 'diffusers', 'transformers') if m in sys.modules)))\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "", f"listing the registries imported {result.stdout.strip()}"


# ---------------------------------------------------------------------------- stages


STAGE_PARAMS = {  # the smallest valid file block of each built-in kind; a new kind is checked with {}
    "generate": {},
    "mix": {"methods": ["concat"]},
    "sdi": {},
    "filter": {},
}


@pytest.mark.parametrize("kind", STAGES.names())
def test_every_stage_kind_config_round_trips_and_its_runner_fields_are_its_own(kind, tmp_path):
    spec = STAGES.get(kind)
    for field in spec.runner_fields:
        assert field in spec.config.model_fields, f"{kind}: runner field {field} is not a config field"
    data = spec.fill(STAGE_PARAMS.get(kind, {}), {"name": "pocket_digits"}, tmp_path / "out", tmp_path / "in")
    config = parse_config(spec.config, data)
    again = parse_config(spec.config, config.model_dump(mode="json"))
    assert again == config
    assert isinstance(spec.folder_of(config, tmp_path / "out"), Path)
    if spec.sets is not None:
        assert spec.sets(config.model_dump()) == spec.sets(STAGE_PARAMS.get(kind, {}))
    if kind in STAGE_PARAMS or hasattr(config, "models"):  # the models the pre-run check resolves
        for key, reference, revision in config.models():
            assert key.split(".")[0] in spec.config.model_fields, f"{kind}: model key {key} is not a config field"
            assert isinstance(reference, str) and reference and (revision is None or isinstance(revision, str))


def test_a_registered_stage_kind_is_usable_in_an_experiment_file(tmp_path):
    """A new stage kind is one decorator: the experiment file, its graph and runner need no edit."""
    from genaug.experiment.graph import build_graph
    from genaug.experiment.stages import run_stage
    from genaug.registry import register_stage

    class CopyConfig(StrictModel):
        dataset: dict = {}
        output: Path
        repeat: int = 1
        model: str = "pocket:sd"

        def models(self):
            return [("model", self.model, None)]

    @register_stage("copy_test", config=CopyConfig)
    def run_copy(node, nodes):
        (node.dir / "manifest.jsonl").write_text("")
        return node.config.repeat, {"note": "copied"}

    try:
        path = tmp_path / "x.yaml"
        path.write_text(yaml.safe_dump({
            "name": "t", "dataset": {"name": "pocket_digits"}, "stages": {"c": {"kind": "copy_test", "repeat": 3}},
            "arms": [{"name": "baseline"}, {"name": "copied", "data": "c"}],
        }))  # fmt: skip
        experiment = load_experiment(path)
        nodes = build_graph(experiment, tmp_path / "artifacts", identity={})
        record = run_stage(nodes["c"], nodes)
        assert (record["made"], record["note"], record["sets"]) == (3, "copied", {"copy_test": "."})
        # its models are checked before anything runs, as the built-in kinds' are
        from genaug.experiment.checks import preflight

        assert preflight(experiment, [nodes["c"]], []).problems == []
        path.write_text(path.read_text().replace("repeat: 3", "repeat: 3\n    model: /nowhere/sd"))
        problems = preflight(load_experiment(path), [build_graph(load_experiment(path), tmp_path / "a2", identity={})["c"]], []).problems
        assert len(problems) == 1 and "stages.c.model" in problems[0] and "/nowhere/sd" in problems[0]
        with pytest.raises(ConfigError, match=r"stages.c.repaet: unknown key 'repaet'; did you mean 'repeat'"):
            load_experiment(path.write_text(path.read_text().replace("repeat", "repaet")) and path)
    finally:
        STAGES.unregister("copy_test")


# ---------------------------------------------------------------------------- acceptance: errors at load


def _experiment(tmp_path: Path, stages=None, arms=None) -> Path:
    data = {
        "name": "t",
        "dataset": {"name": "pocket_digits", "labels_per_class": 3},
        "train": {"recipe": "pocket"},
        "stages": stages or {"edits": {"kind": "generate", "prompts": ["make it red on blue"]}},
        "arms": arms or [{"name": "baseline"}],
    }
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("stages", "arms", "expected"),
    [
        (None, [{"name": "a", "mixer": "cutmx"}],
         "arms[0].mixer: unknown mixer 'cutmx'; did you mean 'cutmix'? (allowed: {mixers})"),
        (None, [{"name": "a", "mixer": "mixup", "mixer_kwargs": {"alhpa": 1}}],
         "arms[0].mixer_kwargs.alhpa: unknown key 'alhpa'; did you mean 'alpha'? (allowed: alpha)"),
        (None, [{"name": "a", "mixer": "fractal", "mixer_kwargs": {"bank": {"cont": 3}}}],
         "arms[0].mixer_kwargs.bank.cont: unknown key 'cont'; did you mean 'count'?"),
        (None, [{"name": "a", "mixer": "puzzlemix", "mixer_kwargs": {"mean": [0.5, 0.5, 0.5]}}],
         "arms[0].mixer_kwargs: ['mean'] of 'puzzlemix' come from augmentation.mean/std"),
        ({"e": {"kind": "generat"}}, None,
         "stages.e.kind: unknown stage kind 'generat'; did you mean 'generate'? (allowed: {stages})"),
        ({"e": {"kind": "generate"}, "m": {"kind": "mix", "input": "e", "methods": ["fractal"], "fractal": {"alpah": 0.2}}}, None,
         "stages.m.fractal.alpah: unknown key 'alpah'; did you mean 'alpha'? (allowed: alpha, on)"),
        ({"e": {"kind": "generate"}, "m": {"kind": "mix", "input": "e", "methods": ["fractl"]}}, None,
         "stages.m.methods: unknown mix method 'fractl'; did you mean 'fractal'? (allowed: {methods})"),
        ({"e": {"kind": "generate", "editor": {"name": "instruct", "scheduler": "dddim"}}}, None,
         "stages.e.editor.scheduler: unknown scheduler 'dddim'; did you mean 'ddim'?"),
        ({"s": {"kind": "sdi", "sample": {"sampler": "gaussian", "sampler_kwargs": {"jiter": 0.1}}}}, None,
         "stages.s.sample.sampler_kwargs.jiter: unknown key 'jiter'; did you mean 'jitter'?"),
        (None, [{"name": "a", "data": "edits", "policy": "curriculum", "policy_kwargs": {"schedule": "lnear"}}],
         "arms[0].policy_kwargs.schedule: unknown rho schedule 'lnear'; did you mean 'linear'? (allowed: {schedules})"),
    ],
)  # fmt: skip
def test_unknown_names_and_parameters_fail_at_load_in_one_line(tmp_path, stages, arms, expected):
    from genaug.mixing.registry import MIX_METHODS, MIXERS
    from genaug.training.schedules import BLEND_SCHEDULES

    allowed = {"mixers": MIXERS, "stages": STAGES, "methods": MIX_METHODS, "schedules": BLEND_SCHEDULES}
    expected = expected.format(**{key: ", ".join(registry.names()) for key, registry in allowed.items()})
    path = _experiment(tmp_path, stages, arms)
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"invalid configuration in {path}: {expected}"), message


def test_a_mix_method_block_sets_the_stage_fields_it_names(tmp_path):
    path = _experiment(tmp_path, {"e": {"kind": "generate"}, "m": {"kind": "mix", "input": "e", "methods": ["fractal", "rect"],
                                                                   "fractal": {"alpha": 0.3}, "rect": {"ratio": 0.25}}})  # fmt: skip
    from genaug.experiment.graph import build_graph

    config = build_graph(load_experiment(path), tmp_path / "a", identity={})["m"].config
    assert (config.fractal_alpha, config.fractal_on, config.rect_ratio) == (0.3, "concat", 0.25)
    assert config.params_of("fractal").alpha == 0.3 and config.params_of("shb") is config.shb


# ---------------------------------------------------------------------------- contracts per registry


def _mixers():
    from genaug.mixing.registry import MIXERS

    return MIXERS.names()


@pytest.mark.parametrize("name", _mixers())
def test_every_online_mixer_runs_on_a_tiny_batch_through_the_trainer(name):
    """Built as the trainer builds it (its declared needs supplied), it returns (N, K) logits and
    soft targets whose rows sum to 1."""
    import torch

    from genaug.models import create_model
    from genaug.training.recipes import resolve_recipe
    from genaug.training.trainer import build_mixer

    config = resolve_recipe(parse_config(
        __import__("genaug.config", fromlist=["TrainConfig"]).TrainConfig,
        {"recipe": "pocket", "mixer": name, "mixer_kwargs": {"bank": {"count": 2, "size": 8}} if name == "fractal" else {}},
    ))  # fmt: skip
    mixer = build_mixer(config)
    model = create_model(config.model, num_classes=4, width=0.125)
    images = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    targets = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3, 0, 1]), 4).float()
    if mixer is None:
        return  # a plain forward pass
    logits, mixed = mixer(model, images, targets, torch.nn.functional.cross_entropy, torch.Generator().manual_seed(1))
    assert logits.shape == (6, 4) and mixed.shape == (6, 4)
    torch.testing.assert_close(mixed.sum(dim=1), torch.ones(6))


def _filters():
    from genaug.filtering.registry import FILTERS

    return FILTERS.names()


@pytest.mark.parametrize("name", _filters())
def test_every_filter_creates_with_default_params(name):
    from genaug.filtering.registry import FILTERS, create_filter

    spec = {"name": name}
    params = FILTERS.spec(name).params
    required = [field for field, info in params.model_fields.items() if info.is_required()]
    if required:
        pytest.skip(f"filter {name} has required parameters: {required}")
    made = create_filter(spec)
    assert made.name == name and isinstance(made.params, params)


def _schedules():
    from genaug.training.schedules import BLEND_SCHEDULES

    return BLEND_SCHEDULES.names()


@pytest.mark.parametrize("name", _schedules())
def test_every_blend_schedule_gives_a_probability_with_default_params(name):
    import inspect

    from genaug.training.schedules import BLEND_SCHEDULES, blend_ratio

    parameters = inspect.signature(BLEND_SCHEDULES.get(name)).parameters.values()
    required = {p.name: 0.5 for p in parameters if p.default is p.empty and p.name not in ("epoch", "total_epochs")}
    values = [blend_ratio(name, epoch, 10, **required) for epoch in range(11)]
    assert all(0.0 <= value <= 1.0 for value in values)


def _samplers():
    from genaug.sdi.samplers import SAMPLERS

    return SAMPLERS.names()


@pytest.mark.parametrize("name", _samplers())
def test_every_sampler_fits_and_draws_with_default_params(name):
    import numpy as np

    from genaug.sdi.samplers import SAMPLERS, fit_sampler

    SAMPLERS.validate(name, {})
    features = np.random.default_rng(0).normal(size=(12, 3))
    draws = fit_sampler(features, name).sample(5, seed=0)
    assert draws.shape == (5, 3) and np.isfinite(draws).all()


def _lr_schedules():
    from genaug.training.registry import LR_SCHEDULES

    return LR_SCHEDULES.names()


@pytest.mark.parametrize("name", _lr_schedules())
def test_every_lr_schedule_starts_positive_with_a_recipe(name):
    from genaug.config import TrainConfig
    from genaug.training.lr_schedule import lr_factor
    from genaug.training.recipes import resolve_recipe

    config = resolve_recipe(TrainConfig(recipe="pocket", lr_schedule=name, epochs=10))
    assert 0.0 < lr_factor(config, 0) <= 1.0


def _editors():
    from genaug.generation.editors import EDITORS

    return EDITORS.names()


@pytest.mark.parametrize("name", _editors())
def test_every_editor_is_valid_in_a_generate_stage_with_its_declared_defaults(name, tmp_path):
    from genaug.config import GenerateConfig
    from genaug.generation.editors import EDITORS
    from genaug.generation.models import POCKET_SCHEME

    spec = EDITORS.spec(name)
    assert spec.default_model and isinstance(spec.needs_source, bool)
    config = parse_config(GenerateConfig, {"output": str(tmp_path), "editor": {"name": name}})
    assert config.editor.name == name
    assert spec.default_model.startswith(POCKET_SCHEME) or "/" in spec.default_model


# ---------------------------------------------------------------------------- imports


def test_loading_an_experiment_file_does_not_import_torch():
    code = (
        "import sys\n"
        "from genaug.experiment.config import load_experiment\n"
        f"load_experiment({str(ROOT / 'configs' / 'demo.yaml')!r})\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'diffusers', 'transformers') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "", f"loading configs/demo.yaml imported {result.stdout.strip()}"
