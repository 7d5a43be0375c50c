"""The one device resolver: every command, the Predictor, the evaluator and the trainer use it.

``resolve_device("auto" | "cpu" | "cuda" | "cuda:N" | "mps", local_rank=None)`` -> ``torch.device``;
``auto`` picks CUDA when there is a GPU, else the CPU.  Under ``torchrun`` (``local_rank`` given)
``auto``/``cuda`` mean this process's own GPU.  A device that does not exist here is a UserError
(one line naming the device), raised before any model is loaded.
"""

from __future__ import annotations

from synthfm.errors import UserError

DEVICES_HELP = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(device="auto", local_rank: int | None = None):
    """Parse ``device`` (a name or a ``torch.device``) and check that it exists on this machine."""
    import torch

    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(device, str) and device == "cuda" and local_rank is not None:
        device = f"cuda:{local_rank}"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown --device {device!r}; use {DEVICES_HELP}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {str(device)!r} requested but CUDA is not available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device {str(device)!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise UserError("device 'mps' requested but it is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise UserError(f"unknown --device {str(device)!r}; use {DEVICES_HELP}")
    return dev
