"""Hostile input, generated: manifests, configs and image files that are broken or malicious.

Every reader either accepts the input as what it is, or refuses it with an error of its
own kind (ManifestError, ConfigError, ImageLoadError) whose message names the problem: the
field, the line, the file. Never another exception mid-run, never a file written outside
the output folder. Hypothesis draws the inputs; each property says what must hold for all.
"""

from __future__ import annotations

import io
import json
import string
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from genaug.config import ConfigError, EngineConfig, GenerateConfig, load_config
from genaug.data.images import ImageLoadError, check_image, load_rgb
from genaug.manifest import MANIFEST, ManifestError, SampleRecord, SetWriter, read_manifest

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def valid_record(**changes) -> dict:
    record = {"id": "img-0001", "path": "images/cat/img-0001.png", "label": 3, "class_name": "cat", "method": "instruct",
              "source_ids": ["train/cat/1.png"], "prompt": "snowy", "params": {"steps": 3}, "seed": 7, "kept": True}
    record.update(changes)
    return record


def write_lines(set_dir: Path, lines: list[str | bytes]) -> None:
    set_dir.mkdir(parents=True, exist_ok=True)
    data = b"".join((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n" for line in lines)
    (set_dir / MANIFEST).write_bytes(data)


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# ---------------------------------------------------------------------------- manifest

ESCAPING_PATHS = st.one_of(
    st.sampled_from(["../x.png", "images/../../x.png", "/etc/passwd", "//server/x.png", "~/x.png", "images\\..\\x.png",
                     "C:\\x.png", "images/\x00.png", "", "..", "images/cat/../../../x.png"]),
    st.builds(lambda a, b: f"{a}/../{b}", st.text(min_size=0, max_size=8), st.text(min_size=0, max_size=8)),
    st.builds(lambda a: "/" + a, st.text(max_size=12)),
    st.builds(lambda a, b: f"{a}\x00{b}", st.text(max_size=8), st.text(max_size=8)),
)


@FAST
@given(path=ESCAPING_PATHS)
def test_a_manifest_path_that_escapes_the_set_is_refused(tmp_path_factory, path):
    """A record's path is joined to the set folder: '..', absolute paths, '~', backslashes and
    NUL would let a manifest point readers (and writers restoring images) outside the set."""
    set_dir = tmp_path_factory.mktemp("set")
    write_lines(set_dir, [json.dumps(valid_record(path=path))])
    with pytest.raises(ManifestError, match=r"manifest\.jsonl:1: .*path"):
        read_manifest(set_dir)


BAD_IDS = st.one_of(
    st.sampled_from(["", ".", "..", "../x", "a/b", "a\\b", "/abs", ".hidden", "a\x00b", "x" * 201, "with space", "ünïcode"]),
    st.text(min_size=1, max_size=20).filter(lambda s: any(c in s for c in "/\\\x00 .") and not s[0].isalnum()),
    st.builds(lambda a, b: f"{a}/{b}", st.text(alphabet=string.ascii_letters, min_size=1), st.text(alphabet=string.ascii_letters, min_size=1)),
)


@FAST
@given(item_id=BAD_IDS)
def test_an_id_that_is_not_a_plain_file_name_is_refused(tmp_path_factory, item_id):
    """Ids become file names (images/<class>/<id>.png): a '/' or '..' in one would write elsewhere."""
    set_dir = tmp_path_factory.mktemp("set")
    write_lines(set_dir, [json.dumps(valid_record(id=item_id))])
    with pytest.raises(ManifestError, match="invalid id"):
        read_manifest(set_dir)


WRONG_TYPES = {
    "label": st.one_of(st.text(), st.floats(), st.booleans(), st.none(), st.integers(max_value=-1), st.lists(st.integers())),
    "class_name": st.one_of(st.integers(), st.none(), st.just(""), st.just("   "), st.lists(st.text()), st.just("a\x00b"),
                            st.just("two\nlines"), st.text(min_size=1001, max_size=1001)),
    "method": st.one_of(st.integers(), st.none(), st.just(""), st.dictionaries(st.text(), st.integers())),
    "source_ids": st.one_of(st.text(), st.integers(), st.lists(st.integers(), min_size=1), st.just([""]), st.just(["a\x00"])),
    "prompt": st.one_of(st.integers(), st.lists(st.text(), min_size=1), st.booleans()),
    "params": st.one_of(st.text(), st.lists(st.integers()), st.integers()),
    "scores": st.one_of(st.text(), st.dictionaries(st.text(min_size=1), st.text(), min_size=1),
                        st.dictionaries(st.text(min_size=1), st.booleans(), min_size=1)),
    "seed": st.one_of(st.text(), st.floats(), st.booleans(), st.lists(st.integers())),
    "model": st.one_of(st.text(), st.integers(), st.lists(st.text())),
    "kept": st.one_of(st.text(), st.integers(), st.none(), st.floats()),
    "created": st.one_of(st.integers(), st.lists(st.text())),
}


@FAST
@given(data=st.data(), field=st.sampled_from(sorted(WRONG_TYPES)))
def test_a_field_of_the_wrong_type_is_refused_naming_the_field(tmp_path_factory, data, field):
    """``"kept": "false"`` must not read as kept (a non-empty string is truthy), nor a label "3" as 3."""
    value = data.draw(WRONG_TYPES[field])
    set_dir = tmp_path_factory.mktemp("set")
    write_lines(set_dir, [json.dumps(valid_record(**{field: value}))])
    with pytest.raises(ManifestError, match=rf"manifest\.jsonl:1: .*{field}"):
        read_manifest(set_dir)


@FAST
@given(extra=st.text(min_size=1, max_size=20).filter(lambda k: k not in valid_record() and k not in SampleRecord.__dataclass_fields__))
def test_an_unknown_field_is_refused_naming_it(tmp_path_factory, extra):
    set_dir = tmp_path_factory.mktemp("set")
    write_lines(set_dir, [json.dumps(valid_record(**{extra: 1}))])
    with pytest.raises(ManifestError, match="unknown field") as error:
        read_manifest(set_dir)
    assert repr(extra) in str(error.value)


@FAST
@given(junk=st.binary(min_size=1, max_size=200))
def test_any_garbage_line_is_a_manifest_error_naming_its_line(tmp_path_factory, junk):
    """Whatever bytes sit on line 2, reading gives the records or a ManifestError pointing at line 2."""
    junk = junk.replace(b"\n", b" ")
    assume(junk.strip())
    set_dir = tmp_path_factory.mktemp("set")
    write_lines(set_dir, [json.dumps(valid_record()), junk])
    with pytest.raises(ManifestError, match=r"manifest\.jsonl:2: "):
        read_manifest(set_dir)


@FAST
@given(value=st.recursive(st.none() | st.integers() | st.text(), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3)))
def test_any_json_value_that_is_not_a_record_is_refused(tmp_path_factory, value):
    assume(not isinstance(value, dict) or set(value) != set(valid_record()))
    set_dir = tmp_path_factory.mktemp("set")
    write_lines(set_dir, [json.dumps(value)])
    with pytest.raises(ManifestError, match=r"manifest\.jsonl:1: "):
        read_manifest(set_dir)


def test_deep_nesting_and_oversized_lines_are_refused_without_crashing(tmp_path):
    write_lines(tmp_path / "deep", ["[" * 100_000 + "]" * 100_000])
    with pytest.raises(ManifestError, match="manifest.jsonl:1: "):
        read_manifest(tmp_path / "deep")
    write_lines(tmp_path / "long", [json.dumps(valid_record(prompt="x" * (2 << 20)))])
    with pytest.raises(ManifestError, match="manifest.jsonl:1: line longer than"):
        read_manifest(tmp_path / "long")
    write_lines(tmp_path / "latin1", [json.dumps(valid_record(class_name="caf\u00e9"), ensure_ascii=False).encode("latin-1")])
    with pytest.raises(ManifestError, match="manifest.jsonl:1: not UTF-8"):
        read_manifest(tmp_path / "latin1")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(min_value=0.0, max_value=1.0))
def test_a_truncated_manifest_keeps_exactly_its_complete_records(tmp_path_factory, cut):
    """A manifest cut at any byte (disk full, copy interrupted) reads as the records whose line is
    complete; the torn rest is not a record and not an error."""
    set_dir = tmp_path_factory.mktemp("set")
    lines = [json.dumps(valid_record(id=f"img-{i}", path=f"images/c/img-{i}.png", class_name="ça et là 猫"), ensure_ascii=False)
             for i in range(6)]
    write_lines(set_dir, lines)
    data = (set_dir / MANIFEST).read_bytes()
    size = int(cut * len(data))
    (set_dir / MANIFEST).write_bytes(data[:size])
    complete = data[:size].count(b"\n")
    assert [r.id for r in read_manifest(set_dir)] == [f"img-{i}" for i in range(complete)]


CLASS_NAMES = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() and not any(c in s for c in "\x00\n\r"))


@FAST
@given(class_name=st.one_of(CLASS_NAMES, st.sampled_from(["../../etc", "/abs", "..", "<script>alert(1)</script>", "猫", "Ελληνικά",
                                                          "a/b\\c", "~root", "con", "   x  "])))
def test_any_class_name_round_trips_and_its_image_stays_inside_the_set(tmp_path_factory, class_name):
    """Class names are data (any language, any punctuation): kept exactly in the record, while the
    folder they name is a sanitised, human-readable one inside ``images/``."""
    root = tmp_path_factory.mktemp("root")
    set_dir = root / "set"
    with SetWriter(set_dir) as writer:
        path = writer.image_path("img-1", class_name)
        writer.add(SampleRecord(id="img-1", path=path, label=0, class_name=class_name, method="txt2img"),
                   np.zeros((4, 4, 3), np.uint8))
    (record,) = read_manifest(set_dir)
    assert record.class_name == class_name
    assert (set_dir / record.path).resolve().is_relative_to((set_dir / "images").resolve())
    assert files_under(root) <= {"set"} | {f"set/{name}" for name in files_under(set_dir)}
    assert {p for p in files_under(set_dir) if p.endswith(".png")} == {record.path}


def test_a_hostile_record_writes_nothing(tmp_path):
    """Validation happens when the record is made, before SetWriter touches the disk."""
    set_dir = tmp_path / "set"
    with SetWriter(set_dir) as writer:
        for changes in ({"path": "../escaped.png"}, {"id": "../escaped"}, {"path": "/tmp/escaped.png"}):
            with pytest.raises(ValueError):
                writer.add(SampleRecord(**{**valid_record(), **changes}), np.zeros((4, 4, 3), np.uint8))
    assert files_under(tmp_path) == {"set", "set/manifest.jsonl"}
    assert (set_dir / MANIFEST).read_bytes() == b""


def test_a_symbolic_link_planted_in_a_set_does_not_lead_writes_outside(tmp_path):
    """A class folder replaced by a link to elsewhere: the writer refuses rather than follow it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    set_dir = tmp_path / "set"
    (set_dir / "images").mkdir(parents=True)
    (set_dir / "images" / "cat").symlink_to(outside, target_is_directory=True)
    with SetWriter(set_dir) as writer:
        with pytest.raises(ValueError, match="leads outside the set"):
            writer.add(SampleRecord(**valid_record()), np.zeros((4, 4, 3), np.uint8))
    assert not any(outside.iterdir())
    assert read_manifest(set_dir) == []


def test_a_synthetic_set_with_an_escaping_path_or_unknown_class_is_refused(tmp_path):
    from genaug.data.base import DatasetError
    from genaug.data.synthetic import load_synthetic_set

    write_lines(tmp_path / "escape", [json.dumps(valid_record(path="../../outside.png"))])
    with pytest.raises(ManifestError, match="must be relative and stay inside the set"):
        load_synthetic_set(tmp_path / "escape", ["cat"])
    with SetWriter(tmp_path / "unicode") as writer:
        for i, name in enumerate(["猫", "chien", "<b>bird</b>"]):
            writer.add(SampleRecord(id=f"i{i}", path=writer.image_path(f"i{i}", name), label=i, class_name=name, method="sdi"),
                       np.full((4, 4, 3), 9 * i, np.uint8))
    loaded = load_synthetic_set(tmp_path / "unicode", ["<b>bird</b>", "chien", "猫"])
    assert list(loaded.labels) == [2, 1, 0]
    with pytest.raises(DatasetError, match="chien"):
        load_synthetic_set(tmp_path / "unicode", ["猫", "<b>bird</b>"])


# ---------------------------------------------------------------------------- config loader


GENERATE_FIELDS = set(GenerateConfig.model_fields)
#: Drawn keys must be unknown at both levels they are tried at (top level and ``engine``).
KNOWN_FIELDS = GENERATE_FIELDS | set(EngineConfig.model_fields)


@FAST
@given(key=st.text(alphabet=string.ascii_letters + "_", min_size=1, max_size=16).filter(lambda k: k not in KNOWN_FIELDS),
       nested=st.booleans())
def test_an_unknown_config_field_is_an_error_naming_it(tmp_path_factory, key, nested):
    path = tmp_path_factory.mktemp("cfg") / "generate.yaml"
    data = {"output": "out", "engine": {key: 1}} if nested else {"output": "out", key: 1}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as error:
        load_config(GenerateConfig, path)
    assert (f"engine.{key}" if nested else key) in str(error.value) and str(path) in str(error.value)


WRONG_CONFIG_VALUES = {
    "seed": st.one_of(st.text(min_size=1).filter(lambda s: not s.strip().lstrip("+-").isdigit()), st.lists(st.integers(), min_size=1),
                      st.dictionaries(st.text(), st.integers(), min_size=1)),
    "engine.batch_size": st.one_of(st.integers(max_value=0), st.text(alphabet=string.ascii_letters, min_size=1), st.lists(st.integers(), min_size=1)),
    "regime": st.text(max_size=10).filter(lambda s: s not in ("single", "random", "all")),
    "editor.steps": st.one_of(st.integers(max_value=0), st.text(alphabet=string.ascii_letters, min_size=1), st.floats(allow_nan=True).filter(lambda f: f != int(f) if f == f and abs(f) < 1e300 else True)),
}


@FAST
@given(data=st.data(), field=st.sampled_from(sorted(WRONG_CONFIG_VALUES)))
def test_a_config_value_of_the_wrong_type_or_range_is_an_error_naming_the_field(tmp_path_factory, data, field):
    value = data.draw(WRONG_CONFIG_VALUES[field])
    section, _, name = field.rpartition(".")
    document = {"output": "out", **({section: {name: value}} if section else {name: value})}
    path = tmp_path_factory.mktemp("cfg") / "generate.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    with pytest.raises(ConfigError) as error:
        load_config(GenerateConfig, path)
    # either the dotted location or the section's location with the field named in its message
    message = str(error.value)
    assert field in message or (f"  {section}:" in message and name in message), message


VALID_YAML = "output: runs/x\nregime: random\nprompts: pocket\nengine:\n  batch_size: 4\n  progress: false\neditor:\n  name: instruct\n  steps: 3\n"


@FAST
@given(cut=st.integers(min_value=0, max_value=len(VALID_YAML)), junk=st.binary(max_size=64))
def test_truncated_or_corrupt_config_files_give_a_config_error(tmp_path_factory, cut, junk):
    """Any bytes in a config file: a valid config or a ConfigError, never a YAML or decoding traceback."""
    path = tmp_path_factory.mktemp("cfg") / "generate.yaml"
    path.write_bytes(VALID_YAML.encode()[:cut] + junk)
    try:
        config = load_config(GenerateConfig, path)
    except ConfigError as error:
        assert str(path) in str(error) or "invalid configuration" in str(error)
    else:
        assert isinstance(config, GenerateConfig)


@FAST
@given(override=st.one_of(st.text(max_size=20).filter(lambda s: "=" not in s), st.sampled_from(["=1", "...=1", " =x", "output.x=1"])))
def test_malformed_overrides_are_config_errors(override):
    with pytest.raises(ConfigError):
        load_config(GenerateConfig, None, ["output=out", override])


# ---------------------------------------------------------------------------- image loaders


def encoded(fmt: str, mode: str = "RGB", size: tuple[int, int] = (12, 9)) -> bytes:
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(array[..., 0] if channels == 1 else array, mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


SAMPLES = {f"{fmt}-{mode}": encoded(fmt, mode) for fmt, mode in
           [("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("JPEG", "RGB"), ("JPEG", "L"), ("GIF", "L"), ("BMP", "RGB"),
            ("TIFF", "RGB"), ("WEBP", "RGB")]}


def _loads_or_names_the_file(path: Path) -> None:
    """The property shared by the image loaders: an RGB image of the header's size, or an ImageLoadError naming the file."""
    for load in (lambda p: load_rgb(p), lambda p: check_image(p)):
        try:
            result = load(path)
        except ImageLoadError as error:
            assert error.path == str(path) and error.reason and str(path) in str(error)
        else:
            if isinstance(result, Image.Image):
                assert result.mode == "RGB" and result.width >= 1 and result.height >= 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sample=st.sampled_from(sorted(SAMPLES)), cut=st.floats(min_value=0.0, max_value=1.0),
       flips=st.lists(st.tuples(st.floats(min_value=0.0, max_value=0.999), st.integers(1, 255)), max_size=4))
def test_truncated_and_corrupted_images_load_or_fail_naming_the_file(tmp_path_factory, sample, cut, flips):
    data = bytearray(SAMPLES[sample][: max(1, int(cut * len(SAMPLES[sample])))])
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    path = tmp_path_factory.mktemp("img") / f"x.{sample.split('-')[0].lower()}"
    path.write_bytes(bytes(data))
    _loads_or_names_the_file(path)


@FAST
@given(junk=st.binary(max_size=300), suffix=st.sampled_from([".png", ".jpg", ".gif", ".tif", ".webp", ".bmp"]))
def test_random_bytes_behind_an_image_suffix_fail_naming_the_file(tmp_path_factory, junk, suffix):
    path = tmp_path_factory.mktemp("img") / f"junk{suffix}"
    path.write_bytes(junk)
    _loads_or_names_the_file(path)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (valid CRC) followed by a tiny IDAT: a decompression bomb's header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@settings(max_examples=40, deadline=2000)
@given(width=st.integers(20_000, 2**31 - 1), height=st.integers(20_000, 2**31 - 1))
def test_an_oversized_image_is_refused_from_its_header_without_decoding(tmp_path_factory, width, height):
    """Huge dimensions are refused before any pixel is allocated (the deadline proves no decode)."""
    path = tmp_path_factory.mktemp("img") / "bomb.png"
    path.write_bytes(png_header_only(width, height))
    for load in (load_rgb, check_image):
        with pytest.raises(ImageLoadError) as error:
            load(path)
        assert error.value.path == str(path) and ("pixels" in error.value.reason or "decompression" in error.value.reason)


def test_a_folder_tree_with_unicode_and_hostile_class_names_keeps_them(tmp_path):
    """Folder names become class names verbatim and ids stay relative to the root."""
    from genaug.config import DatasetConfig
    from genaug.data import load_splits

    names = ["<script>", "猫", "ελιά", "a b", "x..y", "-rf"]
    for name in names:
        for i in range(3):
            (tmp_path / name).mkdir(exist_ok=True)
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / name / f"{i}.png")
    splits = load_splits(DatasetConfig(name="folder", root=tmp_path, image_size=8, labels_per_class="all", val_fraction=0.0))
    assert sorted(splits["train"].class_names) == sorted(names)
    for image_id in splits["train"].ids + splits["test"].ids:
        assert not Path(image_id).is_absolute() and ".." not in Path(image_id).parts
