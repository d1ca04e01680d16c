"""The msjax command's persistent compilation cache (msjax.compile_cache)."""

import os
import pathlib
import subprocess
import sys

from msjax import cli, compile_cache

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_cache_dir_precedence():
  env = {"HOME": "/h", "XDG_CACHE_HOME": "/x", compile_cache.ENV_VAR: "/m"}
  assert compile_cache.cache_dir("/f", "/j", env) == "/f"
  assert compile_cache.cache_dir(None, "/j", env) == "/j"
  assert compile_cache.cache_dir(None, None, env) == "/m"
  del env[compile_cache.ENV_VAR]
  assert compile_cache.cache_dir(None, "", env) == "/x/msjax/jax"
  del env["XDG_CACHE_HOME"]
  assert compile_cache.cache_dir(None, None, env) == "/h/.cache/msjax/jax"
  assert compile_cache.cache_dir("~/c", None, env) == "/h/c"
  assert compile_cache.cache_dir("rel", None, env) == os.path.abspath("rel")


def test_flags_parse_and_exclude_each_other(capsys):
  args, _ = cli.parse_args(["eval", "--workdir", "w"])
  assert args.compile_cache is None and args.use_compile_cache
  args, _ = cli.parse_args(["claims", "--paper", "all", "--workdir", "w",
                            "--compile-cache", "c"])  # fmt: skip
  assert args.compile_cache == "c"
  args, _ = cli.parse_args(["eval", "--workdir", "w", "--no-compile-cache"])
  assert not args.use_compile_cache
  try:
    cli.parse_args(
      ["eval", "--workdir", "w", "--compile-cache", "c", "--no-compile-cache"]
    )
  except SystemExit as exit_:
    assert exit_.code == 2
  else:
    raise AssertionError("both flags were accepted")
  assert "not allowed with argument" in capsys.readouterr().err


def _msjax(*argv: str, env: dict) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "msjax.cli", *argv],
    env=env,
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )


def test_train_fills_the_default_cache_and_the_flag_turns_it_off(tmp_path):
  env = {
    k: v
    for k, v in os.environ.items()
    if k not in ("JAX_COMPILATION_CACHE_DIR", compile_cache.ENV_VAR)
  }
  env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME="")
  workdir = tmp_path / "run"
  done = _msjax(
    "train",
    "--config",
    "experiments/protomm.py:smoke",
    "--workdir",
    str(workdir),
    "--config.train.total_steps=2",
    "--config.eval.random_baseline=false",  # its init compile tests nothing
    "--config.train.mesh.data=1",  # the cache, not the mesh, is under test
    env=env,
  )
  assert done.returncode == 0, done.stderr[-2000:]
  cache = tmp_path / "home" / ".cache" / "msjax" / "jax"
  assert cache.is_dir() and any(cache.iterdir())
  # The traced step is stored beside the executables (msjax.train.step_export).
  steps = list((cache / compile_cache.STEPS_SUBDIR).iterdir())
  assert len(steps) == 1 and steps[0].suffix == ".jaxexport", steps
  env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
  done = _msjax(
    "eval", "--workdir", str(workdir), "--no-compile-cache", env=env
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert not (tmp_path / "xdg" / "msjax").exists()
