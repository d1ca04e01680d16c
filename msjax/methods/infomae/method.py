"""InfoMAE: pair-efficient cross-modal alignment with masked autoencoders.

SPEC §4. Input per modality: spectrograms ``batch["signals"][m]`` of shape
``[B, C, F, N]`` (compressed by ``sign(x) log1p|x|`` unless
``model.input_compression = "none"``, then zero-padded to the patch grid of
``config.model.patch_size``). Two stages, chosen by ``config.loss.stage``:

* Stage 1 (unimodal MAE, unpaired data): per modality a SWIN encoder sees the
  visible patches only (``mask_ratio`` hidden), an MAE decoder predicts every
  patch from the encoder's patch latents, ``L_i = masked_mse`` on the masked
  patches; the loss is ``sum_i L_i`` (separable: each modality's batch may
  come from unpaired data).
* Stage 2 (alignment, paired data): encoders from stage 1 (trainable, or
  frozen with ``model.freeze_encoders``), shared/private 2-layer projectors
  ``U_i``, ``V_i``, decoders on ``h_i = concat(U_i, V_i)`` (broadcast to
  every patch position; the masked patches are reconstructed), the ten
  density-ratio discriminators, and
  ``L_main = L_shared + L_private + L_rec + L_aug + L_temp``.

Gradient routing (one loss, two optimisers): ``loss_fn`` returns
``L_main + L_D``. ``L_main`` sees the discriminators through
``stop_gradient(params)``; ``L_D`` sees every representation through
``stop_gradient``. Hence ``grad`` of the returned loss is ``grad L_D`` on the
discriminator parameters (label ``"discriminators"``) and ``grad L_main`` on
everything else (label ``"main"``; stage-2 encoders are ``"frozen"`` with
``model.freeze_encoders``, and the trainer applies ``optax.set_to_zero``).

Choices made here (SPEC leaves them open):

* The encoder runs on the masked input in stage 2 too (one masked pass per
  view gives ``L_rec`` and the representations of every other term).
* ``L_aug``: the second view is ``msjax.data.augment.augment`` of the
  spectrogram as the ``loss.augment`` section describes it (by default
  frequency and time masking up to 0.2 of the axis, per-channel scaling with
  sigma 0.1, every op on every sample), encoded with
  its own random patch mask; ``NTXent(h_i, h'_i)`` per modality, summed.
* ``L_temp`` acts on ``n(h_i)`` (l2-normalised, ``loss.temporal_normalize``)
  per modality, summed; the batch is ``S = B / loss.seq_len`` sequences of
  ``loss.seq_len`` consecutive windows, sequence-major. ``seq_len = 1``
  turns the term off.
* ``L_D`` is the sum of the ten discriminators' BCE losses; product tuples
  permute each argument independently (``product_of_marginals``).

Options that depart from SPEC (off by default; docs/claims.md has the
evidence): ``model.center_features`` feeds the projectors the encoder
features less their mean (batch mean in training, a running mean in
``batch_stats/feature_mean`` for evaluation), which keeps stage 2 from
collapsing at its start; ``loss.pairwise_mi = "maximize"`` flips the sign
of the pairwise density-ratio terms ``t(X_i, U_i)``, ``t(X_{3-i}, U_i)``
and ``t(X_i, V_i)``.

Starting stage 2 from stage 1: :func:`init_from_pretrained` (the trainer's
``train.init_from`` hook) or :func:`init_from_stage1` copy the encoders.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from msjax.methods.infomae import losses, parts
from msjax.methods.interface import Method
from msjax.methods.views import augment_config

__all__ = [
  "DISC_GROUP",
  "EVAL_FEATURES",
  "METHOD",
  "SIZES",
  "align",
  "default_config",
  "swin_encoder_model",
  "embed",
  "init",
  "init_from_pretrained",
  "init_from_stage1",
  "loss_fn",
  "param_labels",
  "requires_paired_rows",
]

DISC_GROUP = losses.DISC_GROUP

#: Values of ``model.eval_features`` (what stage 2's :func:`embed` returns).
EVAL_FEATURES = ("encoder", "projections")
#: The ``size`` values of :func:`default_config` (``METHOD.sizes``).
SIZES = ("tiny", "base")


def default_config(size: str = "tiny") -> ml_collections.ConfigDict:
  """The ``model`` and ``loss`` sections.

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"base"`` (FOCAL-like SWIN).

  Returns:
    ``ConfigDict(model=..., loss=...)``; ``loss.stage`` defaults to 2.
  """
  if size not in SIZES:
    raise ValueError(f"size must be 'tiny' or 'base', got {size!r}.")
  tiny = size == "tiny"
  model = dict(
    patch_size=(2, 1) if tiny else (4, 1),
    input_compression="log1p",
    # The SWIN encoder of each modality (msjax.nn.SwinEncoder).
    swin=dict(
      window=(2, 2) if tiny else (3, 3),
      embed_dim=8 if tiny else 64,
      depths=(2,) if tiny else (2, 2, 4),
      num_heads=2 if tiny else 4,
      mlp_ratio=2.0 if tiny else 4.0,
      drop_rate=0.0 if tiny else 0.2,
      attn_drop_rate=0.0 if tiny else 0.2,
      drop_path_rate=0.0 if tiny else 0.1,
      out_dim=16 if tiny else 256,
      # "masked": the padding up to the window grid is left out (see
      # msjax.nn.SwinEncoder.pad_tokens; "visible" is FOCAL's choice).
      pad_tokens="visible",
      # "masked": every all-zero input patch (padding, the augmentations'
      # time and frequency masks) is left out like the padding above;
      # "visible" is Swin's and FOCAL's (msjax.nn.SwinEncoder.empty_tokens).
      empty_tokens="visible",
      # LayerNorm on each patch embedding (Swin, FOCAL); False keeps the
      # patch amplitude (msjax.nn.SwinEncoder.patch_norm).
      patch_norm=True,
    ),
    decoder=dict(
      dim=16 if tiny else 128,
      depth=1 if tiny else 2,
      num_heads=2 if tiny else 4,
      mlp_ratio=2.0 if tiny else 4.0,
    ),
    shared_dim=8 if tiny else 128,
    private_dim=8 if tiny else 128,
    projector_hidden=16 if tiny else 256,
    disc=dict(
      hidden_dim=16 if tiny else 256,
      num_layers=5,
      conv_features=(4, 8) if tiny else (16, 32),
      raw_embed_dim=8 if tiny else 64,
    ),
    freeze_encoders=False,
    # What stage 2's embed returns (SPEC is silent): "encoder", the
    # encoders' pooled features (the SimCLR/MAE convention: a probe on the
    # backbone), or "projections", concat(U_m, V_m). docs/claims.md has the
    # evidence for the default: at 5 % pairs the 8+8-wide projections lose
    # what the encoder holds (fused probe 0.457 vs 0.701, seed 0).
    eval_features="encoder",
    # Subtract the mean of the encoder features before the shared/private
    # projectors (batch mean in training, a running mean kept in
    # ``batch_stats/feature_mean`` for evaluation). SPEC feeds the features
    # as they are; stage-1 features share one dominant direction (mean
    # cosine 0.99 between windows), so every U, V starts nearly equal and
    # L_aug sits at chance. docs/claims.md has the evidence.
    center_features=False,
    center_momentum=0.9,
  )
  loss = dict(
    stage=2,
    mask_ratio=0.75,
    norm_pix_loss=False,
    # What the decoder reconstructs: "input" (SPEC §4.3) or
    # "pair_log_magnitude" (log(1 + |X|) of (real, imag) channel pairs).
    rec_target="input",
    alpha=1.0,
    beta=0.5,
    gamma=0.1,
    # SPEC §4.2's eps: weight of t(V_i, U_i) in L_private.
    vu_weight=0.1,
    # Direction of the pairwise terms t(X_i, U_i), t(X_{3-i}, U_i) and
    # t(X_i, V_i): "minimize" (SPEC §4.2 as written: every t is minimised)
    # or "maximize" (they enter with a minus sign: U_i must carry what it
    # shares with both inputs and V_i what its input holds, while the
    # total-correlation term t(X1, X2, U_i) and t(V_i, U_i) stay minimised).
    # docs/claims.md has the derivation and the evidence.
    pairwise_mi="minimize",
    # alpha's instance-alignment term on the synchronized rows: "mse" (SPEC
    # §4.2's mean ||U1 - U2||^2) or "info_nce" (symmetric InfoNCE between the
    # l2-normalised U1, U2 at temperature align_tau, the other paired rows
    # the negatives). docs/claims.md has the evidence.
    alignment="mse",
    align_tau=0.1,
    delta=1.0,
    aug_weight=1.0,
    tau=0.1,
    temp_weight=1.0,
    margin=1.0,
    exclude_self_pairs=False,
    seq_len=4,
    temporal_normalize=True,
  )
  config = ml_collections.ConfigDict(dict(model=model, loss=loss))
  # L_aug's second view (msjax.methods.views.augment_config).
  config.loss.augment = augment_config(
    ("frequency_mask", "time_mask", "scaling"),
    probability=1.0,
    frequency_mask=dict(max_fraction=0.2),
    time_mask=dict(max_fraction=0.2),
    scaling=dict(sigma=0.1),
  )
  return config


#: ``model.swin`` fields the claims suite's evidence chose over SPEC's
#: (docs/claims.md, "InfoMAE"): no LayerNorm on the patch embedding (it
#: erases the input's amplitude) and all-zero input patches hidden like
#: MAE-masked ones (visible, they send the encoder gradients of ~1e8 and
#: overflow float32 at the base size: "InfoMAE: empty tokens"). The suite,
#: the built-in-data experiments and byod apply them; SPEC's stay the
#: defaults of :func:`default_config`.
SUITE_SWIN = {"patch_norm": False, "empty_tokens": "masked"}


def swin_encoder_model(**swin: Any) -> dict[str, Any]:
  """``model`` keys that give an encoder-based method InfoMAE's SWIN.

  For :data:`msjax.methods.encoders.ENCODERS`' ``"swin"`` row: InfoMAE's
  tiny ``model.swin`` updated by ``swin``, its ``patch_size`` and
  ``input_compression``, and ``feature_dim`` = the SWIN's ``out_dim`` (the
  baseline's ``Dense(feature_dim)`` head stands where InfoMAE's ``out_dim``
  Dense is, so both encoders have the same parameters).

  Args:
    **swin: ``model.swin`` fields to override (e.g. ``embed_dim=64``).

  Returns:
    ``{"encoder", "feature_dim", "swin", "patch_size", "input_compression"}``.
  """
  model = default_config("tiny").model
  model.swin.update(swin)
  return {
    "encoder": "swin",
    "feature_dim": int(model.swin.out_dim),
    "swin": model.swin.to_dict(),
    "patch_size": tuple(model.patch_size),
    "input_compression": model.input_compression,
  }


def _modalities(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return tuple(config.data.modalities)


def _inputs(batch: dict, config: ml_collections.ConfigDict) -> dict:
  signals = batch["signals"]
  missing = [m for m in _modalities(config) if m not in signals]
  if missing:
    raise ValueError(f"batch['signals'] lacks modalities {missing}.")
  return {
    m: parts.prepare_input(signals[m], m, config) for m in _modalities(config)
  }


def _targets(batch: dict, config: ml_collections.ConfigDict) -> dict:
  """The reconstruction maps of every modality (``loss.rec_target``)."""
  return {
    m: parts.reconstruction_map(batch["signals"][m], m, config)
    for m in _modalities(config)
  }


def _paired(batch: dict, batch_size: int) -> jax.Array:
  """``bool [B]``: synchronized rows (every row when the key is absent)."""
  if "paired" not in batch:
    return jnp.ones((batch_size,), bool)
  paired = jnp.asarray(batch["paired"])
  if paired.shape != (batch_size,):
    raise ValueError(
      f"batch['paired'] must have shape [B] = ({batch_size},), got"
      f" {tuple(paired.shape)}."
    )
  return paired.astype(bool)


def init(
  rng: jax.Array, config: ml_collections.ConfigDict, example_batch: dict
) -> dict:
  """Initialises every module of the configured stage.

  Args:
    rng: PRNG key; each module gets ``fold_in(rng, crc32(name))``, so a
      module's initial parameters do not depend on the stage.
    config: the experiment config.
    example_batch: a batch (only shapes are used).

  Returns:
    ``{"params": {...}}`` (no other collections).
  """
  stage = parts.check_stage(config)
  xs = _inputs(example_batch, config)
  params = {}
  enc = parts.encoder(config)
  feats = {}
  for m, x in xs.items():
    name = f"encoder_{m}"
    params[name] = enc.init(parts.module_key(rng, name), x, train=False)[
      "params"
    ]
    feat_shape, aux_shape = jax.eval_shape(
      lambda p, x=x: enc.apply({"params": p}, x, train=False), params[name]
    )
    feats[m] = jnp.zeros(feat_shape.shape, feat_shape.dtype)
    latent = jnp.zeros(aux_shape["patch_latent"].shape, jnp.float32)
    ids_keep = jnp.zeros((x.shape[0], 1), jnp.int32)
    if stage == 2:
      for kind in ("shared", "private"):
        name = f"{kind}_{m}"
        params[name] = parts.projector(config, kind).init(
          parts.module_key(rng, name), feats[m], train=False
        )["params"]
      width = config.model.shared_dim + config.model.private_dim
      latent = jnp.zeros(latent.shape[:3] + (width,), jnp.float32)
    name = f"decoder_{m}"
    target = parts.reconstruction_map(example_batch["signals"][m], m, config)
    dec = parts.decoder(config, parts.patch_targets(target, config).shape[-1])
    params[name] = dec.init(
      parts.module_key(rng, name), latent, ids_keep, train=False
    )["params"]
  if stage == 2:
    raw = tuple(xs.values())
    b = raw[0].shape[0]
    vectors = {
      "u": (jnp.zeros((b, config.model.shared_dim)),) * 2,
      "v": (jnp.zeros((b, config.model.private_dim)),) * 2,
    }
    discs = {}
    for spec in parts.DISCRIMINATORS:
      discs[spec.name] = parts.discriminator(config, spec).init(
        parts.module_key(rng, f"disc_{spec.name}"),
        [raw[i] for i in spec.raw],
        [vectors[kind][i] for kind, i in spec.vectors],
      )["params"]
    params[DISC_GROUP] = discs
    if parts.centers_features(config):
      return {
        "params": params,
        "batch_stats": {
          "feature_mean": {m: jnp.zeros_like(f[0]) for m, f in feats.items()}
        },
      }
  return {"params": params}


def loss_fn(
  variables: dict,
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
) -> tuple[jax.Array, tuple[dict, dict]]:
  """The training loss of the configured stage.

  Args:
    variables: ``{"params": ...}`` from :func:`init`.
    batch: ``{"signals": {m: [B, C, F, N]}, ...}`` (optionally ``"paired"``
      bool ``[B]``: stage 2 aligns the synchronized rows only); stage 2 with
      ``loss.seq_len = L > 1`` needs a sequence-major batch of ``B / L``
      sequences of ``L`` consecutive windows.
    rng: PRNG key of this step (masks, views, permutations, dropout).
    config: the experiment config.
    step: training step (unused).

  Returns:
    ``(loss, ({}, metrics))``: stage 1 ``sum_i L_rec,i``; stage 2
    ``L_main + L_D`` (see the module docstring for the gradient routing).
    Metrics: ``loss/total``, ``loss/rec``, ``loss/rec/<m>`` and in stage 2
    ``loss/{main,disc,shared,private,aug,temp}``, ``disc/<name>`` (each
    discriminator's BCE), ``disc/accuracy`` (both 0 in a batch without
    synchronized rows) and ``disc/measured`` (1 if the batch had one, else
    0: over logged steps, ``mean(disc/<name>) / mean(disc/measured)`` is
    the mean over the steps that scored the discriminators).
  """
  del step
  stage = parts.check_stage(config)
  xs = _inputs(batch, config)
  targets = _targets(batch, config)
  params = variables["params"]
  if stage == 1:
    loss, metrics = losses.stage1_loss(params, xs, targets, rng, config)
  else:
    paired = _paired(batch, next(iter(xs.values())).shape[0])
    means = _feature_means(variables, xs, config)
    loss, metrics, means = losses.stage2_loss(
      params, xs, targets, paired, rng, config, means
    )
    if "batch_stats" in variables:
      return loss, ({"batch_stats": {"feature_mean": means}}, metrics)
  return loss, ({}, metrics)


def _feature_means(
  variables: dict, xs: dict, config: ml_collections.ConfigDict
) -> dict:
  """The running feature means ``{m: [E]}`` (zeros when not centering)."""
  stats = variables.get("batch_stats", {}).get("feature_mean")
  if stats is not None:
    return dict(stats)
  if parts.centers_features(config):
    raise ValueError(
      "model.center_features needs variables['batch_stats']['feature_mean']"
      " (initialise stage 2 with the option on)."
    )
  return {m: jnp.zeros((config.model.swin.out_dim,)) for m in xs}


def requires_paired_rows(config: ml_collections.ConfigDict) -> bool:
  """False: both stages accept unsynchronized rows.

  Stage 1 is per modality; stage 2 reads ``batch["paired"]`` and feeds only
  the synchronized rows to its cross-modal terms (unpaired rows feed the
  reconstruction, augmentation and temporal terms).
  """
  parts.check_stage(config)
  return False


def _encoded(
  params: dict, batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """Eval-mode pooled encoder features ``{m: [B, swin.out_dim]}``."""
  return {
    m: losses.encode(params, m, x, None, config, None)[0]
    for m, x in _inputs(batch, config).items()
  }


def embed(
  variables: dict, batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """Evaluation embeddings (no masking, no dropout).

  Stage 1, and stage 2 with ``model.eval_features = "encoder"``: the
  encoders' pooled features ``{m: e_m [B, swin.out_dim]}``; stage 2 with
  ``"projections"``: ``{m: concat(U_m, V_m) [B, shared_dim + private_dim]}``.
  ``"fused"`` concatenates the modalities in ``data.modalities`` order.

  Raises:
    ValueError: an unknown ``model.eval_features``.
  """
  stage = parts.check_stage(config)
  features = config.model.eval_features
  if features not in EVAL_FEATURES:
    raise ValueError(
      f"model.eval_features={features!r} unknown; use one of {EVAL_FEATURES}."
    )
  out = _encoded(variables["params"], batch, config)
  if stage == 2 and features == "projections":
    out = _projections(variables, out, ("shared", "private"), config)
  out["fused"] = jnp.concatenate([out[m] for m in _modalities(config)], -1)
  return out


def align(
  variables: dict, batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """The shared projections ``{m: U_m [B, shared_dim]}`` of stage 2.

  ``U_m`` is the space ``L_shared`` aligns; stage 1 aligns nothing: ``{}``.
  """
  if parts.check_stage(config) == 1:
    return {}
  encoded = _encoded(variables["params"], batch, config)
  return _projections(variables, encoded, ("shared",), config)


def _projections(
  variables: dict,
  encoded: dict,
  kinds: tuple[str, ...],
  config: ml_collections.ConfigDict,
) -> dict[str, jax.Array]:
  """Eval-mode projections of encoder features ``{m: [B, E]}``.

  Returns ``{m: [B, sum of the kinds' widths]}``, the ``kinds``
  (``"shared"``, ``"private"``) concatenated, computed from the features
  centred as ``model.center_features`` says.
  """
  means = _feature_means(variables, encoded, config)
  out = {}
  for m, feat in encoded.items():
    feat, _ = parts.centered(feat, means[m], config, train=False)
    out[m] = jnp.concatenate(
      [
        parts.project(variables["params"], kind, m, feat, config, train=False)
        for kind in kinds
      ],
      axis=-1,
    )
  return out


def param_labels(params: dict, config: ml_collections.ConfigDict) -> dict:
  """Optimiser group per leaf.

  ``"discriminators"`` for the discriminator sub-tree, ``"frozen"`` for the
  encoders in stage 2 with ``model.freeze_encoders`` (the trainer applies
  ``optax.set_to_zero``), ``"main"`` for everything else.
  """
  stage = parts.check_stage(config)
  frozen = stage == 2 and config.model.freeze_encoders

  def label(name: str) -> str:
    if name == DISC_GROUP:
      return DISC_GROUP
    if frozen and name.startswith("encoder_"):
      return "frozen"
    return "main"

  return {
    name: jax.tree.map(lambda _, n=name: label(n), sub)
    for name, sub in params.items()
  }


def init_from_pretrained(
  params: dict, pretrained_params: dict, config: ml_collections.ConfigDict
) -> dict:
  """Stage-2 parameters with the encoders taken from stage-1 parameters.

  The trainer's ``train.init_from`` hook: ``config.train.init_from`` names
  the stage-1 workdir, the trainer loads its latest ``params`` and calls
  this on the freshly initialised stage-2 ``params``. Every
  ``encoder_<m>`` sub-tree is copied (cast to the stage-2 dtypes); all
  other modules keep their fresh initialisation.

  Raises:
    ValueError: if an encoder is missing or its shapes differ.
  """
  out = dict(params)
  for m in _modalities(config):
    name = f"encoder_{m}"
    if name not in pretrained_params:
      raise ValueError(
        f"stage-1 parameters have no {name!r} (found"
        f" {sorted(pretrained_params)}); train stage 1 on the same"
        " data.modalities."
      )
    fresh = jax.tree.structure(params[name])
    loaded = jax.tree.structure(pretrained_params[name])
    shapes_ok = fresh == loaded and all(
      jnp.shape(a) == jnp.shape(b)
      for a, b in zip(
        jax.tree.leaves(params[name]),
        jax.tree.leaves(pretrained_params[name]),
        strict=True,
      )
    )
    if not shapes_ok:
      raise ValueError(
        f"stage-1 {name} does not match the stage-2 encoder (same"
        " model.swin and model.patch_size needed)."
      )
    out[name] = jax.tree.map(
      lambda a, b: jnp.asarray(b, jnp.asarray(a).dtype),
      params[name],
      pretrained_params[name],
    )
  return out


def init_from_stage1(
  variables: dict, stage1_variables: dict, config: ml_collections.ConfigDict
) -> dict:
  """:func:`init_from_pretrained` on ``{"params": ...}`` variable dicts."""
  return {
    **variables,
    "params": init_from_pretrained(
      variables["params"], stage1_variables["params"], config
    ),
  }


#: InfoMAE (SPEC §4) as a :class:`~msjax.methods.interface.Method`.
METHOD = Method(
  default_config,
  init,
  loss_fn,
  embed,
  param_labels=param_labels,
  requires_paired_rows=requires_paired_rows,
  init_from_pretrained=init_from_pretrained,
  align=align,
  sizes=SIZES,
)
