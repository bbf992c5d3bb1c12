"""Run directories: atomic writes, refusal to overwrite, reading back."""

import json

import pytest

from mnistlab.errors import MnistlabError, RunError
from mnistlab.runs import (
    StagedRun,
    check_run_target,
    find_runs,
    history_to_csv,
    load_run,
    read_history,
    write_history,
    write_json,
    write_text_atomic,
)


def make_run(path, status="completed", metrics=None):
    staged = StagedRun(path)
    write_json(staged.path / "run.json", {"status": status, "model": "softmax"})
    write_json(staged.path / "config.json", {"model": "softmax"})
    if metrics is not None:
        write_json(staged.path / "metrics.json", metrics)
    return staged.commit()


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_staged_run_appears_only_on_commit(tmp_path):
    staged = StagedRun(tmp_path / "run")
    assert not (tmp_path / "run").exists()
    write_json(staged.path / "run.json", {"status": "completed"})
    write_json(staged.path / "config.json", {})
    staged.commit()
    assert (tmp_path / "run" / "run.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_existing_run_refused_without_overwrite_and_kept(tmp_path):
    make_run(tmp_path / "run", metrics={"test_accuracy": 0.5})
    with pytest.raises(RunError, match="already exists"):
        StagedRun(tmp_path / "run")
    assert load_run(tmp_path / "run").metrics == {"test_accuracy": 0.5}


def test_overwrite_replaces_a_run_whole(tmp_path):
    make_run(tmp_path / "run", metrics={"test_accuracy": 0.5})
    staged = StagedRun(tmp_path / "run", overwrite=True)
    write_json(staged.path / "run.json", {"status": "completed"})
    write_json(staged.path / "config.json", {})
    staged.commit()
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_overwrite_never_replaces_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.txt").write_text("years of work")
    with pytest.raises(RunError, match="not a run directory"):
        check_run_target(tmp_path / "precious", overwrite=True)
    assert (tmp_path / "precious" / "thesis.txt").read_text() == "years of work"


def test_load_run_rejects_non_runs(tmp_path):
    with pytest.raises(RunError, match="not a directory"):
        load_run(tmp_path / "missing")
    with pytest.raises(RunError, match="not a run directory"):
        load_run(tmp_path)


def test_broken_json_is_a_run_error(tmp_path):
    path = make_run(tmp_path / "run")
    (path / "config.json").write_text("{not json")
    with pytest.raises(RunError, match="cannot be read"):
        load_run(path)


def test_history_written_as_csv_and_jsonl(tmp_path):
    history = [{"step": 50, "epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8},
               {"step": 100, "epoch": 1, "train_loss": 0.4, "train_accuracy": 0.9,
                "val_loss": 0.45, "val_accuracy": 0.85}]
    write_history(tmp_path, history)
    assert read_history(tmp_path) == history
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0] == "step,epoch,train_loss,train_accuracy,val_loss,val_accuracy"
    assert lines[1] == "50,1,0.5,0.8,,"
    assert history_to_csv([]).strip() == lines[0]


def test_find_runs_skips_staging_and_broken_directories(tmp_path):
    make_run(tmp_path / "a", metrics={"test_accuracy": 0.9})
    make_run(tmp_path / "group" / "b")
    StagedRun(tmp_path / "c")  # left uncommitted: hidden staging directory
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "run.json").write_text(json.dumps({"status": "completed"}))
    found = find_runs(tmp_path)
    assert [run.path.name for run in found] == ["a", "b"]


@pytest.mark.parametrize("damage", ["history", "run_list", "no_model", "config_key"])
def test_damaged_runs_are_run_errors_and_skipped_by_find_runs(tmp_path, damage):
    from mnistlab.experiment import run_config

    path = make_run(tmp_path / "run")
    if damage == "history":
        (path / "history.jsonl").write_text('{"step": 1}\n{broken\n')
    elif damage == "run_list":
        (path / "run.json").write_text("[1, 2]")
    elif damage == "no_model":
        (path / "run.json").write_text('{"status": "completed"}')
    else:
        (path / "config.json").write_text('{"model": "softmax", "colour": "blue"}')
    with pytest.raises(MnistlabError):
        run_config(load_run(path))
    assert find_runs(tmp_path) == []
