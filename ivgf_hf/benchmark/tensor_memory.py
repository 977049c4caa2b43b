"""Tensor memory of a training step counted op by op: what a device's allocator must hold, measured on any device.

:class:`TensorMemoryTracker` sees every aten op (a ``TorchDispatchMode``, so the autograd backward too) and adds up
the storages the ops create while they are alive. Run on the CPU with the same autocast as on a GPU, it gives the
tensor memory a GPU training step needs (activations saved for backward, autocast weight copies, gradients,
optimizer temporaries) without a GPU. It leaves out what a device adds around tensors: the CUDA caching allocator's
rounding and fragmentation, and kernel workspaces.
"""

import weakref
from typing import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _storage_key(tensor: torch.Tensor) -> tuple:
    """Identifies the memory behind ``tensor``: its device and the address of its storage."""
    return tensor.device, tensor.untyped_storage().data_ptr()


class TensorMemoryTracker(TorchDispatchMode):
    """Bytes of the storages created by aten ops while active, alive now (``current_bytes``) and at most
    (``peak_bytes``). Storages that existed before (parameters, optimizer state) are not counted, nor are the
    views, in-place results and ``out=`` results that reuse an input's storage. Use as a context manager;
    :meth:`mark` records ``current_bytes`` under a name."""

    def __init__(self):
        super().__init__()
        self._live = {}
        self.current_bytes = 0
        self.peak_bytes = 0
        self.marks = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {_storage_key(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor) and t.numel()}
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.numel() and _storage_key(tensor) not in inputs:
                self._track(tensor.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = id(storage)
        if key in self._live:
            return
        self._live[key] = storage.nbytes()
        self.current_bytes += storage.nbytes()
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        weakref.finalize(storage, self._release, key)

    def _release(self, key: int) -> None:
        self.current_bytes -= self._live.pop(key)

    def mark(self, name: str) -> None:
        """Record the bytes alive now as ``marks[name]``."""
        self.marks[name] = self.current_bytes


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (an iterable of tensors)."""
    storages = {_storage_key(t): t.untyped_storage().nbytes() for t in tensors if t.numel()}
    return sum(storages.values())


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in the optimizer's state (AdamW: two moments per parameter and a step count)."""
    return tensor_bytes(v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v))


def _create_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Give the optimizer its state (AdamW: the moments) with one step on zero gradients, if it has none yet."""
    if optimizer.state:
        return
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def training_step_tensor_memory(model: nn.Module, optimizer: torch.optim.Optimizer, forward: Callable) -> dict:
    """Run one training step of ``model`` under a :class:`TensorMemoryTracker` and break down its tensor memory.

    ``forward()`` returns the loss (autocast, if any, applied inside). An optimizer without state gets it first
    from a step on zero gradients (no forward). Returns bytes: ``parameters`` (with buffers), ``optimizer_state``,
    ``after_forward`` (alive when the forward returns: what the backward keeps, the loss, autocast's weight
    copies), ``gradients`` and ``step_peak`` (the most alive at once during the step), and ``total_peak`` =
    parameters + optimizer state + step peak: the tensor memory the step needs.
    """
    _create_optimizer_state(model, optimizer)
    optimizer.zero_grad(set_to_none=True)
    resident = {
        "parameters": tensor_bytes(list(model.parameters()) + list(model.buffers())),
        "optimizer_state": optimizer_state_bytes(optimizer),
    }
    with TensorMemoryTracker() as tracker:
        loss = forward()
        tracker.mark("after_forward")
        loss.backward()
        del loss
        gradients = tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {
        **resident,
        "after_forward": tracker.marks["after_forward"],
        "gradients": gradients,
        "step_peak": tracker.peak_bytes,
        "total_peak": resident["parameters"] + resident["optimizer_state"] + tracker.peak_bytes,
        "method": "aten-op storage accounting (TorchDispatchMode); no allocator rounding or kernel workspaces",
    }
