"""Acquisition layouts: the user guide's Python and JSON forms, every validation rule, arbitrary JSON
(hypothesis), JSON round trips of the shipped layouts, random cloud bounds and the TFRecord keys."""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decloud.acquisitions.acquisition_factory import ACQUISITION_FIELDS, SENSOR_FIELDS, AcquisitionFactory
from decloud.acquisitions.sensing_layout import (
    AcquisitionsLayout,
    LayoutError,
    RandomBound,
    S1Acquisition,
    S2Acquisition,
)
from decloud.core import keys
from decloud.core.errors import InputNotFoundError

CONFIGS = Path(__file__).resolve().parents[1] / "decloud" / "acquisitions" / "layouts"

# The user guide's JSON example, verbatim (including "timeframe_origin": "True" and the reversed window).
GUIDE_JSON = """
{
  "tm1" : {
    "acquisition" : {
      "S2" : {
        "type": "S2",
        "min_cloud_percent": 0,
        "max_cloud_percent": 0
      }
    },
    "timeframe_start_hours" : -120,
    "timeframe_end_hours" : -360
  },
  "t" : {
    "acquisition" : {
      "S2" : {
        "type": "S2",
        "min_cloud_percent": 50,
        "max_cloud_percent": 100
      },
      "S1" : {
        "type": "S1"
      }
    },
    "max_s1s2_gap_hours" :24,
    "timeframe_origin" : "True"
  },
  "tp1" : {
    "acquisition" : {
      "S2" : {
        "type": "S2",
        "min_cloud_percent": 0,
        "max_cloud_percent": 0
      }
    },
    "timeframe_start_hours" : 120,
    "timeframe_end_hours" : 360
  }
}
"""


def guide_python_layout() -> AcquisitionsLayout:
    """The user guide's Python example, verbatim but for the package prefix of the import."""
    acq = AcquisitionsLayout()

    # One cloud-free acquisition at t-1 (we use "tm1" to avoid the +-/* characters)
    acq.new_acquisition(
        "tm1",
        s2_acquisition=S2Acquisition(min_cloud_percent=0, max_cloud_percent=0),
        timeframe_start_hours=-5 * 24,
        timeframe_end_hours=-15 * 24,
    )

    # One cloudy acquisition at t (this is our reference acquisition, we set timeframe_origin to True)
    acq.new_acquisition(
        "t",
        s1_acquisition=S1Acquisition(),
        s2_acquisition=S2Acquisition(min_cloud_percent=50, max_cloud_percent=100),
        max_s1s2_gap_hours=24,
        timeframe_origin=True,
    )

    # Another cloud-free acquisition at t+1
    acq.new_acquisition(
        "tp1",
        s2_acquisition=S2Acquisition(min_cloud_percent=0, max_cloud_percent=0),
        timeframe_start_hours=5 * 24,
        timeframe_end_hours=15 * 24,
    )
    return acq


def guide_dict() -> dict:
    return json.loads(GUIDE_JSON)


def shipped_configs() -> list[Path]:
    return sorted(CONFIGS.glob("*.json"))


# --- the user guide ---------------------------------------------------------------------------------


def test_guide_json_and_python_examples_give_equal_layouts(tmp_path):
    path = tmp_path / "AL-guide.json"
    path.write_text(GUIDE_JSON)
    from_json = AcquisitionFactory.get_acquisition(path)
    assert from_json == guide_python_layout()
    assert from_json == AcquisitionFactory.get_acquisition(CONFIGS / "guide_example.json")
    assert from_json.origin == "t"
    assert list(from_json.acquisitions) == ["tm1", "t", "tp1"]
    tm1, t, tp1 = from_json.acquisitions.values()
    assert tm1.window_hours == (-360, -120)  # given as start -120, end -360
    assert tp1.window_hours == (120, 360)
    assert t.window_hours == (0, 0) and t.is_origin and not tm1.is_origin
    assert t.s1 == S1Acquisition() and t.s2 == S2Acquisition(50, 100) and t.max_s1s2_gap_hours == 24
    assert tm1.s1 is None and tm1.s2 == S2Acquisition(0, 0) and tm1.max_s1s2_gap_hours is None
    assert from_json.siblings == () and not from_json.are_siblings("t", "tp1")


def test_a_different_layout_is_not_equal():
    other = guide_dict()
    other["tp1"]["acquisition"]["S2"]["max_cloud_percent"] = 10
    assert AcquisitionFactory.from_dict(other) != guide_python_layout()
    assert AcquisitionFactory.from_dict({**guide_dict(), "siblings": [["tm1", "tp1"]]}) != guide_python_layout()


def test_views_are_read_only_and_siblings_are_symmetric():
    layout = AcquisitionsLayout(siblings=[["t", "tp1"]])
    for name, acquisition in guide_python_layout().acquisitions.items():
        layout.new_acquisition(
            name,
            s1_acquisition=acquisition.s1,
            s2_acquisition=acquisition.s2,
            timeframe_start_hours=acquisition.window_hours[0],
            timeframe_end_hours=acquisition.window_hours[1],
            max_s1s2_gap_hours=acquisition.max_s1s2_gap_hours,
            timeframe_origin=acquisition.is_origin,
        )
    assert layout.validate() is layout
    assert layout.are_siblings("tp1", "t") and layout.are_siblings("t", "tp1") and not layout.are_siblings("t", "tm1")
    assert layout.siblings == (frozenset({"t", "tp1"}),)
    with pytest.raises(TypeError):
        layout.acquisitions["x"] = layout.acquisitions["t"]


@pytest.mark.parametrize("flag", ["True", "true", "TRUE", True])
def test_timeframe_origin_accepts_true_and_its_strings(flag):
    content = guide_dict()
    content["t"]["timeframe_origin"] = flag
    content["tp1"]["timeframe_origin"] = "False" if flag is not True else False
    assert AcquisitionFactory.from_dict(content) == guide_python_layout()


# --- TFRecord keys ----------------------------------------------------------------------------------


def test_keys_of_the_guide_example():
    layout = guide_python_layout()
    assert layout.keys(with_20m_bands=False, with_dem=False) == [
        "s2_tm1",
        "s2_timestamp_tm1",
        "s1_t",
        "s1_timestamp_t",
        "s2_t",
        "s2_timestamp_t",
        "s2_tp1",
        "s2_timestamp_tp1",
        "tile",
        "patch_row",
        "patch_col",
    ]
    assert layout.keys(with_20m_bands=True, with_dem=True) == [
        "s2_tm1",
        "s2_timestamp_tm1",
        "s2_20m_tm1",
        "s1_t",
        "s1_timestamp_t",
        "s2_t",
        "s2_timestamp_t",
        "s2_20m_t",
        "s2_tp1",
        "s2_timestamp_tp1",
        "s2_20m_tp1",
        "dem",
        "tile",
        "patch_row",
        "patch_col",
    ]
    assert layout.keys(with_20m_bands=False, with_dem=True)[-4:] == ["dem", "tile", "patch_row", "patch_col"]
    assert "s2_20m_t" in layout.keys(with_20m_bands=True, with_dem=False)


# --- invalid layouts --------------------------------------------------------------------------------


def edit(*steps):
    """A function applying ``steps`` ((path, value) to set, or (path,) to delete) to a copy of the guide."""

    def apply(content: dict) -> dict:
        for step in steps:
            *parents, last = step[0]
            target = content
            for key in parents:
                target = target[key]
            if len(step) == 1:
                del target[last]
            else:
                target[last] = step[1]
        return content

    return apply


T_S2 = ("t", "acquisition", "S2")
INVALID_DICTS = {
    "no origin": (edit((("t", "timeframe_origin"),)), r"no acquisition has timeframe_origin"),
    "two origins": (
        edit(
            (("tp1", "timeframe_origin"), True),
            (("tp1", "timeframe_start_hours"),),
            (("tp1", "timeframe_end_hours"),),
        ),
        r"'t', 'tp1' all have timeframe_origin",
    ),
    "origin with a window": (edit((("t", "timeframe_end_hours"), 24)), r"'t': timeframe_origin: .*\[0, 0\]"),
    "no sensor": (edit((("tm1", "acquisition"), {})), r"'tm1': acquisition has neither S1 nor S2"),
    "no acquisition key": (edit((("tm1", "acquisition"),)), r"'tm1': acquisition has neither S1 nor S2"),
    "S1+S2 without gap": (edit((("t", "max_s1s2_gap_hours"),)), r"'t': max_s1s2_gap_hours is required"),
    "zero gap": (edit((("t", "max_s1s2_gap_hours"), 0)), r"'t': max_s1s2_gap_hours must be > 0"),
    "negative gap": (edit((("t", "max_s1s2_gap_hours"), -24)), r"'t': max_s1s2_gap_hours must be > 0"),
    "gap without both sensors": (edit((("tm1", "max_s1s2_gap_hours"), 24)), r"'tm1': max_s1s2_gap_hours is given"),
    "name with a minus": (lambda d: {**d, "t-1": d.pop("tm1")}, r"'t-1' must start with a letter"),
    "name with an underscore": (lambda d: {**d, "t_1": d.pop("tm1")}, r"'t_1' must start with a letter"),
    "name starting with a digit": (lambda d: {**d, "1t": d.pop("tm1")}, r"'1t' must start with a letter"),
    "empty name": (lambda d: {**d, "": d.pop("tm1")}, r"'' must start with a letter"),
    "unknown sibling": (lambda d: {**d, "siblings": [["t", "target"]]}, r"siblings: unknown .*'target'"),
    "single-name sibling group": (lambda d: {**d, "siblings": [["t"]]}, r"siblings: .*at least two"),
    "repeated-name sibling group": (lambda d: {**d, "siblings": [["t", "t"]]}, r"siblings: .*at least two"),
    "acquisition in two groups": (
        lambda d: {**d, "siblings": [["t", "tm1"], ["tp1", "t"]]},
        r"siblings: acquisition 't' is in two",
    ),
    "siblings not a list of lists": (lambda d: {**d, "siblings": ["t", "tp1"]}, r"'siblings' must be a list of lists"),
    "sibling name not a string": (lambda d: {**d, "siblings": [["t", 1]]}, r"siblings: .* names \(strings\)"),
    "cloud percent below 0": (edit(((*T_S2, "min_cloud_percent"), -1)), r"'t': S2 min_cloud_percent .* 0-100"),
    "cloud percent above 100": (edit(((*T_S2, "max_cloud_percent"), 101)), r"'t': S2 max_cloud_percent .* 0-100"),
    "min above max": (edit(((*T_S2, "min_cloud_percent"), 80), ((*T_S2, "max_cloud_percent"), 60)), r"'t': S2 min"),
    "random bound above 100": (
        edit(((*T_S2, "max_cloud_percent"), {"random": [50, 150]})),
        r"'t': S2 max_cloud_percent: random bound high .* 0-100",
    ),
    "random bound reversed": (
        edit(((*T_S2, "max_cloud_percent"), {"random": [90, 60]})),
        r"'t': S2 max_cloud_percent: .*low > high",
    ),
    "random min can exceed max": (
        edit(((*T_S2, "min_cloud_percent"), {"random": [40, 70]}), ((*T_S2, "max_cloud_percent"), 60)),
        r"'t': S2 min_cloud_percent .* can exceed",
    ),
    "random of three numbers": (
        edit(((*T_S2, "min_cloud_percent"), {"random": [0, 1, 2]})),
        r"'t': S2 min_cloud_percent: 'random' must be a list",
    ),
    "random with an extra key": (
        edit(((*T_S2, "min_cloud_percent"), {"random": [0, 1], "seed": 3})),
        r"'t': S2 min_cloud_percent: unknown key 'seed'",
    ),
    "code as a cloud bound": (
        edit(((*T_S2, "min_cloud_percent"), "random.uniform(0, 2)")),
        r"'t': S2 min_cloud_percent must be a number, .*'random.uniform\(0, 2\)' \(strings are not evaluated\)",
    ),
    "randint with a float": (
        edit(((*T_S2, "min_cloud_percent"), "random.randint(0.5, 2)")),
        r"'t': S2 min_cloud_percent must be a number, .* \(strings are not evaluated\)",
    ),
    "randint with code after it": (
        edit(((*T_S2, "min_cloud_percent"), "random.randint(0, 2); exit()")),
        r"'t': S2 min_cloud_percent must be a number, .* \(strings are not evaluated\)",
    ),
    "randint of Decloud above 100": (
        edit(((*T_S2, "max_cloud_percent"), "random.randint(50, 150)")),
        r"'t': S2 max_cloud_percent: random bound high .* 0-100",
    ),
    "randint of Decloud reversed": (
        edit(((*T_S2, "max_cloud_percent"), "random.randint(90, 60)")),
        r"'t': S2 max_cloud_percent: random bound \[90, 60\] has low > high",
    ),
    "string number as a cloud bound": (
        edit(((*T_S2, "max_cloud_percent"), "100")),
        r"'t': S2 max_cloud_percent .* the string '100'",
    ),
    "boolean cloud bound": (edit(((*T_S2, "min_cloud_percent"), False)), r"'t': S2 min_cloud_percent .* not False"),
    "boolean window": (edit((("tm1", "timeframe_start_hours"), True)), r"'tm1': timeframe_start_hours .* not True"),
    "string window": (edit((("tp1", "timeframe_end_hours"), "360")), r"'tp1': timeframe_end_hours .* not '360'"),
    "boolean gap": (edit((("t", "max_s1s2_gap_hours"), True)), r"'t': max_s1s2_gap_hours must be a finite number"),
    "list as an acquisition": (edit((("tm1",), [])), r"acquisition 'tm1' must be a JSON object"),
    "list as sensors": (edit((("tm1", "acquisition"), ["S2"])), r"'tm1': 'acquisition' must be a JSON object"),
    "list as a sensor": (edit((T_S2, [])), r"'t': S2 must be a JSON object"),
    "type not matching its key": (edit(((*T_S2, "type"), "S1")), r"'t': S2: 'type' must be 'S2'"),
    "missing type": (edit((("t", "acquisition", "S1", "type"),)), r"'t': S1: 'type' must be 'S1'"),
    "unknown sensor": (edit((("t", "acquisition", "S3"), {"type": "S3"})), r"'t': 'acquisition' \(sensor\): .*'S3'"),
    "unknown acquisition key": (edit((("tm1", "timeframe_begin_hours"), 0)), r"'tm1': unknown key 'timeframe_begin"),
    "unknown S2 key": (edit(((*T_S2, "cloud_percent"), 3)), r"'t': S2: unknown key 'cloud_percent'"),
    "S1 with cloud bounds": (
        edit((("t", "acquisition", "S1", "max_cloud_percent"), 3)),
        r"'t': S1: unknown key 'max_cloud_percent'",
    ),
    "origin flag not a boolean": (edit((("t", "timeframe_origin"), "yes")), r"'t': timeframe_origin must be true"),
    "origin flag a number": (edit((("t", "timeframe_origin"), 1)), r"'t': timeframe_origin must be true"),
    "nearest flag not a boolean": (edit((("tm1", "nearest"), "closest")), r"'tm1': nearest must be true"),
    "nearest on the origin": (edit((("t", "nearest"), True)), r"'t': nearest: the origin is the reference date"),
    "reserved name": (
        lambda d: {"siblings": d["tm1"], "t": d["t"]},
        r"'siblings' must be a list of lists",
    ),
    "empty layout": (lambda d: {}, r"the layout has no acquisition"),
    "layout not an object": (lambda d: list(d.values()), r"a layout must be a JSON object"),
}


@pytest.mark.parametrize("mutate, pattern", INVALID_DICTS.values(), ids=INVALID_DICTS.keys())
def test_invalid_layouts_name_the_file_acquisition_and_field(mutate, pattern):
    with pytest.raises(LayoutError, match=r"^AL-bad\.json: .*" + pattern):
        AcquisitionFactory.from_dict(mutate(guide_dict()), source="AL-bad.json")


def python_layout(*acquisitions: dict, siblings=None) -> AcquisitionsLayout:
    layout = AcquisitionsLayout(siblings=siblings)
    for arguments in acquisitions:
        layout.new_acquisition(**arguments)
    return layout.validate()


ORIGIN = {"name": "t", "s2_acquisition": S2Acquisition(), "timeframe_origin": True}
S2_ONLY = {"s2_acquisition": S2Acquisition()}
INVALID_PYTHON = {
    "cloud percent above 100": (lambda: S2Acquisition(max_cloud_percent=150), r"max_cloud_percent .* not 150"),
    "min above max": (lambda: S2Acquisition(min_cloud_percent=60, max_cloud_percent=50), r"min_cloud_percent \(60\)"),
    "string cloud bound": (lambda: S2Acquisition(min_cloud_percent="10"), r"min_cloud_percent .* not '10'"),
    "random low above high": (lambda: RandomBound(10, 5), r"low > high"),
    "no origin": (lambda: python_layout({**ORIGIN, "timeframe_origin": False}), r"no acquisition has"),
    "two origins": (lambda: python_layout(ORIGIN, {**ORIGIN, "name": "target"}), r"'t', 'target' all have"),
    "duplicate name": (lambda: python_layout(ORIGIN, {**ORIGIN, "timeframe_origin": False}), r"'t' is defined twice"),
    "bad name": (lambda: python_layout({**ORIGIN, "name": "t+1"}), r"'t\+1' must start with a letter"),
    "name not a string": (lambda: python_layout({**ORIGIN, "name": 3}), r"acquisition name 3 must be a string"),
    "reserved name": (lambda: python_layout({**ORIGIN, "name": "siblings"}), r"'siblings' is reserved"),
    "no sensor": (lambda: python_layout({"name": "t", "timeframe_origin": True}), r"'t': acquisition has neither"),
    "sensor of the wrong kind": (
        lambda: python_layout({**ORIGIN, "s1_acquisition": S2Acquisition()}),
        r"'t': s1_acquisition must be an S1Acquisition",
    ),
    "S1+S2 without gap": (
        lambda: python_layout({**ORIGIN, "s1_acquisition": S1Acquisition()}),
        r"'t': max_s1s2_gap_hours is required",
    ),
    "gap with S2 only": (lambda: python_layout({**ORIGIN, "max_s1s2_gap_hours": 3}), r"'t': max_s1s2_gap_hours is"),
    "infinite window": (
        lambda: python_layout(ORIGIN, {**S2_ONLY, "name": "d1", "timeframe_end_hours": math.inf}),
        r"'d1': timeframe_end_hours must be a finite number",
    ),
    "origin with a window": (lambda: python_layout({**ORIGIN, "timeframe_start_hours": -1}), r"'t': timeframe_origin"),
    "origin flag a string": (lambda: python_layout({**ORIGIN, "timeframe_origin": "True"}), r"must be True or False"),
    "unknown sibling": (lambda: python_layout(ORIGIN, siblings=[["t", "target"]]), r"siblings: unknown .*'target'"),
    "sibling groups as a string": (lambda: AcquisitionsLayout(siblings="t,target"), r"siblings must be a list"),
    "two groups": (lambda: AcquisitionsLayout(siblings=[("a", "b"), ("b", "c")]), r"'b' is in two sibling groups"),
}


@pytest.mark.parametrize("build, pattern", INVALID_PYTHON.values(), ids=INVALID_PYTHON.keys())
def test_invalid_python_layouts_raise_layout_error(build, pattern):
    with pytest.raises(LayoutError, match=pattern):
        build()


@pytest.mark.parametrize(
    "text, pattern",
    [
        ('{"t": {', r"not a valid JSON layout"),
        ('{"t": {"acquisition": {}}, "t": {}}', r"duplicate key 't'"),
        ('{"t": {"timeframe_start_hours": NaN}}', r"NaN is not a JSON number"),
        (b"\xff\xfe{}", r"not a valid JSON layout"),
        ('{"t": {"acquisition": {"S2": {"type": "S2"}}, "timeframe_origin": "1"}}', r"'t': timeframe_origin"),
    ],
)
def test_invalid_json_files_name_the_file(tmp_path, text, pattern):
    path = tmp_path / "AL-broken.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(LayoutError, match=rf"^{re.escape(str(path))}: .*{pattern}"):
        AcquisitionFactory.get_acquisition(path)


def test_missing_layout_file_is_named(tmp_path):
    with pytest.raises(InputNotFoundError, match=r"AL-missing\.json"):
        AcquisitionFactory.get_acquisition(tmp_path / "AL-missing.json")


# --- arbitrary JSON (hypothesis) --------------------------------------------------------------------

# Strings biased towards the layout's own words, so that generated documents get past the first checks.
WORDS = [*ACQUISITION_FIELDS, *SENSOR_FIELDS["S2"], "S1", "S2", "random", "siblings", "t", "tm1", "target", "True"]
json_texts = st.sampled_from(WORDS) | st.text(max_size=6)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | json_texts
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_texts, children, max_size=4),
    max_leaves=16,
)


def check_outcome(content) -> None:
    """from_dict gives a valid, round-tripping layout or a LayoutError, never another exception."""
    try:
        layout = AcquisitionFactory.from_dict(content)
    except LayoutError:
        return
    assert layout.validate() is layout
    assert AcquisitionFactory.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout
    assert all(keys.split_key(name) for name in layout.keys(with_20m_bands=True, with_dem=True))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_gives_a_layout_or_a_layout_error(content):
    check_outcome(content)


def json_paths(value, prefix=()):
    """Every path (tuple of keys and indices) into a decoded JSON value."""
    yield prefix
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from json_paths(child, (*prefix, key))


def mutate(content, path, operation, value):
    """Replace the value at ``path``, delete it, or add ``value`` under a new key beside it."""
    *parents, last = path
    parent = content
    for key in parents:
        parent = parent[key]
    if operation == "delete" and isinstance(parent, dict):
        del parent[last]
    elif operation == "add" and isinstance(parent, dict):
        parent[f"extra{len(parent)}"] = value
    else:
        parent[last] = value


BASES = [guide_dict(), json.loads((CONFIGS / "monthly_synthesis_s2s1.json").read_text())]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_layouts_give_a_layout_or_a_layout_error(data):
    content = copy.deepcopy(data.draw(st.sampled_from(BASES)))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [path for path in json_paths(content) if path]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        mutate(content, path, data.draw(st.sampled_from(["replace", "delete", "add"])), data.draw(json_values))
    check_outcome(content)


# --- shipped layouts --------------------------------------------------------------------------------


def test_every_model_layout_is_shipped():
    names = {path.stem for path in shipped_configs()}
    assert {
        "guide_example",
        "meraner",
        "crga_os1",
        "crga_os2",
        "crga_os2_s2only",
        "monthly_synthesis_s2",
        "monthly_synthesis_s2s1",
    } <= names


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda path: path.name)
def test_shipped_layouts_load_and_round_trip_through_json(path, tmp_path):
    layout = AcquisitionFactory.get_acquisition(path)
    assert AcquisitionFactory.from_dict(layout.to_dict()) == layout
    layout.to_json(tmp_path / path.name)
    assert AcquisitionFactory.get_acquisition(tmp_path / path.name) == layout
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


# The acquisitions each model family reads (see decloud/acquisitions/layouts/README.md).
MODEL_ACQUISITIONS = {
    "meraner": ("t", {"t": "s1 s2", "target": "s2"}),
    "crga_os1": ("t", {"tm1": "s1 s2", "t": "s1 s2", "target": "s2"}),
    "crga_os2": ("t", {"tm1": "s1 s2", "t": "s1 s2", "tp1": "s1 s2", "target": "s2"}),
    "crga_os2_s2only": ("t", {"tm1": "s2", "t": "s2", "tp1": "s2", "target": "s2"}),
    "monthly_synthesis_s2": ("d0", {**{f"d{i}": "s2" for i in range(6)}, "target": "s2"}),
    "monthly_synthesis_s2s1": ("d0", {**{f"d{i}": "s1 s2" for i in range(6)}, "target": "s2"}),
}


@pytest.mark.parametrize("stem", MODEL_ACQUISITIONS)
def test_model_layouts_have_the_acquisitions_the_models_read(stem):
    layout = AcquisitionFactory.get_acquisition(CONFIGS / f"{stem}.json")
    origin, sensors = MODEL_ACQUISITIONS[stem]
    assert layout.origin == origin
    found = {name: " ".join(s for s in ("s1", "s2") if getattr(a, s)) for name, a in layout.acquisitions.items()}
    assert found == sensors
    target = layout.acquisitions["target"]
    assert target.s2 == S2Acquisition(0, 0)  # the reference is cloud-free
    assert not layout.has_random_bounds


@pytest.mark.parametrize("stem", ["meraner", "crga_os1", "crga_os2", "crga_os2_s2only"])
def test_the_cloudy_t_can_never_be_its_own_target(stem):
    layout = AcquisitionFactory.get_acquisition(CONFIGS / f"{stem}.json")
    assert layout.acquisitions["t"].s2.min_cloud_percent > layout.acquisitions["target"].s2.max_cloud_percent
    assert not layout.are_siblings("t", "target")
    assert layout.acquisitions["target"].window_hours[0] <= 0 <= layout.acquisitions["target"].window_hours[1]


def test_monthly_synthesis_target_may_be_one_of_the_inputs_it_overlaps():
    layout = AcquisitionFactory.get_acquisition(CONFIGS / "monthly_synthesis_s2.json")
    low, high = layout.acquisitions["target"].window_hours
    overlapping = {
        name
        for name, a in layout.acquisitions.items()
        if name != "target" and a.window_hours[0] <= high and low <= a.window_hours[1]
    }
    assert overlapping == {"d1", "d2", "d3", "d4"}
    assert all(layout.are_siblings("target", name) for name in overlapping)
    windows = sorted(a.window_hours for name, a in layout.acquisitions.items() if name != "target")
    assert all(first[1] < second[0] for first, second in itertools.pairwise(windows))  # inputs disjoint


# --- random cloud bounds ----------------------------------------------------------------------------


def random_layout() -> AcquisitionsLayout:
    content = guide_dict()
    content["tm1"]["acquisition"]["S2"]["max_cloud_percent"] = {"random": [0, 10]}
    content["t"]["acquisition"]["S2"]["min_cloud_percent"] = {"random": [20, 50]}
    content["t"]["acquisition"]["S2"]["max_cloud_percent"] = {"random": [50, 100]}
    return AcquisitionFactory.from_dict(content)


def test_a_decloud_layout_with_randint_strings_loads_as_the_random_form(tmp_path):
    """The original Decloud's layouts write random cloud bounds as Python code; the exact form
    "random.randint(a, b)" is read (never evaluated) as {"random": [a, b]}."""
    content = guide_dict()
    content["tm1"]["acquisition"]["S2"]["max_cloud_percent"] = "random.randint(0, 10)"
    content["t"]["acquisition"]["S2"]["min_cloud_percent"] = "random.randint(20,50)"
    content["t"]["acquisition"]["S2"]["max_cloud_percent"] = "random.randint( 50 , 100 )"
    path = tmp_path / "AL-decloud.json"
    path.write_text(json.dumps(content))
    layout = AcquisitionFactory.get_acquisition(path)
    assert layout.acquisitions["tm1"].s2.max_cloud_percent == RandomBound(0, 10)
    assert layout.acquisitions["t"].s2 == S2Acquisition(RandomBound(20, 50), RandomBound(50, 100))
    assert layout == random_layout()


def test_random_bounds_round_trip_and_resolve_deterministically():
    layout = random_layout()
    assert layout.has_random_bounds
    assert layout.acquisitions["t"].s2.min_cloud_percent == RandomBound(20, 50)
    assert layout.to_dict()["t"]["acquisition"]["S2"]["min_cloud_percent"] == {"random": [20, 50]}
    assert AcquisitionFactory.from_dict(layout.to_dict()) == layout
    draws = []
    for seed in range(20):
        resolved = layout.resolved(seed)
        assert resolved == layout.resolved(seed) and resolved != layout and not resolved.has_random_bounds
        tm1, t, tp1 = (resolved.acquisitions[name].s2 for name in ("tm1", "t", "tp1"))
        assert tm1.min_cloud_percent == 0 and 0 <= tm1.max_cloud_percent <= 10
        assert 20 <= t.min_cloud_percent <= 50 <= t.max_cloud_percent <= 100
        assert tp1 == S2Acquisition(0, 0)
        assert AcquisitionFactory.from_dict(resolved.to_dict()) == resolved
        draws.append((tm1.max_cloud_percent, t.min_cloud_percent, t.max_cloud_percent))
    assert len(set(draws)) == len(draws)  # seeds give different draws
    assert guide_python_layout().resolved(3) == guide_python_layout()  # nothing to draw


def test_resolved_keeps_origin_windows_and_siblings():
    layout = AcquisitionFactory.from_dict({**guide_dict(), "siblings": [["t", "tp1"]]})
    resolved = layout.resolved(11)
    assert resolved == layout and resolved.siblings == layout.siblings and resolved.origin == "t"
    assert list(resolved.acquisitions) == list(layout.acquisitions)


# --- same-date truth (transplanted cloud masks) -----------------------------------------------------

SAME_DATE = ["meraner", "crga_os1", "crga_os2", "crga_os2_s2only"]


@pytest.mark.parametrize("stem", SAME_DATE)
def test_same_date_variants_transplant_a_mask_onto_a_clear_t_that_is_the_target(stem):
    original = AcquisitionFactory.get_acquisition(CONFIGS / f"{stem}.json")
    layout = AcquisitionFactory.get_acquisition(CONFIGS / f"{stem}_same_date.json")
    assert layout.transplants == {"t": "clouds"}
    assert layout.acquisitions["t"].s2 == S2Acquisition(0, 0)
    assert layout.acquisitions["target"].window_hours == (0, 0) and layout.are_siblings("t", "target")
    clouds = layout.acquisitions["clouds"]
    assert clouds.s1 is None and clouds.s2 == S2Acquisition(1, 100) and clouds.window_hours == (-8760, 8760)
    # every other acquisition is the original one
    for name, acquisition in original.acquisitions.items():
        if name not in ("t", "target"):
            assert layout.acquisitions[name] == acquisition
    # the records: the holes of t, the donor's date, never the donor's pixels
    names = layout.keys(with_20m_bands=True, with_dem=False)
    assert "s2_holes_t" in names and "s2_timestamp_clouds" in names
    assert not {"s2_clouds", "s2_20m_clouds"} & set(names)


def test_the_clear_neighbours_variant_differs_from_the_same_date_layout_by_its_tm1_and_tp1_only():
    """tm1 / tp1 cloud-free, the nearest ones from 5 to 30 days before / after t: what the time-series processor
    feeds."""
    same_date = AcquisitionFactory.get_acquisition(CONFIGS / "crga_os2_same_date.json")
    layout = AcquisitionFactory.get_acquisition(CONFIGS / "crga_os2_same_date_clear.json")
    assert layout.transplants == {"t": "clouds"}
    for name, acquisition in same_date.acquisitions.items():
        if name in ("tm1", "tp1"):
            assert layout.acquisitions[name].s2 == S2Acquisition(0, 0)
            assert layout.acquisitions[name].s1 == acquisition.s1
        else:
            assert layout.acquisitions[name] == acquisition
    assert layout.acquisitions["tm1"].window_hours == (-720, -120)
    assert layout.acquisitions["tp1"].window_hours == (120, 720)
    assert layout.acquisitions["tm1"].nearest and layout.acquisitions["tp1"].nearest  # as the processors choose


def test_nearest_is_read_from_json_written_back_and_defaults_to_false():
    content = guide_dict()
    content["tm1"]["nearest"] = True
    content["tp1"]["nearest"] = "True"  # the user guide's spelling of flags
    layout = AcquisitionFactory.from_dict(content)
    assert [layout.acquisitions[name].nearest for name in ("tm1", "t", "tp1")] == [True, False, True]
    written = layout.to_dict()
    assert written["tm1"]["nearest"] is True and written["tp1"]["nearest"] is True and "nearest" not in written["t"]
    assert AcquisitionFactory.from_dict(json.loads(json.dumps(written))) == layout


def test_same_date_python_and_json_forms_are_equal():
    layout = AcquisitionsLayout()
    layout.new_acquisition("t", s2_acquisition=S2Acquisition(0, 0), timeframe_origin=True, clouds_from="clouds")
    layout.new_acquisition(
        "clouds", s2_acquisition=S2Acquisition(1, 100), timeframe_start_hours=-8760, timeframe_end_hours=8760
    )
    layout.new_acquisition("target", s2_acquisition=S2Acquisition(0, 0))
    layout.set_siblings([["t", "target"]])
    layout.validate()
    content = layout.to_dict()
    assert content["t"]["clouds_from"] == "clouds"
    assert AcquisitionFactory.from_dict(json.loads(json.dumps(content))) == layout


def _same_date(t_extra=None, clouds=None):
    layout = AcquisitionsLayout()
    layout.new_acquisition("t", s2_acquisition=S2Acquisition(0, 0), timeframe_origin=True, **(t_extra or {}))
    layout.new_acquisition("clouds", **(clouds or {"s2_acquisition": S2Acquisition(1, 100)}))
    return layout.validate()


@pytest.mark.parametrize(
    "build, pattern",
    [
        (lambda: _same_date({"clouds_from": "cloud"}), r"'t': clouds_from 'cloud' is not an acquisition"),
        (lambda: _same_date({"clouds_from": "t"}), r"'t': clouds_from names the acquisition itself"),
        (lambda: _same_date({"clouds_from": 3}), r"'t': clouds_from must be an acquisition name"),
        (
            lambda: _same_date(
                {"clouds_from": "clouds"},
                {"s2_acquisition": S2Acquisition(), "s1_acquisition": S1Acquisition(), "max_s1s2_gap_hours": 24},
            ),
            r"clouds_from 'clouds' must be an S2-only acquisition",
        ),
        (
            lambda: AcquisitionsLayout().new_acquisition("t", s1_acquisition=S1Acquisition(), clouds_from="x"),
            r"'t': clouds_from needs an S2 image",
        ),
    ],
)
def test_invalid_transplants_name_the_acquisition(build, pattern):
    with pytest.raises(LayoutError, match=pattern):
        build()


def test_json_transplant_errors_name_the_file(tmp_path):
    content = json.loads((CONFIGS / "crga_os2_same_date.json").read_text())
    content["t"]["clouds_from"] = "nowhere"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(LayoutError, match=r"bad.json: acquisition 't': clouds_from 'nowhere' is not an acquisition"):
        AcquisitionFactory.get_acquisition(path)
