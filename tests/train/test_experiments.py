"""Every experiment config loads, is locked, and fails early without data."""

import pathlib

import pytest

from msjax.methods import METHODS
from msjax.train import config_lib
from msjax.train.errors import ConfigError, DataError
from msjax.train.loop import train_and_evaluate

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(p.name for p in (ROOT / "experiments").glob("*.py"))
PAPER = {
  "protomm_paper.py": ("dataset=wesad", "wesad"),
  "promobal_paper.py": ("dataset=pamap2,lambdas=sarcasm", "pamap2"),
  "infomae_paper.py": ("stage=2", "mod_vehicle"),
}


def test_every_experiment_is_covered():
  assert {"protomm.py", "promobal.py", "infomae.py", "baselines.py"} <= set(
    EXPERIMENTS
  )
  assert set(PAPER) <= set(EXPERIMENTS)


@pytest.mark.parametrize("smoke", [False, True], ids=["full", "smoke"])
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_loads_and_rejects_unknown_keys(name, smoke):
  path = ROOT / "experiments" / name
  config = config_lib.load_config(f"{path}:smoke" if smoke else str(path))
  assert sorted(config) == sorted(config_lib.SECTIONS)
  assert config.method in METHODS
  assert config.train.total_steps > 0
  if smoke:
    assert config.train.total_steps <= 10 and config.train.batch_size <= 16
  with pytest.raises(ConfigError, match="unknown config key 'optim.lr'"):
    config_lib.load_config(str(path), ["optim.lr=0.1"])
  with pytest.raises(ConfigError, match="unknown config argument 'smok'"):
    config_lib.load_config(f"{path}:smok")


def test_paper_hyperparameters():
  protomm = config_lib.load_config(str(ROOT / "experiments/protomm_paper.py"))
  assert (protomm.loss.alpha, protomm.loss.tau) == (0.5, 0.1)
  assert (protomm.loss.epsilon, protomm.loss.sinkhorn_iters) == (0.05, 3)
  promobal = config_lib.load_config(
    f"{ROOT}/experiments/promobal_paper.py:"
    "steps_per_epoch=10,lambdas=kinetics_sounds"
  )
  optim = promobal.optim
  assert (optim.optimizer, optim.momentum, optim.weight_decay) == (
    "sgd",
    0.9,
    0.1,
  )
  assert (optim.schedule, optim.step_boundaries, optim.step_factor) == (
    "step",
    (700,),
    0.1,
  )
  assert promobal.train.total_steps == 1500
  loss = promobal.loss
  assert (loss.lam_uni, loss.lam_ce, loss.lam_fus, loss.lam_ca) == (1, 1, 3, 3)
  infomae = config_lib.load_config(str(ROOT / "experiments/infomae_paper.py"))
  assert (infomae.optim.optimizer, infomae.optim.schedule) == (
    "adamw",
    "cosine",
  )
  assert infomae.loss.mask_ratio == 0.75 and infomae.loss.stage == 1
  # Base SWIN on padded, time/frequency-masked maps: empty patches masked.
  assert infomae.model.swin.empty_tokens == "masked"
  # ...and so do the built-in-data experiments and the SWIN baselines,
  # which also drop the patch LayerNorm (the suite's SWIN fields).
  for name in (
    "infomae.py:stage=1",
    "baselines.py:method=mae",
    "baselines.py:method=clip,encoder=swin",
    "byod.py:method=mae,path=/x.npz,modalities=a+b,rates=8+8",
  ):
    config = config_lib.load_config(str(ROOT / "experiments" / name))
    assert config.model.swin.empty_tokens == "masked", name
    assert not config.model.swin.patch_norm, name
  stage2 = config_lib.load_config(
    str(ROOT / "experiments/infomae_paper.py:stage=2")
  )
  assert stage2.train.sequence_length == stage2.loss.seq_len > 1
  assert "discriminators" in stage2.optim.groups


@pytest.mark.parametrize("name", sorted(PAPER))
def test_real_dataset_without_files_fails_in_one_line(name, tmp_path):
  arg, source = PAPER[name]
  config = config_lib.load_config(
    f"{ROOT / 'experiments' / name}:smoke,{arg}",
    [
      f"data.data_dir={tmp_path / 'tfds'}",
      f"data.manual_dir={tmp_path / 'manual'}",
    ],
  )
  with pytest.raises(DataError) as error:
    train_and_evaluate(config, str(tmp_path / "run"))
  message = str(error.value)
  assert message.startswith(f"data source '{source}' (train): ")
  assert "\n" not in message and str(tmp_path / "manual") in message


def test_baselines_train_at_the_budget_of_the_run_they_are_compared_with():
  def budget(spec):
    config = config_lib.load_config(f"{ROOT}/experiments/{spec}")
    return (
      config.train.total_steps,
      config.optim.learning_rate,
      config.optim.warmup_steps,
      config.optim.schedule,
      config.train.batch_size,
    )

  protomm = budget("protomm.py")
  promobal = budget("promobal.py")
  infomae = budget("infomae.py:stage=1")
  for method in ("clip", "tstcc", "cav_mae", "tnc", "moco"):
    assert budget(f"baselines.py:method={method}") == protomm, method
  for method in ("supervised_concat", "ogm_ge", "mmpareto"):
    assert budget(f"baselines.py:method={method}") == promobal, method
  assert budget("baselines.py:method=mae") == infomae
  assert budget("baselines.py:method=clip,encoder=swin") == infomae
  assert protomm[0] == 5 * promobal[0]  # the two budgets differ
