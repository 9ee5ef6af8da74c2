"""One forward pass recorded as the graph of what it computes: every torch function and tensor method that runs, with
the tensors flowing between them, each op named by the module it runs in.

Why a TorchFunctionMode: it sees every call at run time, with the real tensors, whatever the Python around it does.
torch.fx traces symbolically and fails on forward code that branches on data or shapes; module hooks see modules
only, so F.max_pool2d, x.mean((2, 3)), x + y and torch.cat are invisible to them. Module forward hooks are still
used, only to name each op by the module whose forward runs it ("c3.0.conv"; "layer1.add" for an op a block's own
forward calls; "max_pool2d#2" for the second one the network's forward calls itself).

The graph (helpers.checker.graph) knows, for every tensor, where its height and width are and how large the map is, for
every op how its outputs read its input (helpers.checker.trace_ops says it for each function), and where the map ends.
"""
import copy
import itertools
import math
from collections import Counter
from contextlib import ExitStack
from fractions import Fraction

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .graph import AXES, KEEP, SPATIAL, Op, Step, Trace, Value
from .trace_layout import Call, grid_of, reshape_dims
from .trace_ops import canonical, carried, read

BATCH = 2  # not 1: x.squeeze() then F.log_softmax(x, dim=1), common in students' networks, needs a batch dim
# Calls that give Python a value computed from the tensor's data: forward can branch on what they return.
TO_PYTHON = {"bool", "item", "int", "float", "index", "tolist", "equal", "allclose", "is_nonzero"}


def _tensors(obj) -> list:
    """The tensors in nested tuples, lists and dicts, in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _tensors(item)]
    return []


class _Stop(Exception):
    """Raised to end a forward pass once the op that was asked for has run."""


class Recorder(TorchFunctionMode):
    """Records every torch call of a forward pass into a Trace (see the module docstring).

    stop_after: end the forward pass (raising _Stop) right after the op of that index has run; the probe of
    helpers.checker.receptive_field needs the map and nothing after it.
    """

    def __init__(self, model: nn.Module, image: torch.Tensor, stop_after: int | None = None):
        super().__init__()
        self.model, self.stop_after = model, stop_after
        self.values: dict[int, Value] = {}  # id of a tensor object -> its latest Value (in-place ops make new ones)
        self.ops: list[Op] = []
        self.stack: list[tuple[str, nn.Module, int]] = []
        self.calls = itertools.count()
        self.names = Counter()
        self.choices: dict[str, None] = {}  # "bool of mean", in the order met (a dict: each once)
        self.input = self._new(image, None, (None,) * (image.dim() - 2) + ("H", "W"), constant=False)

    def _new(self, tensor, producer, dims, constant, pooling=None, grid=None) -> Value:
        shape = tuple(tensor.shape)
        value = Value(shape, producer, dims, grid or grid_of(dims, shape), constant, pooling, tensor)
        self.values[id(tensor)] = value
        return value

    def value_of(self, tensor) -> Value:
        """The latest Value of a tensor object; a tensor from outside the forward (a weight) is a constant."""
        known = self.values.get(id(tensor))
        if known is not None and known.tensor is tensor:
            return known
        return self._new(tensor, None, (None,) * tensor.dim(), constant=True)

    def hooks(self) -> ExitStack:
        """Module forward hooks that keep the stack of modules running, to name the ops."""
        stack = ExitStack()
        for name, module in self.model.named_modules():
            def enter(module, args, name=name):
                self.stack.append((name, module, next(self.calls)))

            def leave(module, args, output):
                self.stack.pop()
            stack.callback(module.register_forward_pre_hook(enter).remove)
            stack.callback(module.register_forward_hook(leave, always_call=True).remove)
        return stack

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        name = canonical(func)
        results = [args[0]] if name == "setitem" else _tensors(result)
        if name in TO_PYTHON and not results:
            self._note_choice(name, args, kwargs)
        if results:
            self._record(name, args, kwargs, results)
            if self.stop_after is not None and len(self.ops) - 1 >= self.stop_after:
                raise _Stop
        return result

    def _note_choice(self, name: str, args, kwargs) -> None:
        """A value computed from the input, turned into a Python one: what forward does next may depend on it."""
        for tensor in _tensors((args, kwargs)):
            value = self.values.get(id(tensor))
            if value is not None and value.tensor is tensor and not value.constant:
                source = value.producer.name if value.producer is not None else "the input"
                self.choices[f"{name} of {source}"] = None

    def _name(self, func: str) -> tuple[str, nn.Module | None, int]:
        module_name, module, call = self.stack[-1] if self.stack else ("", None, -1)
        leaf = module is not None and module_name and not any(True for _ in module.children())
        base = module_name if leaf else ".".join(filter(None, (module_name, func)))
        self.names[(base, func)] += 1
        count = self.names[(base, func)]
        return (base if count == 1 else f"{base}#{count}"), (module if module_name else None), call

    def _record(self, func: str, args, kwargs, results) -> None:
        inputs = [self.value_of(t) for t in _tensors((args, kwargs))]
        call = Call(func, args, kwargs, inputs, results)
        reading = read(call) if inputs else None
        variable = [v for v in inputs if not v.constant]
        shape = tuple(results[0].shape)
        base = next((i for i, v in enumerate(inputs) if not v.constant and v.shape == shape), None)
        if base is None:
            base = next((i for i, v in enumerate(inputs) if not v.constant), 0)
        if reading is not None and reading.steps is not None:
            base = 0
        name, module, call_index = self._name(func)
        op = Op(len(self.ops), name, func, module, call_index, inputs, [], {}, None, base)
        if reading is not None:
            op.params, op.steps = reading.params, reading.steps
        source = inputs[base] if inputs else None
        for tensor in results:
            dims = reading.dims if reading is not None and reading.dims is not None else None
            if dims is None or len(dims) != tensor.dim():
                dims = self._dims_by_shape(source, tensor, op)
            pooling = reading.pooling._replace(op=reading.pooling.op or op) if reading and reading.pooling else None
            spreads = any(label in SPATIAL and size > 1 for label, size in zip(dims, tensor.shape)) and \
                not (source is not None and source.is_map)  # a pooled value upsampled or expanded into a map
            if pooling is None and source is not None and len(variable) == 1 and op.steps is None and not spreads:
                pooling = carried(func, call, source)
            grid = reading.grid if reading is not None and reading.grid else (
                source.grid if source is not None and "HW" in dims else None)
            op.outputs.append(self._new(tensor, op, dims, not variable, pooling, grid))
        self.ops.append(op)

    @staticmethod
    def _dims_by_shape(source: Value | None, tensor, op: Op) -> tuple:
        """The dims of an output no handler of trace_ops describes: an element-wise op keeps its input's, a reshape
        regroups them; an unknown op that changes the size of the map gets approximate steps (set on `op`)."""
        if source is None:
            return (None,) * tensor.dim()
        if len(source.shape) != tensor.dim():
            return reshape_dims(source, tuple(tensor.shape)) if source.tensor is not None and \
                math.prod(source.shape) == tensor.numel() else (None,) * tensor.dim()
        changed = {label for label, before, after in zip(source.dims, source.shape, tensor.shape)
                   if label in AXES and before > 1 and before != after}
        if changed and op.steps is None:
            op.steps = {axis: Step(1, Fraction(dict(zip(source.dims, source.shape))[axis],
                                               dict(zip(source.dims, tensor.shape))[axis]), 0, False,
                                   f"{op.func} changes the size of the map") if axis in changed else KEEP
                        for axis in AXES}
            op.base = op.inputs.index(source)
        return source.dims


def trace(model: nn.Module, input_shape=(3, 32, 32)) -> Trace:
    """The graph of one forward pass of `model` on a (BATCH, *input_shape) batch of uniform noise, traced on an
    eval-mode deep copy (the model keeps its mode and state) on the device and dtype of its own tensors. Any
    exception of the forward pass propagates."""
    model = copy.deepcopy(model).eval()
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(BATCH, *input_shape, generator=generator).to(device, dtype) if device.type != "meta" \
        else torch.empty(BATCH, *input_shape, device=device, dtype=dtype)
    return run_traced(model, image)


def run_traced(model: nn.Module, image: torch.Tensor, stop_after: int | None = None) -> Trace:
    """model(image) under a Recorder, without gradients unless image needs one; stopped after op `stop_after`. The
    Trace names the parameters of `model` its ops read."""
    recorder = Recorder(model, image, stop_after)
    with recorder.hooks(), torch.set_grad_enabled(image.requires_grad):
        try:
            with recorder:
                output = model(image)
        except _Stop:
            output = recorder.ops[-1].outputs[0].tensor
    outputs = [recorder.value_of(t) for t in _tensors(output)]
    read = {id(value.tensor) for op in recorder.ops for value in op.inputs if value.constant}
    return Trace(recorder.ops, recorder.input, outputs,
                 frozenset(name for name, parameter in model.named_parameters() if id(parameter) in read),
                 tuple(recorder.choices))
