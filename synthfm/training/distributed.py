"""Processes and devices for training: the ``torchrun`` context, device choice, gradient averaging.

Under ``torchrun`` every process reads its own part of the sample stream and gradients are averaged
with one all-reduce per step (DDP's arithmetic, done explicitly because the model is driven through
``SynthFM.encode``/``decode`` and parts of the decoder go unused in some steps, which
``DistributedDataParallel`` would need ``find_unused_parameters`` for).  NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from synthfm.errors import UserError




@dataclass(frozen=True)
class DistContext:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @staticmethod
    def from_env() -> "DistContext":
        from synthfm.errors import UserError

        def number(name: str, default: str | None) -> int:
            text = os.environ.get(name, default)
            if text is None:
                raise UserError(f"WORLD_SIZE is set ({os.environ['WORLD_SIZE']}) but {name} is not: a stale torchrun "
                                "environment? unset WORLD_SIZE, or start with torchrun")
            try:
                return int(text)
            except ValueError:
                raise UserError(f"environment variable {name}={text[:40]!r} is not an integer") from None

        world = number("WORLD_SIZE", "1")
        if world <= 1:
            return DistContext()
        rank, local = number("RANK", None), number("LOCAL_RANK", "0")
        if not (0 <= rank < world and 0 <= local < world) or world > 65536:
            raise UserError(f"inconsistent torchrun environment: RANK={rank}, LOCAL_RANK={local}, WORLD_SIZE={world}")
        if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            raise UserError(f"WORLD_SIZE={world} but MASTER_ADDR/MASTER_PORT are not set: a stale torchrun "
                            "environment? unset WORLD_SIZE, or start with torchrun")
        return DistContext(rank, world, local)

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def resolve_device(name: str, dist: DistContext) -> torch.device:
    """``auto`` -> cuda (this process's local GPU under torchrun) if available, else cpu
    (:func:`synthfm.devices.resolve_device`, the one resolver)."""
    from synthfm.devices import resolve_device as resolve

    return resolve(name, local_rank=dist.local_rank if dist.enabled else None)


def init_distributed(dist: DistContext, device_name: str) -> bool:
    """Join the torchrun process group (NCCL on GPUs, gloo on CPU); True if this call created it."""
    if not dist.enabled or torch.distributed.is_initialized():
        return False
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


def broadcast_error(dist: DistContext, message: str | None) -> None:
    """Raise ``message`` (rank 0's) as UserError on every process, so none waits forever."""
    if dist.enabled:
        box = [message]
        torch.distributed.broadcast_object_list(box, src=0)
        message = box[0]
    if message:
        raise UserError(message)


def allreduce_gradients(params: list[torch.nn.Parameter], world_size: int) -> None:
    """Average gradients over processes (a missing gradient counts as zeros on that process)."""
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n
