"""Sweeps on Ray Tune: the plan, the command line, a local sweep with a failing trial, resume,
and a sweep on a real two-node Ray cluster started on this machine."""

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mnistlab.cli import main
from mnistlab.data import write_dataset
from mnistlab.errors import ConfigError
from mnistlab.models import get_model_class

from conftest import make_toy_arrays

ray = pytest.importorskip("ray", reason="the sweep extra (Ray Tune) is not installed")

from mnistlab import sweep as sweeps  # noqa: E402

# Two points (one of which diverges: plain SGD at rate 0.5 with an L2 penalty of 1000 sends
# the loss to infinity within a few steps), two seeds each.
DIVERGING_GRID = ["optimizer=sgd", "init=normal", "learning-rate=0.5", "l2=0,1000"]


def write_toy(directory: Path) -> Path:
    train_images, train_labels, test_images, test_labels = make_toy_arrays()
    return write_dataset(directory, train_images=train_images, train_labels=train_labels,
                         test_images=test_images, test_labels=test_labels)


def run_cli(arguments):
    try:
        return main(arguments)
    except SystemExit as exit_info:
        return exit_info.code


# ------------------------------------------------------------------------------ the plan


def test_plan_is_the_grid_times_the_seeds():
    plan = sweeps.make_plan("softmax", grid={"learning-rate": [0.01, 0.003],
                                             "batch_size": [32, 300]}, seeds=2)
    assert [trial.name for trial in plan.trials] == [f"trial-{k:03d}" for k in range(8)]
    assert [trial.seed for trial in plan.trials] == [0, 1] * 4
    assert plan.trials[0].options == {"learning_rate": 0.01, "batch_size": 32}
    assert plan.trials[7].options == {"learning_rate": 0.003, "batch_size": 300}
    assert {trial.point for trial in plan.trials} == {0, 1, 2, 3}
    assert plan.request["validation_split"] == 0.1  # selection needs held-out images
    config = plan.config(plan.trials[3])
    assert config.seed == 1 and config.model_config["batch_size"] == 300


def test_random_draws_are_tunes_distributions_and_repeat_with_the_seed():
    ranges = {"learning_rate": (1e-4, 1e-1), "l2": (0.0, 0.01), "batch_size": (16, 64)}
    plan = sweeps.make_plan("softmax", random=ranges, trials=6, seed=3)
    again = sweeps.make_plan("softmax", random=ranges, trials=6, seed=3)
    other = sweeps.make_plan("softmax", random=ranges, trials=6, seed=4)
    assert [t.options for t in plan.trials] == [t.options for t in again.trials]
    assert [t.options for t in plan.trials] != [t.options for t in other.trials]
    for trial in plan.trials:
        assert 1e-4 <= trial.options["learning_rate"] <= 0.1
        assert 0 <= trial.options["l2"] <= 0.01
        assert isinstance(trial.options["batch_size"], int)
        assert 16 <= trial.options["batch_size"] <= 64
    table = get_model_class("softmax").options
    log = sweeps.random_domain(table["learning_rate"], 1e-4, 1e-1)
    assert type(log.sampler).__name__ == "_LogUniform"
    assert type(sweeps.random_domain(table["l2"], 0.0, 0.01).sampler).__name__ == "_Uniform"


def test_options_are_named_as_options_with_dashes_or_as_flags():
    name = sweeps.resolve_option_name
    assert name("softmax", "learning_rate") == name("softmax", "learning-rate") \
        == name("softmax", "--learning-rate") == "learning_rate"
    assert name("random-forest", "trees") == "n_estimators"
    assert name("softmax", "steps") == "num_steps"


@pytest.mark.parametrize("arguments, message", [
    ({"grid": {"learning_rate": [1000.0]}}, "learning_rate must be a number"),
    ({"grid": {"no_such": [1]}}, "has no option 'no_such'"),
    ({"random": {"optimizer": (0, 1)}, "trials": 2}, "optimizer is not a number"),
    ({"random": {"learning_rate": (0.1, 0.01)}, "trials": 2}, "from low to high"),
    ({"random": {"learning_rate": (0.01, 0.1)}}, "needs a number of trials"),
    ({"grid": {"learning_rate": [0.1]}, "trials": 3}, "give a random range too"),
    ({"grid": {"learning_rate": [0.1]}, "validation_split": 0.0}, "must be above 0"),
    ({}, "nothing to sweep"),
    ({"grid": {"learning_rate": [0.1, 0.1]}}, "repeats a value"),
])
def test_plan_refuses_bad_requests_in_one_line(arguments, message):
    with pytest.raises(ConfigError, match=message) as caught:
        sweeps.make_plan("softmax", **arguments)
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------------- the command line


def test_without_ray_the_command_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    for name in [name for name in sys.modules if name == "ray" or name.startswith("ray.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import ray` now raises ImportError
    code = run_cli(["sweep", "softmax", "--grid", "learning-rate=0.1,0.2",
                    "--out", str(tmp_path / "sweep")])
    error = capsys.readouterr().err
    assert code == 2
    assert error.strip().splitlines() == [
        "mnistlab: error: sweeps run on Ray Tune, which is not installed: "
        "pip install 'mnistlab[sweep]'"]
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--grid", "learning-rate=fast"], "--grid learning_rate"),
    (["--grid", "learning-rate"], "--grid wants OPTION=V1,V2"),
    (["--random", "learning-rate=0.1"], "--random learning_rate wants LOW:HIGH"),
    (["--grid", "batch-norm=1"], "has no option 'batch-norm'"),
    (["--grid", "learning-rate=500"], "--learning-rate must be a number"),
])
def test_bad_options_are_one_line_errors_before_ray_starts(arguments, message, tmp_path,
                                                           monkeypatch, capsys):
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    code = run_cli(["sweep", "softmax", *arguments, "--out", str(tmp_path / "s")])
    error = capsys.readouterr().err
    assert code == 2
    assert len(error.strip().splitlines()) == 1 and message in error, error


def test_an_existing_directory_is_neither_reused_nor_replaced_unasked(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    arguments = ["sweep", "softmax", "--grid", "learning-rate=0.1,0.2", "--out",
                 str(tmp_path / "mine")]
    assert run_cli(arguments) == 2
    assert "already exists" in capsys.readouterr().err
    assert run_cli([*arguments, "--overwrite"]) == 2
    assert "not a sweep mnistlab wrote" in capsys.readouterr().err
    assert run_cli(["sweep", "--resume", str(tmp_path / "mine")]) == 2
    assert "no sweep to resume" in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"


def test_sweep_has_help_with_examples(capsys):
    assert run_cli(["sweep", "--help"]) == 0
    output = capsys.readouterr().out
    for flag in ("--grid", "--random", "--trials", "--seeds", "--cpus-per-trial",
                 "--address", "--resume", "--validation-split", "--limit-train"):
        assert flag in output
    assert "mnistlab sweep softmax --preset tutorial-v3" in output


# ------------------------------------------------------------------ the compile cache


def test_compile_cache_publishes_only_new_complete_entries(tmp_path):
    cache = sweeps.CompileCache(tmp_path / "xla")
    cache.directory.mkdir(mode=0o700)
    (cache.directory / "old.pb").write_bytes(b"old")
    cache.work = cache.directory / ".work" / "mine"
    cache.work.mkdir(parents=True)
    os.link(cache.directory / "old.pb", cache.work / "old.pb")  # found when it started
    (cache.work / "new.pb").write_bytes(b"new")  # compiled by this process
    assert cache.publish() == 1
    assert (cache.directory / "new.pb").read_bytes() == b"new"
    assert cache.publish() == 0  # published once
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = sweeps._host()
    (cache.directory / ".work" / f"{host}-{dead.pid}-abcd").mkdir()
    (cache.directory / ".work" / f"{host}-{os.getpid()}-abcd").mkdir()
    cache.remove_dead_work_dirs()
    assert not (cache.directory / ".work" / f"{host}-{dead.pid}-abcd").exists()
    assert (cache.directory / ".work" / f"{host}-{os.getpid()}-abcd").exists()
    os.utime(cache.directory / "old.pb", (1, 1))
    cache.prune(limit=3)  # the oldest entries go first, until the rest fit
    assert sorted(path.name for path in cache.directory.glob("*.pb")) == ["new.pb"]
    assert (cache.work / "old.pb").read_bytes() == b"old"  # a process's own link stays


def test_compile_cache_refuses_a_directory_others_can_write(tmp_path, monkeypatch):
    shared = tmp_path / "xla"
    shared.mkdir()
    shared.chmod(0o777)
    cache = sweeps.CompileCache(shared)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setenv("TF_XLA_FLAGS", "")
    assert cache.start() is False
    assert "persistent_cache" not in os.environ["TF_XLA_FLAGS"]


def test_compile_cache_directory_is_per_tensorflow_version_and_processor(monkeypatch, tmp_path):
    monkeypatch.setenv("MNISTLAB_CACHE_DIR", str(tmp_path))
    directory = sweeps.compile_cache_dir()
    assert directory.parent == tmp_path / "xla"
    assert re.fullmatch(r"tf[\w.]+-[0-9a-f]{12}", directory.name)


# ------------------------------------------------------------ a local sweep, and resume


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The command line's sweep of 4 trials (2 diverge) on a local Ray instance, 2 CPUs."""
    root = tmp_path_factory.mktemp("sweep")
    data = write_toy(root / "toy")
    out = root / "sweep"
    arguments = ["sweep", "softmax", "--dataset", str(data), "--out", str(out), "--seeds", "2",
                 "--cpus", "2", "--cpus-per-trial", "1", "--quiet"]
    for grid in DIVERGING_GRID:
        arguments += ["--grid", grid]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MNISTLAB_CACHE_DIR", str(root / "cache"))
        patch.setenv("COLUMNS", "200")
        started = time.perf_counter()
        captured = subprocess.run([sys.executable, "-c", "import sys; from mnistlab.cli "
                                   "import main; sys.exit(main(sys.argv[1:]))", *arguments],
                                  capture_output=True, text=True, env=os.environ.copy())
        seconds = time.perf_counter() - started
    return {"out": out, "data": data, "root": root, "code": captured.returncode,
            "output": captured.stdout, "error": captured.stderr, "seconds": seconds,
            "arguments": arguments}


@pytest.mark.slow
def test_local_sweep_writes_runs_table_and_report(local_sweep):
    out = local_sweep["out"]
    assert local_sweep["code"] == 0, local_sweep["error"]
    assert local_sweep["error"] == ""  # quiet: neither Ray nor TensorFlow says anything
    names = [f"trial-00{k}" for k in range(4)]
    for name in names:
        assert (out / name / "run.json").is_file() and (out / name / "config.json").is_file()
    document = json.loads((out / "sweep.json").read_text())
    rows = {row["trial"]: row for row in document["trials"]}
    assert [rows[name]["status"] for name in names] == ["completed"] * 2 + ["failed"] * 2
    assert [rows[name]["seed"] for name in names] == [0, 1, 0, 1]
    assert rows["trial-000"]["options"] == {"optimizer": "sgd", "init": "normal",
                                            "learning_rate": 0.5, "l2": 0.0}
    best = max((rows[name] for name in names[:2]), key=lambda row: row["val_accuracy"])
    assert document["best"]["trial"] == best["trial"]
    assert "never used to choose" in document["selection"]
    for name in names[:2]:  # each trial ran with TensorFlow limited to its one CPU
        assert rows[name]["threads"] == 1
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert rows[name]["val_accuracy"] == metrics["val_accuracy"]
        assert rows[name]["test_accuracy"] == metrics["test_accuracy"]
    csv_lines = (out / "sweep.csv").read_text().splitlines()
    assert csv_lines[0].startswith("trial,optimizer,init,learning_rate,l2,seed,")
    assert len(csv_lines) == 5
    report = (out / "sweep.html").read_text()
    assert "data:image/png;base64," in report and "never used to choose" in report
    assert f"Best run:</b> <code>{best['trial']}</code>" in report
    output = local_sweep["output"]
    assert re.search(r"trial-00\d \*", output)  # the table marks the best run
    assert f"best run (highest validation accuracy; the test set does not choose): " \
           f"{out / best['trial']}" in output
    assert "2 of 4 trials failed" in output


@pytest.mark.slow
def test_failing_trials_are_recorded_and_the_sweep_goes_on(local_sweep):
    out = local_sweep["out"]
    document = json.loads((out / "sweep.json").read_text())
    for row in document["trials"][2:]:
        assert row["status"] == "failed"
        assert "loss became" in row["error"]
        assert json.loads((out / row["trial"] / "run.json").read_text())["status"] == "failed"
    assert "Trials that did not complete" in (out / "sweep.html").read_text()
    assert document["counts"] == {"completed": 2, "failed": 2, "interrupted": 0, "not run": 0}


@pytest.mark.slow
def test_resume_trains_only_the_unfinished_trials(local_sweep, capsys, monkeypatch):
    out = local_sweep["out"]
    before = json.loads((out / "sweep.json").read_text())
    stamps = {name: (out / name / "run.json").stat().st_mtime_ns
              for name in ("trial-002", "trial-003")}
    # An interruption: one trial's directory is gone (killed while it was created), another
    # was stopped while it trained.
    shutil.rmtree(out / "trial-000")
    info = json.loads((out / "trial-001" / "run.json").read_text())
    (out / "trial-001" / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    monkeypatch.setenv("MNISTLAB_CACHE_DIR", str(local_sweep["root"] / "cache"))
    assert run_cli(["sweep", "--resume", str(out), "--cpus", "2", "--quiet"]) == 0
    after = json.loads((out / "sweep.json").read_text())
    assert after["session"]["trained"] == 2 and after["session"]["kept"] == 2
    for name, stamp in stamps.items():  # the finished (failed) trials were not touched
        assert (out / name / "run.json").stat().st_mtime_ns == stamp
    for old, new in zip(before["trials"], after["trials"]):
        assert new["status"] == old["status"]
        # The redone trials reach the same numbers: the same seed gives the same run.
        assert new["val_accuracy"] == old["val_accuracy"]
        assert new["test_accuracy"] == old["test_accuracy"]
    assert after["best"]["trial"] == before["best"]["trial"]
    assert "sweep in" in capsys.readouterr().out
    # A resume that names other settings is refused.
    code = run_cli(["sweep", "softmax", "--grid", "learning-rate=0.1", "--dataset",
                    str(local_sweep["data"]), "--resume", str(out)])
    assert code == 2
    assert "holds a sweep of other settings" in capsys.readouterr().err


# ------------------------------------------------------------ reproduce --parallel


@pytest.mark.slow
def test_reproduce_in_parallel_gives_the_serial_numbers(tmp_path, monkeypatch, capsys):
    """`reproduce --parallel` trains its runs as Ray trials; each run's numbers are those of
    the serial reproduction, and a finished parallel reproduction resumes to itself."""
    from mnistlab.experiment import reproduce

    data = write_toy(tmp_path / "toy")
    monkeypatch.setenv("MNISTLAB_CACHE_DIR", str(tmp_path / "cache"))
    common = dict(dataset_name=str(data), presets=("tutorial-rf", "tutorial-v3"), num_seeds=2,
                  progress=False)
    serial = reproduce(tmp_path / "serial", **common)
    parallel = reproduce(tmp_path / "parallel", parallel=True, **common)
    names = ["tutorial-rf", "tutorial-rf-seed1", "tutorial-v3", "tutorial-v3-seed1"]
    for name in names:
        metrics = json.loads((tmp_path / "parallel" / name / "metrics.json").read_text())
        assert metrics["test_accuracy"] == json.loads(
            (tmp_path / "serial" / name / "metrics.json").read_text())["test_accuracy"]
    assert [row["seeds"]["test_accuracies"] for row in parallel["models"]] == \
        [row["seeds"]["test_accuracies"] for row in serial["models"]]
    assert (tmp_path / "parallel" / "report.html").is_file()
    # From the command line, with a run failed on the way: one line naming it and the resume.
    (tmp_path / "parallel" / "summary.json").unlink()
    info_path = tmp_path / "parallel" / "tutorial-v3-seed1" / "run.json"
    info_path.write_text(json.dumps({**json.loads(info_path.read_text()), "status": "failed"}))
    code = run_cli(["reproduce", "--resume", str(tmp_path / "parallel"), "--parallel",
                    "--quiet"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert "tutorial-v3-seed1 did not complete; resume it with: mnistlab train --resume" in error


# --------------------------------------------------------------------- a real cluster


def _start_node(arguments, log: Path, environment: dict) -> subprocess.Popen:
    ray_command = Path(sys.executable).with_name("ray")
    with log.open("w") as stream:
        return subprocess.Popen([str(ray_command), "start", *arguments, "--block"],
                                env=environment, stdout=stream, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_for(log: Path, pattern: str, node: subprocess.Popen, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found
        if node.poll() is not None:
            break
        time.sleep(0.3)
    pytest.fail(f"ray start did not get ready: {log.read_text()[-2000:]}")


def _stop_node(node: subprocess.Popen) -> None:
    """Stop a node started by this test: its own process group, no one else's."""
    if node.poll() is None:
        os.killpg(node.pid, signal.SIGTERM)
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
    else:
        # The node's other processes may outlive `ray start` itself.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)


@pytest.mark.slow
def test_sweep_on_a_two_node_ray_cluster(tmp_path):
    data = write_toy(tmp_path / "toy")
    # A short temporary directory: Ray's socket paths must fit in 107 bytes.
    temporary = Path(tempfile.mkdtemp(prefix="mnistlab-test-ray-"))
    # The cluster's own token (nothing is written in ~/.ray), and a node that stops at once
    # when told to.
    environment = {**os.environ, "RAY_AUTH_MODE": "token",
                   "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0",
                   "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
                   "MNISTLAB_CACHE_DIR": str(tmp_path / "cache")}
    nodes = []
    try:
        head_log, worker_log = tmp_path / "head.log", tmp_path / "worker.log"
        nodes.append(_start_node(["--head", "--port=0", "--num-cpus=1",
                                  "--include-dashboard=false", f"--temp-dir={temporary}",
                                  "--node-ip-address=127.0.0.1"], head_log, environment))
        address = _wait_for(head_log, r"--address='([^']+)'", nodes[0]).group(1)
        nodes.append(_start_node([f"--address={address}", "--num-cpus=1",
                                  "--node-ip-address=127.0.0.1"], worker_log, environment))
        _wait_for(worker_log, r"Ray runtime started", nodes[1])
        out = tmp_path / "sweep"
        finished = subprocess.run(
            [sys.executable, "-m", "mnistlab", "sweep", "softmax", "--grid",
             "learning-rate=0.5,0.1", "--seeds", "2", "--dataset", str(data), "--out",
             str(out), "--address", address, "--quiet"],
            env=environment, capture_output=True, text=True, timeout=240)
        assert finished.returncode == 0, finished.stderr[-3000:]
        document = json.loads((out / "sweep.json").read_text())
        assert [row["status"] for row in document["trials"]] == ["completed"] * 4
        assert document["session"]["address"] == address
        assert len({row["node"] for row in document["trials"]}) == 2  # both nodes trained
        assert {row["threads"] for row in document["trials"]} == {1}
        assert len(list(out.glob("trial-*/metrics.json"))) == 4
    finally:
        for node in reversed(nodes):
            _stop_node(node)
        shutil.rmtree(temporary, ignore_errors=True)
