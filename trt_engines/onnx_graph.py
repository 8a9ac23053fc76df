"""A small ONNX graph builder: one method call per node, unique value names, initializers from numpy.

Graphs in this package are written op by op (not traced) so the NVFP4 weight patterns, the state
inputs/outputs and the dynamic axes are exactly what TensorRT's ONNX parser is given.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64


@dataclass
class GraphBuilder:
    """Collects nodes, initializers, inputs and outputs of one graph (a Loop body is another builder)."""

    name: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    inputs: list[onnx.ValueInfoProto] = field(default_factory=list)
    outputs: list[onnx.ValueInfoProto] = field(default_factory=list)
    prefix: str = ""
    _count: int = 0
    _consts: dict[tuple, str] = field(default_factory=dict)

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    # ------------------------------------------------------------------ values
    def input(self, name: str, elem_type: int, shape: list[int | str | None]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, value: str, name: str, elem_type: int, shape: list[int | str | None]) -> str:
        """Expose `value` as graph output `name` (an Identity node renames it)."""
        self.op("Identity", [value], out=name)
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def initializer(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def raw_initializer(self, name: str, data_type: int, dims: list[int], raw: bytes) -> str:
        """An initializer given as raw bytes (FLOAT4E2M1 packs two values per byte, FLOAT8E4M3FN one)."""
        self.initializers.append(helper.make_tensor(name, data_type, dims, vals=raw, raw=True))
        return name

    def const(self, value, dtype=np.int64) -> str:
        """A small constant (shape, index, scalar), shared by identical values."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            name = self.fresh("const")
            self.nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name)))
            self._consts[key] = name
        return self._consts[key]

    # ------------------------------------------------------------------ nodes
    def op(self, op_type: str, inputs: list[str], n_out: int = 1, out: str | None = None, **attrs):
        outs = [out] if out is not None else [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.fresh(f"n_{op_type}"), **attrs))
        return outs[0] if n_out == 1 else outs

    # shortcuts for the ops used most
    def matmul(self, a: str, b: str) -> str:
        return self.op("MatMul", [a, b])

    def add(self, a: str, b: str) -> str:
        return self.op("Add", [a, b])

    def sub(self, a: str, b: str) -> str:
        return self.op("Sub", [a, b])

    def mul(self, a: str, b: str) -> str:
        return self.op("Mul", [a, b])

    def div(self, a: str, b: str) -> str:
        return self.op("Div", [a, b])

    def reshape(self, x: str, shape: list[int] | str) -> str:
        return self.op("Reshape", [x, shape if isinstance(shape, str) else self.const(shape)])

    def transpose(self, x: str, perm: list[int]) -> str:
        return self.op("Transpose", [x], perm=perm)

    def unsqueeze(self, x: str, axes: list[int]) -> str:
        return self.op("Unsqueeze", [x, self.const(axes)])

    def squeeze(self, x: str, axes: list[int]) -> str:
        return self.op("Squeeze", [x, self.const(axes)])

    def concat(self, xs: list[str], axis: int) -> str:
        return self.op("Concat", xs, axis=axis)

    def slice(self, x: str, starts: list[int] | str, ends: list[int] | str, axes: list[int]) -> str:
        s = starts if isinstance(starts, str) else self.const(starts)
        e = ends if isinstance(ends, str) else self.const(ends)
        return self.op("Slice", [x, s, e, self.const(axes)])

    def split(self, x: str, sizes: list[int], axis: int) -> list[str]:
        return self.op("Split", [x, self.const(sizes)], n_out=len(sizes), axis=axis)

    def silu(self, x: str) -> str:
        return self.mul(x, self.op("Sigmoid", [x]))

    def scalar(self, v: float) -> str:
        return self.const(v, np.float32)

    def shape_dim(self, x: str, axis: int) -> str:
        """1-D int64 [1] holding x.shape[axis]."""
        return self.op("Shape", [x], start=axis, end=axis + 1)

    # ------------------------------------------------------------------ assembly
    def graph(self) -> onnx.GraphProto:
        return helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)

    def model(self, opset: int, doc: str = "") -> onnx.ModelProto:
        m = helper.make_model(self.graph(), opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="qwen_stack.trt_engines", doc_string=doc)
        m.ir_version = min(m.ir_version, 11)  # onnxruntime 1.2x reads IR <= 11
        return m
