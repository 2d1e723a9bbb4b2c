from pathlib import Path

import pytest

from scaling.choices import Activation, Optimizer
from scaling.cli import main
from scaling.errors import UserError
from scaling.experiment import config

BASE = """
[experiment]
name = "t"
[task]
n = [2, 3]
"""


def test_defaults_and_ranges():
    cfg = config.parse(BASE)
    assert cfg.task.ns == (2, 3) and cfg.model.depths == (1, 2, 3) and cfg.model.widths == (1, 2, 4, 8, 16, 32, 64)
    assert cfg.model.width_search == "adaptive" and cfg.search.seeds == 8 and cfg.min_depth_max_at(2) == 3
    assert config.parse(BASE.replace("[2, 3]", "{values = [2, 5]}")).task.ns == (2, 5)
    assert config.parse(BASE.replace("[2, 3]", "[2, 4, 6]")).task.ns == (2, 4, 6)
    assert config.parse(BASE + "[model]\nwidths = [3, 5]\n").model.width_search == "grid"
    assert config.parse(BASE + "[model]\nwidths = {max = 24, min = 3}\n").model.widths == (3, 6, 12, 24)


def test_depth_schedules_tied_to_n():
    cfg = config.parse(BASE.replace("[2, 3]", "[2, 9]") + "[model]\ndepths = {fixed = [1], log2 = [0, 1]}\n"
                       "[search]\nmin_depth_widths = {times_n = 1}\n")
    assert [cfg.depths_at(n) for n in (2, 3, 4, 5, 9)] == [(1, 2), (1, 2, 3), (1, 2, 3), (1, 3, 4), (1, 4, 5)]
    assert cfg.depth_groups == ("depth=1", "depth=log2+0", "depth=log2+1")
    assert [cfg.group_depth("depth=log2+1", n) for n in (2, 8, 9)] == [2, 4, 5]
    assert cfg.min_depth_widths_at(9) == (9,) and cfg.min_depth_max_at(9) == 6 and cfg.min_depth_max_at(2) == 3
    from scaling.planning.search import grid_members
    points = {(m.n, m.depth, m.width) for m in grid_members(cfg)}
    assert (9, 5, 1) in points and (9, 5, 2) not in points and (9, 6, 9) in points and (9, 7, 9) not in points
    with pytest.raises(UserError, match="fixed and/or log2"):
        config.parse(BASE + "[model]\ndepths = {log3 = [0]}\n")


def test_hash_ignores_prose_but_not_science():
    a = config.parse(BASE)
    assert a.hash() == config.parse(BASE.replace('name = "t"', 'name = "t"\ndescription = "x"')).hash()
    assert a.hash() != config.parse(BASE + "[train]\nsteps = 1000\n").hash()


def test_the_hash_of_every_shipped_experiment_is_the_one_its_stores_carry():
    """The hash names a study's stored rows: a change to how Config is laid out must not change it."""
    experiments = Path(__file__).resolve().parents[1] / "experiments"
    assert config.load(experiments / "default.toml").hash() == "7567384667ef8dec"
    assert config.load(experiments / "n10.toml").hash() == "fe0fb70d578df2e1"


def test_sections_are_typed_and_replace_finds_a_fields_section():
    cfg = config.parse(BASE + "[model]\nactivation = \"tanh\"\n")
    assert cfg.model.activation is Activation.TANH and cfg.train.optimizer is Optimizer.ADAM
    changed = cfg.replace(seeds=2, pad_depth=False)
    assert (changed.search.seeds, changed.run.pad_depth, changed.model) == (2, False, cfg.model)
    assert changed.hash() != cfg.hash() and cfg.search.seeds == 8
    with pytest.raises(TypeError, match="no section"):
        cfg.replace(sedes=2)


@pytest.mark.parametrize("extra, where, problem", [
    ("[modle]\ndepths = [1]\n", "[modle]", "unknown section"),
    ("[model]\ndepth = [1]\n", "[model] depth", "unknown key"),
    ("[model]\ndepths = 3\n", "[model] depths", "non-empty list"),
    ("[model]\ndepths = []\n", "[model] depths", "non-empty list"),
    ("[model]\nwidths = [0, 2]\n", "[model] widths", ">= 1"),
    ("[model]\nwidths = {max = 0}\n", "[model] widths.max", ">= 1"),
    ("[train]\nlrs = []\n", "[train] lrs", "non-empty list"),
    ("[train]\nlrs = [-1.0]\n", "[train] lrs", "> 0"),
    ("[train]\nsteps = \"many\"\n", "[train] steps", "integer"),
    ("[train]\noptimizer = \"lbfgs\"\n", "[train] optimizer", "one of"),
    ("[search]\nsuccess_threshold = 2\n", "[search] success_threshold", "(0, 1]"),
    ("[search]\nseeds = 0\n", "[search] seeds", ">= 1"),
])
def test_bad_values_name_file_key_and_problem(extra, where, problem):
    with pytest.raises(UserError) as err:
        config.parse(BASE + extra, "x.toml")
    assert err.value.where == f"x.toml: {where}" and problem in err.value.problem


def test_too_many_bits_and_missing_keys():
    with pytest.raises(UserError, match=r"\[task\] n.*n <= 20"):
        config.parse(BASE.replace("[2, 3]", "[2, 24]"))
    with pytest.raises(UserError, match=r"\[task\] n: is required"):
        config.parse('[experiment]\nname = "t"\n')
    with pytest.raises(UserError, match="not valid TOML"):
        config.parse("[task\n")


def test_cli_bad_input_is_one_line_exit_2_and_creates_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE + "[model]\nwidths = [2, -1]\n")
    out = tmp_path / "out"
    assert main(["sweep", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.toml: [model] widths" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["sweep", str(tmp_path / "missing.toml"), "--out", str(out)]) == 2
    assert "no such experiment file" in capsys.readouterr().err


def test_the_width_profile_is_read_checked_and_hashed_only_when_it_changes_the_networks():
    constant = config.parse(BASE)
    assert constant.model.profile == "constant"
    assert config.parse(BASE + '[model]\nprofile = "constant"\n').hash() == constant.hash()
    halving = config.parse(BASE + '[model]\nprofile = "halving"\n')
    assert halving.model.profile == "halving" and halving.hash() != constant.hash()
    with pytest.raises(UserError, match=r"\[model\] profile.*must be one of constant, halving"):
        config.parse(BASE + '[model]\nprofile = "tapered"\n')


def test_init_may_be_a_list_searched_per_cell_and_is_hashed_as_before_when_single():
    single = config.parse(BASE)
    assert single.model.inits == ("he",) and config.parse(BASE + '[model]\ninit = "he"\n').hash() == single.hash()
    both = config.parse(BASE + '[model]\ninit = ["he", "lecun_bias"]\n')
    assert both.model.inits == ("he", "lecun_bias") and both.hash() != single.hash()
    for bad in ('[]', '["he", "he"]', '["he", "xavier"]'):
        with pytest.raises(UserError, match=r"\[model\] init"):
            config.parse(BASE + f"[model]\ninit = {bad}\n")


def test_set_overrides_are_checked_like_the_file_and_stored_as_toml_that_reads_back(tmp_path, capsys):
    path = tmp_path / "base.toml"
    path.write_text(BASE + "[model]\nwidths = {max = 16}\n")
    cfg = config.load(path, ["search.seeds=5", "model.widths.max=32", "train.lrs=[1e-2, 3e-2]", "experiment.name=v2",
                             "search.seeds=6"])  # the last one wins
    assert (cfg.search.seeds, max(cfg.model.widths), cfg.train.lrs, cfg.experiment.name) == (6, 32, (1e-2, 3e-2), "v2")
    assert "--set search.seeds=5" in cfg.source  # the stored text says how it was made ...
    again = config.parse(cfg.source)  # ... and is the config itself
    assert again.hash() == cfg.hash() and again.experiment == cfg.experiment and again.model == cfg.model
    assert config.load(path, ["search.seeds=5"]).hash() == config.parse(BASE + "[model]\nwidths = {max = 16}\n"
                                                                        "[search]\nseeds = 5\n").hash()
    for bad, where, problem in (("search.seedz=3", "[search] seedz", "unknown key"),
                                ("seeds=3", "--set seeds=3", "expected section.key=value"),
                                ("search.seeds=-1", "[search] seeds", "must be >= 1"),
                                ("search.seeds=x", "[search] seeds", "must be an integer")):
        with pytest.raises(UserError) as e:
            config.load(path, [bad])
        assert where in str(e.value) and problem in str(e.value)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--set", "model.widths=[2, -1]"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(with --set): [model] widths" in err and not out.exists()


def test_version_comes_from_the_package_metadata(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"scaling {importlib.metadata.version('scaling')}"


def test_overrides_write_back_any_text_dates_and_strays_as_toml_or_one_line(tmp_path):
    path = tmp_path / "base.toml"
    path.write_text(BASE.replace('name = "t"', 'name = "t"\ndescription = "run 😀 \\u007f \\"quoted\\" \\\\ tab\\t"'))
    cfg = config.load(path, ["search.seeds=5"])
    assert cfg.experiment.description == config.load(path).experiment.description  # written back exactly
    assert config.load(path, ["experiment.name=2024-01-01"]).experiment.name == "2024-01-01"  # a date: a string
    path.write_text("when = 2024-01-01\n" + BASE)  # a value outside every section: the schema's own error
    with pytest.raises(UserError, match=r"\[when\]: unknown section"):
        config.load(path, ["search.seeds=5"])


def test_weight_decay_is_read_checked_and_hashed_only_when_set():
    plain = config.parse(BASE)
    assert plain.train.weight_decay == 0.0
    assert config.parse(BASE + "[train]\nweight_decay = 0\n").hash() == plain.hash()  # every old store keeps its own
    decayed = config.parse(BASE + "[train]\nweight_decay = 0.01\n")
    assert decayed.train.weight_decay == 0.01 and decayed.hash() != plain.hash()
    from scaling.planning import search

    assert {m.weight_decay for m in search.members_at(decayed, 2, 1, 4)} == {0.01}
    for bad in ("-0.1", "1", "true", '"x"'):
        with pytest.raises(UserError, match=r"\[train\] weight_decay: must be a number in \[0, 1\)"):
            config.parse(BASE + f"[train]\nweight_decay = {bad}\n")
