"""Run directories: atomic writes, refusal to overwrite what mnistlab did not write,
reading back through the records' schema check."""

import json
import os
import shutil
import socket
from datetime import datetime

import pytest

from mnistlab import records
from mnistlab.cli import main
from mnistlab.config import make_config
from mnistlab.errors import MnistlabError, RunError
from mnistlab.experiment import default_run_dir
from mnistlab.fileio import MARKER_FILE, read_marker
from mnistlab.runs import (
    DamagedRun,
    Run,
    StagedRun,
    check_run_target,
    create_run_dir,
    find_runs,
    history_to_csv,
    load_model,
    load_run,
    read_history,
    scan_runs,
    unique_run_dir,
    write_history,
    write_json,
    write_text_atomic,
)

from conftest import no_hang


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
    with pytest.raises(RunError, match="not a run directory mnistlab wrote .* not replacing"):
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


# --- what --overwrite may replace ------------------------------------------------------------


def test_a_run_carries_the_mnistlab_marker(tmp_path):
    path = make_run(tmp_path / "run")
    marker = read_marker(path)
    assert marker["format"] == "mnistlab" and marker["kind"] == "run" and len(marker["id"]) == 32
    assert read_marker(make_run(tmp_path / "other"))["id"] != marker["id"]


def test_files_named_like_a_run_without_the_marker_are_not_replaced(tmp_path):
    # The reported case: run.json and config.json beside a user's thesis.
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("run.json", "config.json"):
        (folder / name).write_text('{"status": "completed", "model": "softmax"}')
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(RunError, match=r"no \.mnistlab marker\); not replacing it$"):
        check_run_target(folder, overwrite=True)
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_a_users_file_inside_a_run_stops_overwrite(tmp_path):
    path = make_run(tmp_path / "run", metrics={"test_accuracy": 0.5})
    (path / "thesis.tex").write_text("years of work")
    with pytest.raises(RunError) as caught:
        StagedRun(path, overwrite=True)
    assert str(caught.value) == (f"{path} holds thesis.tex, which mnistlab did not write; "
                                 "not replacing it")
    (path / "thesis.tex").unlink()
    (path / "model").mkdir()
    (path / "model" / "notes").mkdir()  # inside a folder mnistlab writes whole: its own
    (path / ".config.json.abc123.tmp").write_text("")  # left by a killed atomic write
    StagedRun(path, overwrite=True)


@pytest.mark.parametrize("entry", ["notes.txt", "figures", "model.png"])
def test_anything_beyond_a_runs_files_stops_overwrite(tmp_path, entry):
    path = make_run(tmp_path / "run")
    (path / entry).mkdir() if "." not in entry else (path / entry).write_text("mine")
    with pytest.raises(RunError, match=f"holds {entry}, which mnistlab did not write"):
        check_run_target(path, overwrite=True)


def test_a_reproduction_is_replaced_only_by_a_reproduction(tmp_path):
    staged = StagedRun(tmp_path / "repro", marker="summary.json")
    write_json(staged.path / "summary.json", {})
    run = StagedRun(staged.path / "tutorial-rf")
    write_json(run.path / "run.json", {"status": "completed", "model": "random-forest"})
    run.commit()
    path = staged.commit()
    with pytest.raises(RunError, match="written by mnistlab as a reproduction, not a run"):
        check_run_target(path, overwrite=True)
    (path / "tutorial-rf" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="holds tutorial-rf/notes.txt, which mnistlab did not"):
        check_run_target(path, overwrite=True, marker="summary.json")
    (path / "tutorial-rf" / "notes.txt").unlink()
    check_run_target(path, overwrite=True, marker="summary.json")


def test_targets_that_are_not_directories_are_refused(tmp_path):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(RunError, match="is not a directory; not replacing it"):
        check_run_target(tmp_path / "file", overwrite=True)
    target = make_run(tmp_path / "run")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(RunError, match="is not a directory; not replacing it"):
        check_run_target(tmp_path / "link", overwrite=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="already exists"):
        check_run_target(tmp_path / "empty", overwrite=False)
    check_run_target(tmp_path / "empty", overwrite=True)  # nothing in it to lose


def test_create_run_dir_marks_and_replaces_only_a_marked_run(tmp_path):
    path = create_run_dir(tmp_path / "a" / "run")
    assert read_marker(path)["kind"] == "run" and list(path.iterdir()) == [path / MARKER_FILE]
    (path / "metrics.json").write_text("{}")
    with pytest.raises(RunError, match="already exists"):
        create_run_dir(path)
    create_run_dir(path, overwrite=True)
    assert not (path / "metrics.json").exists()
    (path / MARKER_FILE).unlink()
    (path / "metrics.json").write_text("{}")
    with pytest.raises(RunError, match="not replacing it"):
        create_run_dir(path, overwrite=True)


def test_cli_train_overwrite_refuses_a_directory_with_a_users_file(toy_dataset_dir, tmp_path,
                                                                  capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text('{"status": "completed", "model": "random-forest"}')
    (out / "config.json").write_text('{"model": "random-forest"}')
    (out / "thesis.tex").write_text("years of work")
    code = main(["train", "random-forest", "--trees", "2", "--dataset", str(toy_dataset_dir),
                 "--out", str(out), "--overwrite", "--quiet"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "not replacing it" in error, error
    assert sorted(path.name for path in out.iterdir()) == ["config.json", "run.json",
                                                          "thesis.tex"]


# --- names of runs started together ---------------------------------------------------------


def test_default_run_dirs_of_runs_started_in_the_same_second_differ(tmp_path, monkeypatch):
    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz)

    monkeypatch.setattr("mnistlab.runs.datetime", FrozenClock)
    config = make_config("softmax")
    names = {default_run_dir(config, tmp_path) for _ in range(500)}
    assert len(names) == 500
    assert all(path.name.startswith("20260102-030405-softmax-") for path in names)
    # A name that exists is drawn again.
    drawn = iter(["aaaaaa", "aaaaaa", "bbbbbb"])
    monkeypatch.setattr("secrets.token_hex", lambda size: next(drawn))
    (tmp_path / "20260102-030405-softmax-aaaaaa").mkdir()
    assert default_run_dir(config, tmp_path).name == "20260102-030405-softmax-bbbbbb"


def test_reproductions_and_sweeps_started_in_the_same_second_get_their_own_directories(
        tmp_path, monkeypatch):
    """`reproduce` and `sweep` without --out name their directory as runs are named."""
    import mnistlab.experiment

    class Named(Exception):
        pass

    def named(label):
        raise Named(label)

    monkeypatch.setattr(mnistlab.experiment, "unique_run_dir", named)
    with pytest.raises(Named, match="^reproduce$"):
        mnistlab.experiment.reproduce(None, progress=False)
    names = {unique_run_dir("reproduce", tmp_path) for _ in range(200)}
    assert len(names) == 200


# --- records: one schema check, one line naming the file and the field -----------------------

GOOD_INFO = {"status": "completed", "model": "softmax", "preset": None,
             "started": "2026-01-01T00:00:00+00:00"}
GOOD_CONFIG = {"model": "softmax", "dataset": "mnist", "seed": 0, "validation_split": 0.0,
               "limit_train": None, "limit_test": None, "model_config": {},
               "versions": {"numpy": "2.0"},
               "data": {"class_names": [str(k) for k in range(10)], "checksums": {}}}
SCORES = {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}


@pytest.mark.parametrize("record, change, message", [
    ("run.json", {"status": "done"}, "status must be one of completed, failed, running, "
                                     "interrupted, got a text ('done')"),
    ("run.json", {"model": ["softmax"]}, "model must be a text, got a list of 1 item"),
    ("run.json", {"model": "sofmax"}, "model must be one of"),
    ("run.json", {"preset": 3}, "preset must be a text or null, got a number (3)"),
    ("run.json", {"started": {}}, "started must be a text"),
    ("run.json", {"status": None}, "status must be a text, got null"),
    ("config.json", {"dataset": 5}, "dataset must be a non-empty text, got a number (5)"),
    ("config.json", {"limit_test": "10"}, "limit_test must be a whole number from 1 to "
                                          "1,000,000,000 or null, got a text ('10')"),
    ("config.json", {"limit_train": 0}, "limit_train must be a whole number from 1"),
    ("config.json", {"seed": -1}, "seed must be a whole number from 0 to 4,294,967,295"),
    ("config.json", {"seed": True}, "seed must be a whole number"),
    ("config.json", {"validation_split": 1.0}, "validation_split must be a number in [0, 1)"),
    ("config.json", {"model_config": []}, "model_config must be an object"),
    ("config.json", {"data": []}, "data must be an object, got a list of 0 items"),
    ("config.json", {"data": {"class_names": 3}}, "data.class_names must be a list"),
    ("config.json", {"data": {"class_names": ["a", 7]}}, "data.class_names[1] must be a "
                                                          "non-empty text, got a number (7)"),
    ("config.json", {"data": {"class_names": ["a", "a"]}}, "data.class_names must not repeat"),
    ("config.json", {"data": {"checksums": {"x": 1}}}, "data.checksums.x must be a text"),
    ("config.json", {"versions": {"numpy": 2}}, "versions.numpy must be a text"),
    ("config.json", {"colour": "blue"}, "has an unknown field 'colour'"),
    ("config.json", {"model": "random-forest"}, "run.json: model is 'softmax', but config.json"
                                                " says 'random-forest'"),
    ("metrics.json", {"test_accuracy": "0.9"}, "test_accuracy must be a number in [0, 1], got "
                                               "a text ('0.9')"),
    ("metrics.json", {"test_accuracy": 1.5}, "test_accuracy must be a number in [0, 1]"),
    ("metrics.json", {"test_accuracy": float("nan")}, "test_accuracy must be a number in "),
    ("metrics.json", {"test_loss": -1}, "test_loss must be a finite number of at least 0"),
    ("metrics.json", {"test_loss": 10**400}, "test_loss must be a finite number of at least 0"),
    ("metrics.json", {"train_seconds": -0.1}, "train_seconds must be a finite number of at "),
    ("metrics.json", {"parameters": 1.5}, "parameters must be a whole number from 0"),
    ("metrics.json", {"confusion_matrix": [[1, 2], [3, 4]]}, "confusion_matrix must be a list "
                                                             "of 10 items, got a list of 2"),
    ("metrics.json", {"confusion_matrix": [[0] * 10] * 9 + [[0] * 9]},
     "confusion_matrix[9] must be a list of 10 items"),
    ("metrics.json", {"confusion_matrix": [[0] * 10] * 9 + [[0] * 9 + [-1]]},
     "confusion_matrix[9][9] must be a whole number from 0"),
    ("metrics.json", {"per_class": {str(k): SCORES for k in range(9)}},
     "per_class must have 10 entries, one per class, got 9"),
    ("metrics.json", {"per_class": {**{str(k): SCORES for k in range(10)}, "x": SCORES}},
     "per_class must have 10 entries, one per class, got 11"),
    ("metrics.json", {"per_class": {**{str(k): SCORES for k in range(10)},
                                    "3": {**SCORES, "recall": 2}}},
     "per_class.3.recall must be a number in [0, 1]"),
    ("history.jsonl", {"step": 0, "epoch": 1}, "history.jsonl, line 2: step must be a whole "
                                               "number from 1"),
    ("history.jsonl", {"step": 5, "epoch": 1, "train_loss": "low"},
     "line 2: train_loss must be a number or null, got a text ('low')"),
    ("history.jsonl", {"step": 5}, "line 2: epoch is missing"),
    ("history.jsonl", [1, 2], "line 2: must be an object, got a list of 2 items"),
])
def test_every_record_is_checked_in_one_line(tmp_path, record, change, message):
    path = make_run(tmp_path / "run")
    write_json(path / "run.json", GOOD_INFO)
    write_json(path / "config.json", GOOD_CONFIG)
    if record == "history.jsonl":
        (path / record).write_text(json.dumps({"step": 1, "epoch": 1}) + "\n"
                                   + json.dumps(change) + "\n")
    else:
        content = {**json.loads((path / record).read_text())} if record != "metrics.json" \
            else {}
        write_json(path / record, {**content, **change})
    with pytest.raises(RunError) as caught:
        load_run(path)
    error = str(caught.value)
    assert message in error, error
    assert error.startswith(str(path / ("run.json" if "run.json: model is" in message
                                        else record)))
    assert "\n" not in error
    damaged, = scan_runs(tmp_path)
    assert isinstance(damaged, DamagedRun) and damaged.problem == error


def test_a_diverged_history_with_nan_and_null_values_is_a_record(tmp_path):
    path = make_run(tmp_path / "run", status="failed")
    (path / "history.jsonl").write_text('{"step": 4, "epoch": 1, "train_loss": 0.5, '
                                        '"val_loss": NaN, "val_accuracy": null}\n')
    assert load_run(path).history[0]["val_accuracy"] is None


@pytest.mark.parametrize("record", ["run.json", "config.json", "metrics.json",
                                    "history.jsonl"])
def test_special_files_and_hostile_json_are_one_line_errors(tmp_path, record, monkeypatch):
    path = make_run(tmp_path / "run")
    (path / record).unlink(missing_ok=True)
    os.mkfifo(path / record)
    with no_hang(), pytest.raises(RunError) as caught:
        load_run(path)
    message = str(caught.value)
    assert ("is not a regular file" in message or "not a run directory" in message), message
    (path / record).unlink()
    (path / record).write_text("[" * 100_000)  # nested past Python's recursion limit
    with pytest.raises(RunError, match="cannot be read: nested too deeply"):
        load_run(path)
    (path / record).write_bytes(b"{\"a\": \"\xff\"}")
    with pytest.raises(RunError, match="cannot be read"):
        load_run(path)
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", 10)
    monkeypatch.setattr(records, "MAX_HISTORY_BYTES", 10)
    monkeypatch.setattr("mnistlab.runs.MAX_HISTORY_BYTES", 10)
    (path / record).write_text(json.dumps({"step": 1, "epoch": 1, "pad": "x" * 100}))
    with pytest.raises(RunError, match="is larger than"):
        load_run(path)


def test_scan_runs_lists_a_damaged_run_with_its_reason_and_goes_on(tmp_path):
    make_run(tmp_path / "a")
    make_run(tmp_path / "b")
    make_run(tmp_path / "c")
    (tmp_path / "b" / "run.json").write_text('{"status": "completed", "model": 3}')
    found = scan_runs(tmp_path)
    assert [type(run) for run in found] == [Run, DamagedRun, Run]
    assert found[1].path == tmp_path / "b" and found[1].status == "damaged"
    assert "run.json: model must be a text, got a number (3)" in found[1].problem
    assert [run.path.name for run in find_runs(tmp_path)] == ["a", "c"]


def test_a_model_of_another_class_count_than_the_run_is_refused(shapes_run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(shapes_run, path)
    config = json.loads((path / "config.json").read_text())
    config["data"]["class_names"] = ["a", "b", "c"]
    write_json(path / "config.json", config)
    (path / "metrics.json").unlink()
    with pytest.raises(RunError, match="predicts 10 classes, but .*config.json names 3"):
        load_model(path)


def test_socket_in_place_of_a_record(tmp_path):
    path = make_run(tmp_path / "run")
    (path / "metrics.json").unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path / "metrics.json"))
        with no_hang(), pytest.raises(RunError, match="metrics.json cannot be read"):
            load_run(path)
    finally:
        server.close()
