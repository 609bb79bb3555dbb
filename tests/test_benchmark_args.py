"""The benchmark scripts (benchmarks/step_time.py, performance.py, first_run.py) as a user
meets them: an argument mistake is one ``error: ...`` line on stderr and exit status 2,
found before anything heavy is built; and each script's header says what its figures were
measured under (CPU model, AMX / AVX512_BF16, threads, OpenMP wait policy, load average),
with OpenMP threads waiting passively unless the environment says otherwise. Each case runs
the script in a fresh process; nothing here is timed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_script

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


def _run(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environment.update(OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=300)


ARGUMENT_MISTAKES = [
    ("step_time.py", ["--steps", "0"], "error: argument --steps: needs a whole number >= 1, got '0' (see step_time.py --help)"),
    ("performance.py", ["--only", "mining", "--repeats", "0"],
     "error: argument --repeats: needs a whole number >= 1, got '0' (see performance.py --help)"),
    ("performance.py", ["--only", "overhead", "--overhead-steps", "1"],
     "error: argument --overhead-steps: needs a whole number >= 2, got '1' (see performance.py --help)"),
    ("performance.py", ["--device", "tpu"],
     "error: argument --device: 'tpu' is not a device this benchmark runs on; use cpu or cuda "
     "(see performance.py --help)"),
    ("first_run.py", ["--threads", "0"],
     "error: argument --threads: needs a whole number >= 1, got '0' (see first_run.py --help)"),
]


@pytest.mark.parametrize("script, args, line", ARGUMENT_MISTAKES, ids=[f"{s} {' '.join(a)}" for s, a, _ in ARGUMENT_MISTAKES])
def test_an_argument_mistake_is_one_error_line_and_status_2(script, args, line):
    done = _run(script, *args)
    assert (done.returncode, done.stderr, done.stdout) == (2, line + "\n", "")


def test_cuda_without_a_gpu_is_one_error_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = _run("performance.py", "--device", "cuda", "--only", "mining")
    built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
    assert (done.returncode, done.stderr, done.stdout) == (
        2, f"error: argument --device: cuda: torch sees no GPU on this machine (torch {torch.__version__}, {built}); "
           "use --device cpu, or run on a machine with a GPU (see performance.py --help)\n", "")  # fmt: skip


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr  # no traceback, no warnings
    return lines[0]


def test_fp16_on_a_cpu_is_the_recipe_error_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("fp16 is valid on this machine")
    line = _one_error_line(_run("step_time.py", "--mixed-precision", "fp16", "--steps", "1", "--warmup", "0"))
    assert line.startswith("error: train.mixed_precision: fp16 needs a GPU")


def test_an_image_size_the_recipe_refuses_is_its_error_line():
    line = _one_error_line(_run("step_time.py", "--image-size", "0", "0", "--steps", "1", "--warmup", "0"))
    assert "data.image_height" in line and "(got 0)" in line


def test_a_failed_run_ends_first_run_with_its_error_line(monkeypatch, capsys):
    done = _run("first_run.py", "--recipe", "recipes/nonexistent.yaml")
    from wsreid.cli import main  # the line wsreid run itself prints for the same mistake

    monkeypatch.chdir(REPO)
    assert main(["run", "recipes/nonexistent.yaml"]) == 2
    assert (done.returncode, done.stderr) == (2, capsys.readouterr().err)
    assert _one_error_line(done).startswith("error: recipes/nonexistent.yaml: ")


def _header_pattern(wait_policy: str) -> str:
    cpu = re.escape(load_script(BENCHMARKS / "bench_common.py", "bench_common_under_test").cpu_model())
    answer = "(yes|no|unknown)"
    return (rf"machine: {cpu}, {os.cpu_count()} cpus, torch \S+, AMX tiles {answer}, AVX512_BF16 {answer}, "
            rf"threads 1, OMP_WAIT_POLICY={wait_policy}, load average \d+\.\d\d \d+\.\d\d \d+\.\d\d")


def test_cpu_model_is_the_name_in_proc_cpuinfo():
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.split(":", 1)[0].strip() == "model name"] if cpuinfo.exists() else []  # fmt: skip
    if not names:
        pytest.skip("no model name in /proc/cpuinfo here")
    assert load_script(BENCHMARKS / "bench_common.py", "bench_common_under_test").cpu_model() == names[0]


def test_headers_say_the_machine_threads_wait_policy_and_load():
    """Runs that stop early (an error after the header; performance.py's data section on one
    image) print the header all the same; a wait policy the environment sets is kept
    (step_time.py's ACTIVE, the others PASSIVE by default)."""
    expected = _header_pattern("PASSIVE")
    runs = [
        _run("step_time.py", "--image-size", "0", "0", "--steps", "1", "--warmup", "0",
             env={"OMP_WAIT_POLICY": "ACTIVE"}),
        _run("first_run.py", "--recipe", "recipes/nonexistent.yaml"),
        _run("performance.py", "--only", "data", "--data-images", "1", "--data-repeats", "1", "--threads", "1"),
    ]
    for done, policy in zip(runs, ("ACTIVE", "PASSIVE", "PASSIVE")):
        first = done.stdout.splitlines()[0] if done.stdout else ""
        assert re.fullmatch(expected.replace("PASSIVE", policy), first), (done.args[1], first, done.stderr[-500:])
    assert runs[2].returncode == 0, runs[2].stderr[-2000:]


def test_the_gpu_queue_is_generated_from_the_shipped_studies():
    """benchmarks/sweeps/gpu-sweep.yaml says "do not edit": it is what make_gpu_sweep.py
    writes from recipes/ablations/headline.yaml and dgia.yaml today (every headline row,
    then the ablation rows not already queued)."""
    from wsreid.recipe.yamlio import dump_yaml_text

    dump_yaml_text({"a": None})  # writing a recipe first used to change how every ruamel user wrote None
    text = load_script(REPO / "benchmarks" / "sweeps" / "make_gpu_sweep.py", "make_gpu_sweep").render()
    assert text == (REPO / "benchmarks" / "sweeps" / "gpu-sweep.yaml").read_text(), \
        "gpu-sweep.yaml is out of date: run python benchmarks/sweeps/make_gpu_sweep.py"
    labels = re.findall(r"^- label: (.*)$", text, flags=re.M)
    assert labels[:3] == ["ITC (B)", "DGIA", "DGIA, IASC without relations (control)"]
    assert "B+LRC-all (control)" in labels and "B" not in labels and "full" not in labels
    assert len(labels) == len(set(labels)) == 19
