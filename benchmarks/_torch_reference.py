"""PyTorch eager baselines for benchmarks/kernels.py, written from SPEC.md.

Benchmark baselines only (never imported by msjax or its tests). Each
function is the plain, idiomatic eager formulation a PyTorch user would
write: batched tensors, autograd for the backward pass.
"""

import torch
import torch.nn.functional as F  # noqa: N812

__all__ = [
  "pro_fd",
  "pro_fd_scaling",
  "pro_ucl",
  "samobal_select",
  "swav_sinkhorn",
]


@torch.no_grad()
def swav_sinkhorn(
  scores: torch.Tensor, epsilon: float = 0.05, num_iters: int = 3
) -> torch.Tensor:
  """SwAV's ``distributed_sinkhorn`` at world size 1 (SPEC §1), [B, K]."""
  q = torch.exp(scores / epsilon).t()  # [K, B]
  num_rows = q.shape[1]
  num_cols = q.shape[0]
  q /= torch.sum(q)
  for _ in range(num_iters):
    q /= torch.sum(q, dim=1, keepdim=True)
    q /= num_cols
    q /= torch.sum(q, dim=0, keepdim=True)
    q /= num_rows
  q *= num_rows
  return q.t()


def pro_fd(
  z_fus: torch.Tensor,
  labels: torch.Tensor,
  prototypes: torch.Tensor,
  tau_fd: float = 1.0,
  epsilon: float = 0.1,
  num_iters: int = 20,
) -> torch.Tensor:
  """Pro-FD loss (SPEC §3.4): batched log-domain Sinkhorn, [B, C, C]."""
  proto_sg = prototypes.detach()
  gram = proto_sg @ proto_sg.t()  # [C, C]
  psi_ref = torch.softmax(gram[labels] / tau_fd, dim=-1)  # [B, C]
  psi_fus = torch.softmax(z_fus @ prototypes.t() / tau_fd, dim=-1)
  cost = 1.0 - gram
  neg_cost = (-cost / epsilon)[None]  # [1, C, C]
  log_a, log_b = torch.log(psi_ref), torch.log(psi_fus)
  f = torch.zeros_like(psi_ref)
  g = torch.zeros_like(psi_fus)
  for _ in range(num_iters):
    f = epsilon * log_a - epsilon * torch.logsumexp(
      g[:, None, :] / epsilon + neg_cost, dim=2
    )
    g = epsilon * log_b - epsilon * torch.logsumexp(
      f[:, :, None] / epsilon + neg_cost, dim=1
    )
  plan = torch.exp((f[:, :, None] + g[:, None, :]) / epsilon + neg_cost)
  return torch.mean(torch.sum(plan * cost[None], dim=(1, 2)))


def pro_fd_scaling(
  z_fus: torch.Tensor,
  labels: torch.Tensor,
  prototypes: torch.Tensor,
  tau_fd: float = 1.0,
  epsilon: float = 0.1,
  num_iters: int = 20,
) -> torch.Tensor:
  """Pro-FD loss (SPEC §3.4) in the scaling form, PyTorch's fastest natural
  one: ``K = exp(-cost / eps)`` once, then ``u = a / (v @ K.T)``,
  ``v = b / (u @ K)`` (the same iterates as the log domain while nothing
  under- or overflows), plan ``u K v``."""
  proto_sg = prototypes.detach()
  gram = proto_sg @ proto_sg.t()  # [C, C]
  a = torch.softmax(gram[labels] / tau_fd, dim=-1)  # [B, C]
  b = torch.softmax(z_fus @ prototypes.t() / tau_fd, dim=-1)
  cost = 1.0 - gram
  kernel = torch.exp(-cost / epsilon)
  v = torch.ones_like(b)
  for _ in range(num_iters):
    u = a / (v @ kernel.t())
    v = b / (u @ kernel)
  plan = u[:, :, None] * kernel[None] * v[:, None, :]
  return torch.mean(torch.sum(plan * cost[None], dim=(1, 2)))


def samobal_select(
  z: torch.Tensor,
  prototypes: torch.Tensor,
  labels: torch.Tensor,
  noise: torch.Tensor,
  tau_g: float = 1.0,
) -> torch.Tensor:
  """SaMoBal straight-through selection (SPEC §3.2): z_fus [B, D]."""
  zb = z.permute(1, 0, 2)  # [B, M, D]
  scores = zb * prototypes[labels][:, None, :]
  soft = torch.softmax((scores + noise) / tau_g, dim=1)
  hard = F.one_hot(torch.argmax(soft, dim=1), zb.shape[1])  # [B, D, M]
  hard = hard.permute(0, 2, 1).to(soft.dtype)
  weights = hard + (soft - soft.detach())
  return F.normalize(torch.sum(weights * zb, dim=1), dim=-1, eps=1e-12)


def pro_ucl(
  z: torch.Tensor,
  labels: torch.Tensor,
  prototypes: torch.Tensor,
  tau: float = 0.07,
) -> torch.Tensor:
  """Pro-UCL (SPEC §3.1), mean over modalities; z [M, B, D]."""
  num_classes = prototypes.shape[0]
  batch = labels.shape[0]
  all_labels = torch.cat(
    [labels, torch.arange(num_classes, device=labels.device)]
  )  # [N]
  counts = torch.bincount(all_labels, minlength=num_classes)  # [C]
  same = labels[:, None] == all_labels[None, :]  # [B, N]
  not_self = torch.ones_like(same)
  not_self[:, :batch].fill_diagonal_(False)
  weight = counts[all_labels][None, :] - same.to(counts.dtype)  # [B, N]
  positives = (same & not_self).to(z.dtype)
  losses = []
  for m in range(z.shape[0]):
    feats = torch.cat([z[m], prototypes], dim=0)  # [N, D]
    logits = z[m] @ feats.t() / tau  # [B, N]
    logits = logits.masked_fill(~not_self, float("-inf"))
    log_den = torch.logsumexp(
      logits - torch.log(weight.clamp(min=1).to(z.dtype)), dim=1
    )
    mean_pos = torch.sum(
      positives * torch.where(not_self, logits, torch.zeros_like(logits)), dim=1
    ) / positives.sum(1)
    losses.append(torch.mean(log_den - mean_pos))
  return torch.stack(losses).mean()
