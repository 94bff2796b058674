"""ONNX export of fitted AFM and FM models, for serving without fastafm (`pip install fastafm[onnx]`).

export(model, path=None, *, block_bytes=4 MiB)   the model as an onnx.ModelProto (written to `path` if given)
to_padded(X, m=None, n_features=None)           CSR rows -> the graph's (indices, values) inputs

The graph (opset 17, IR version 8; docs/serving.md) takes a batch of padded rows:

    indices  int64   (n, m)   feature ids of each row's non-zeros, -1 marks a padding slot
    values   float32 (n, m)   their values (ignored in padding slots)

and returns

    score        float32 (n,)  y(x): a regressor's predict(X) (the logit of the rate with loss="logistic"), a
                               classifier's decision_function(X) (the logit; a negative_sampling_rate correction is
                               in it: log(rate) added to w0)
    probability  float32 (n,)  classifiers, and regressors of loss="logistic" (rate targets): sigmoid(score),
                               = predict_proba(X)[:, 1] (predict(X) for the regressors)

A row is its non-padding slots, in slot order, each its own non-zero (as a CSR row: ids may repeat, a stored
value 0 is still a non-zero and enters the softmax, as it does in `predict`). Rows of any length up to m
share a batch; m is a dynamic axis. Only the pairs of real slots enter the attention softmax (the scores of
pairs with a padding slot are set to the lowest float32 before it and their weights to 0 after it), so
padding a row to a longer m does not change its score, and a row with fewer than two real slots has a pair
term of exactly 0.

Feature ids: `predict` refuses ids outside [0, n_features) with a ValueError (and a matrix of another width).
The graph matches it as an error: an id >= n_features, or negative other than -1, makes the Gather of the
embedding table fail, so the runtime raises (onnxruntime: INVALID_ARGUMENT "indices element out of data
bounds") instead of returning a score. Non-finite values, which `predict` refuses too, are not checked by
the graph (it returns NaN/inf for such rows); `to_padded` refuses them.

AFM graphs form the m(m-1)/2 slot pairs of each row (their index lists are computed in the graph from m:
NonZero of the strict upper triangle of an m x m grid), and hold (3k + 2t) floats per pair while scoring. Rows
are scored in blocks (an ONNX Scan) of as many rows as fit in `block_bytes` (4 MiB by default, at least one row),
so a run's memory is bounded by the longest row, about max(block_bytes, 4 * m(m-1)/2 * (3k + 2t)) bytes of pair
tensors plus O(n * m * k), whatever n is. FM graphs (FMRegressor, FMClassifier, and AFM with attention=False)
use the sum-of-squares identity in O(n * m * k), as the core does. FwFM graphs (FwFMRegressor, FwFMClassifier)
form each row's (m, m) Gram matrix of embedded slots and weigh it by R[f_r, f_s]: O(n * m^2 * k), (n, m, m)
floats while scoring. Field-aware AFM graphs (`field_aware`) are AFM graphs that also gather each pair's field
pair (the field array is in the graph): `S` added to its score before the softmax, `R` times its weight after it.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional, Tuple

import numpy as np
import scipy.sparse as sp

from ._compat import import_optional

if TYPE_CHECKING:  # pragma: no cover
    import onnx as _onnx

__all__ = ["OPSET", "export", "to_padded"]

OPSET = 17  # ai.onnx operator set of the exported graphs
IR_VERSION = 8  # the IR version of opset 17 (onnx 1.12), so older runtimes load the file too
_LOWEST = float(np.finfo(np.float32).min)  # masked attention scores: exp(lowest - max) is 0
FLUSH_BELOW = 1e-30  # exported parameters of smaller magnitude are 0 (see _flush_tiny)
BLOCK_BYTES = 4 * 2**20  # default size of the pair tensors of one block of rows in AFM graphs
_PROTOBUF_LIMIT = 2**31 - 1  # bytes; larger models go to external data next to `path`


def _import_onnx():
    return import_optional("onnx", "fastafm.onnx.export", "onnx")


def _fitted_parameters(model) -> Tuple[dict, bool, bool]:
    """(float32 parameters, attention?, classifier?) of a fitted fastafm estimator, from its public attributes."""
    from .models import registry as _registry
    from .models.calibration import sampling_offset
    from ._compat import fitted_state

    try:
        kind = _registry.kind(type(model))
    except KeyError:
        hint = " (for a Dask model, export model.to_local())" if hasattr(model, "to_local") else ""
        raise TypeError("fastafm.onnx.export takes a fitted fastafm AFMRegressor, AFMClassifier, FMRegressor, "
                        f"FMClassifier, FwFMRegressor or FwFMClassifier, got {type(model).__name__}{hint}") from None
    state = fitted_state(model)  # NotFittedError naming the class
    n_features = int(state.spec.n_features)
    params = dict(state.params)
    params = {name: _flush_tiny(np.ascontiguousarray(arr, dtype=np.float32)) for name, arr in params.items()}
    # (FwFM's field array is added below, as int64: not a float parameter)
    k = params["V"].shape[1]
    if params["V"].shape[0] != n_features or params["w"].shape != (n_features,) or params["p"].shape != (k,):
        raise ValueError(f"{type(model).__name__}: inconsistent fitted parameters (V {params['V'].shape}, "
                         f"w {params['w'].shape}, p {params['p'].shape}, n_features_in_ {n_features})")
    if state.fields is not None:  # R and S as the model reads them (upper triangles, mirrored), and the fields
        for name in ("R", "S"):
            if name in params:
                upper = np.triu(params[name])
                params[name] = np.ascontiguousarray(upper + np.triu(upper, 1).T)
        params["field"] = np.ascontiguousarray(state.fields, dtype=np.int64)
    # FM is uniform pooling with p fixed at 1 (its p is all ones, so the uniform graph below is the FM sum).
    attention = state.spec.pooling == "attention"
    # A classifier's negative_sampling_rate: log(rate) is part of decision_function, so it goes into w0 (in
    # float64, rounded once), and score stays decision_function.
    offset = sampling_offset(getattr(model, "negative_sampling_rate", 1.0)) if kind.classifier else 0.0
    if offset:
        params["w0"] = (params["w0"].astype(np.float64) + offset).astype(np.float32)
    # A probability output for the classifiers and the regressors on rate targets (loss="logistic").
    return params, attention, kind.objective_of(model.get_params()).core_loss == "logistic"


def _flush_tiny(arr: np.ndarray) -> np.ndarray:
    """arr with the entries of magnitude below FLUSH_BELOW set to 0.

    The core computes with flush-to-zero and denormals-are-zero; onnxruntime on the CPU does not (and its
    session.set_denormal_as_zero option did not change that for its GEMM here). attention_l2 drives many
    entries of W to 1e-38..1e-30 (37% of them after one Frappe-like epoch at k = t = 64), and their products
    with the pair vectors are denormal numbers, which made onnxruntime's attention GEMM 12x slower (305 ms
    instead of 24 ms for 4,096 Frappe-shaped rows). Such an entry moves z = W e + b by less than 1e-30 |e|,
    some 20 orders of magnitude below the float32 resolution of z; 0 is what it is worth."""
    tiny = np.abs(arr) < FLUSH_BELOW
    if not tiny.any():
        return arr
    out = arr.copy()
    out[tiny] = 0.0
    return out


def export(model, path: Optional[os.PathLike | str] = None, *,
           block_bytes: int = BLOCK_BYTES) -> "_onnx.ModelProto":
    """The fitted model as an ONNX graph (opset 17) computing the raw output y(x) (a regressor's `predict`, a
    classifier's `decision_function`) on padded rows.

    Parameters
    ----------
    model : fitted AFMRegressor, AFMClassifier, FMRegressor, FMClassifier, FwFMRegressor or FwFMClassifier
        (FwFM: the pair term as sum_{r,s} R[f_r, f_s] <e_r, e_s> over the row's (m, m) Gram matrix, halved
        without its diagonal; the field array is in the graph)
    path : str or os.PathLike, optional
        Also write the model there (a model over 2 GiB has its weights in external data next to it).
    block_bytes : int, default 4 MiB
        AFM graphs only: rows go through the pair layers in blocks (an ONNX Scan) of as many rows as have pair
        tensors of at most about this size (at least one row per block), so a run's memory does not grow with
        the batch's row count n, only with its longest row m.

    Returns
    -------
    onnx.ModelProto
        Inputs `indices` (int64, (n, m), -1 for padding) and `values` (float32, (n, m)); outputs `score`
        (float32, (n,)) and, for classifiers, `probability` (float32, (n,)). See the module docstring for
        padding, feature ids and memory, and docs/serving.md for serving it with onnxruntime alone.
    """
    onnx = _import_onnx()
    params, attention, classifier = _fitted_parameters(model)
    if isinstance(block_bytes, bool) or not isinstance(block_bytes, (int, np.integer)) or block_bytes < 1:
        raise ValueError(f"block_bytes must be a positive integer, got {block_bytes!r}")
    graph = _build_graph(onnx, params, attention, classifier, type(model).__name__, int(block_bytes))
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   ir_version=IR_VERSION, producer_name="fastafm", producer_version=_version(),
                                   doc_string=f"fastafm {type(model).__name__}: score = y(x), the raw output")
    metadata = {"fastafm_estimator": type(model).__name__, "n_features": str(params["V"].shape[0]),
                "embedding_dim": str(params["V"].shape[1]), "attention": str(attention).lower(),
                "padding_index": "-1"}
    if hasattr(model, "classes_"):
        metadata["classes"] = repr([_plain(c) for c in model.classes_])
        metadata["negative_sampling_rate"] = repr(float(getattr(model, "negative_sampling_rate", 1.0)))
    onnx.helper.set_model_props(proto, metadata)
    large = proto.ByteSize() >= _PROTOBUF_LIMIT
    if not large:  # the checker serialises the model, which protobuf cannot above 2 GiB
        onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        onnx.save_model(proto, os.fspath(path), save_as_external_data=large,
                        location=os.path.basename(os.fspath(path)) + ".data" if large else None)
    return proto


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _version() -> str:
    from ._core import __version__

    return str(__version__)


def _build_graph(onnx, params: dict, attention: bool, classifier: bool, name: str, block_bytes: int):
    helper, TensorProto = onnx.helper, onnx.TensorProto  # noqa: N806
    k, t = params["V"].shape[1], params["W"].shape[0]
    i64 = np.int64
    inits = [onnx.numpy_helper.from_array(params["w0"].reshape(()), "w0"),
             onnx.numpy_helper.from_array(params["w"], "w"),
             onnx.numpy_helper.from_array(params["V"], "V"),
             onnx.numpy_helper.from_array(params["p"], "p")]

    def const(name_: str, value) -> str:
        inits.append(onnx.numpy_helper.from_array(np.asarray(value), name_))
        return name_

    def builder(nodes: list, prefix: str = ""):
        def node(op: str, inputs: list, output: str, **attrs) -> str:
            nodes.append(helper.make_node(op, inputs, [prefix + output], name=prefix + output, **attrs))
            return prefix + output
        return node

    main: list = []
    body: list = []  # the Scan's body (AFM)
    node = builder(main)
    pad_id, zero_id, one_id = const("pad_id", i64(-1)), const("zero_id", i64(0)), const("one_id", i64(1))
    n_features = const("n_features", i64(params["V"].shape[0]))
    zero_f = const("zero_f", np.float32(0.0))
    axis0, axis1 = const("axis0", np.array([0], i64)), const("axis1", np.array([1], i64))
    axis_last, flat = const("axis_last", np.array([-1], i64)), const("flat", np.array([-1], i64))

    # A batch of width m = 0 is widened to one padding slot: onnxruntime before 1.17 cannot reduce over an axis
    # of size 0 (keepdims=0 is refused, keepdims=1 gives a wrong shape).
    m_in = node("Shape", ["indices"], "m_in", start=1, end=2)
    widen = node("Max", [node("Sub", [const("one_1d", np.array([1], i64)), m_in], "one_minus_m"),
                         const("zero_1d", np.array([0], i64))], "widen")
    widen_pads = node("Concat", ["zero_1d", "zero_1d", "zero_1d", widen], "widen_pads", axis=0)
    indices = node("Pad", ["indices", widen_pads, pad_id], "indices_m1")
    values = node("Pad", ["values", widen_pads, zero_f], "values_m1")

    def reduce_sum(node, x: str, axes: str, output: str) -> str:
        return node("ReduceSum", [x, axes], output, keepdims=0)

    def rows_of(node, indices: str, values: str):
        """(linear term (n,), embedded slots V[i_r] x_r (n, m, k), real-slot mask (n, m)) of padded rows.
        Padding slots read id 0 with value 0; other negative ids become n_features, which the Gather refuses."""
        pad = node("Equal", [indices, pad_id], "pad")
        ids = node("Where", [pad, zero_id, indices], "ids_pad0")
        ids = node("Where", [node("Less", [ids, zero_id], "negative_id"), n_features, ids], "ids")
        vals = node("Where", [pad, zero_f, values], "vals")
        linear = reduce_sum(node, node("Mul", [node("Gather", ["w", ids], "w_rows"), vals], "wx"), axis1, "linear")
        emb = node("Mul", [node("Gather", ["V", ids], "v_rows"), node("Unsqueeze", [vals, axis_last], "vals3")],
                   "vx")
        return linear, emb, node("Not", [pad], "real")

    def score_from(node, linear: str, q: str) -> str:
        # p . q as a product and a sum, not a MatMul: onnxruntime 1.16 fails the MatMul of a q of shape (0, k).
        pair_term = reduce_sum(node, node("Mul", [q, "p"], "pq"), axis_last, "pair_term")
        return node("Add", [node("Add", ["w0", linear], "w0_linear"), pair_term], "score")

    if "R" in params and not attention:
        # FwFM: sum_{r<s} R[f_r, f_s] <e_r, e_s> = (sum_{r,s} R[f_r, f_s] G_rs - sum_r R[f_r, f_r] G_rr) / 2 with
        # G = E E^T (n, m, m) of the row's embedded slots (padding slots are 0 and add nothing).
        inits += [onnx.numpy_helper.from_array(params["R"], "R"),
                  onnx.numpy_helper.from_array(params["field"], "field"),
                  onnx.numpy_helper.from_array(np.ascontiguousarray(np.diag(params["R"])), "R_diag")]
        linear, emb, _ = rows_of(node, indices, values)
        ids = "ids"  # rows_of's padding-safe ids (padding: id 0, whose slot is 0)
        fid = node("Gather", ["field", ids], "fid")  # (n, m)
        gram = node("MatMul", [emb, node("Transpose", [emb], "vx_t", perm=[0, 2, 1])], "gram")  # (n, m, m)
        r_rows = node("Gather", ["R", fid], "r_rows")  # (n, m, F): R[f_r, :]
        cols = node("Expand", [node("Unsqueeze", [fid, axis1], "fid_row"), node("Shape", [gram], "gram_shape")],
                    "fid_cols")  # (n, m, m): f_s
        weights = node("GatherElements", [r_rows, cols], "pair_r", axis=2)  # R[f_r, f_s]
        total = reduce_sum(node, reduce_sum(node, node("Mul", [weights, gram], "weighted"), axis_last, "wg_r"),
                           axis_last, "wg")
        diag = reduce_sum(node, node("Mul", [node("Gather", ["R_diag", fid], "r_diag"),
                                             reduce_sum(node, node("Mul", [emb, emb], "vx_sq"), axis_last, "sq")],
                                     "diag_terms"), axis_last, "diag")
        pair_term = node("Mul", [node("Sub", [total, diag], "twice_pairs"), const("half", np.float32(0.5))],
                         "pair_term")
        node("Add", [node("Add", ["w0", linear], "w0_linear"), pair_term], "score")
    elif not attention:
        # Uniform pooling by the identity the core uses: q = ((sum_r v_r)^2 - sum_r v_r^2) / 2 per dimension.
        linear, emb, _ = rows_of(node, indices, values)
        total = reduce_sum(node, emb, axis1, "sum_vx")
        squares = reduce_sum(node, node("Mul", [emb, emb], "vx_sq"), axis1, "sum_vx_sq")
        q = node("Mul", [node("Sub", [node("Mul", [total, total], "sum_vx_2"), squares], "twice_q"),
                         const("half", np.float32(0.5))], "q")
        score_from(node, linear, q)
    else:
        inits += [onnx.numpy_helper.from_array(np.ascontiguousarray(params["W"].T), "W_t"),
                  onnx.numpy_helper.from_array(params["b"], "b"),
                  onnx.numpy_helper.from_array(params["h"].reshape(-1, 1), "h")]
        n_1 = node("Shape", [indices], "n_1", start=0, end=1)
        m_1 = node("Shape", [indices], "m_1", start=1, end=2)
        n, m = node("Squeeze", [n_1], "n"), node("Squeeze", [m_1], "m")
        # The pairs r < s of the m slots, row-major (0,1), (0,2), ..., (1,2), ...: NonZero of the strict upper
        # triangle of an m x m grid, so one graph serves every m.
        slots = node("Range", [zero_id, m, one_id], "slots")
        upper = node("Less", [node("Unsqueeze", [slots, axis_last], "slots_col"),
                              node("Unsqueeze", [slots, axis0], "slots_row")], "upper")
        pairs = node("NonZero", [upper], "pairs")  # (2, P)
        first = node("Gather", [pairs, zero_id], "pair_r", axis=0)
        second = node("Gather", [pairs, one_id], "pair_s", axis=0)
        n_pairs = node("Squeeze", [node("Shape", [first], "P_1")], "P")
        # (Reshapes whose target shape may hold a 0, P = 0 pairs for m < 2, take it literally: allowzero.)
        # Rows go through the pair layers in blocks of B rows (a Scan), so that the pair tensors of a run stay
        # near block_bytes whatever n is: B = ceil(n / n_blocks), n_blocks = ceil(n / B_max), B_max = the rows
        # whose m(m-1)/2 pairs hold (3k + 2t) floats each within block_bytes. The last block is padded with
        # padding rows, whose scores are dropped (n = 0 runs one block of one padding row).
        per_row = node("Mul", [node("Max", [n_pairs, one_id], "P_min1"), const("floats_per_pair", i64(3 * k + 2 * t))],
                       "floats_per_row")
        b_max = node("Max", [node("Div", [const("block_floats", i64(max(block_bytes // 4, 1))), per_row], "b_fit"),
                             one_id], "b_max")
        n_blocks = node("Max", [node("Div", [node("Sub", [node("Add", [n, b_max], "n_plus_b"), one_id], "n_plus_b_1"),
                                             b_max], "nb_ceil"), one_id], "n_blocks")  # >= 1: Scan needs one
        block = node("Max", [node("Div", [node("Sub", [node("Add", [n, n_blocks], "n_plus_nb"), one_id],
                                                   "n_plus_nb_1"), n_blocks], "b_ceil"), one_id], "B")
        extra = node("Sub", [node("Mul", [n_blocks, block], "n_padded"), n], "extra_rows")
        pads = node("Concat", [axis0, axis0, node("Unsqueeze", [extra, axis0], "extra_1"), axis0], "pads", axis=0)
        b_1 = node("Unsqueeze", [block, axis0], "B_1")
        blocks_shape = node("Concat", [node("Unsqueeze", [n_blocks, axis0], "n_blocks_1"), b_1, m_1],
                            "blocks_shape", axis=0)
        index_blocks = node("Reshape", [node("Pad", [indices, pads, pad_id], "indices_padded"), blocks_shape],
                            "index_blocks", allowzero=1)  # (n_blocks, B, m)
        value_blocks = node("Reshape", [node("Pad", [values, pads, zero_f], "values_padded"), blocks_shape],
                            "value_blocks", allowzero=1)
        # Flat positions of the pairs' slots in a block's (B * m, k) embedded slots: row * m + slot, so that the
        # pair products are two row gathers and the attention layer one GEMM over (B * P, k).
        row_start = node("Mul", [node("Unsqueeze", [node("Range", [zero_id, block, one_id], "block_rows"), axis_last],
                                      "block_rows_col"), m], "row_start")  # (B, 1)
        flat_r = node("Reshape", [node("Add", [row_start, first], "slot_r"), flat], "flat_r")  # (B * P,)
        flat_s = node("Reshape", [node("Add", [row_start, second], "slot_s"), flat], "flat_s")
        pair_shape = node("Concat", [b_1, node("Unsqueeze", [n_pairs, axis0], "P_1d")], "pair_shape", axis=0)
        e_shape = node("Concat", [pair_shape, const("k_1", np.array([k], i64))], "e_shape", axis=0)

        bnode = builder(body, "block_")
        linear, emb, real = rows_of(bnode, "block_indices", "block_values")
        real_pair = bnode("And", [bnode("Gather", [real, first], "real_r", axis=1),
                                  bnode("Gather", [real, second], "real_s", axis=1)], "real_pair")  # (B, P)
        emb2 = bnode("Reshape", [emb, const("slot_rows", np.array([-1, k], i64))], "vx_2d")  # (B * m, k)
        e = bnode("Mul", [bnode("Gather", [emb2, flat_r], "e_r"), bnode("Gather", [emb2, flat_s], "e_s")],
                  "e")  # (B * P, k)
        u = bnode("Relu", [bnode("Gemm", [e, "W_t", "b"], "z")], "relu_z")  # (B * P, t)
        s = bnode("Reshape", [bnode("MatMul", [u, "h"], "s_col"), pair_shape], "s", allowzero=1)  # (B, P)
        field_pair = _field_pairs(onnx, bnode, params, inits, first, second) if "field" in params else None
        if "S" in params:  # field-aware AFM: the field pair's logit term
            s = bnode("Add", [s, bnode("Gather", ["S_upper", field_pair], "s_field")], "s_with_field")
        s = bnode("Where", [real_pair, s, const("lowest", np.float32(_LOWEST))], "s_masked")
        a = bnode("Where", [real_pair, bnode("Softmax", [s], "softmax", axis=1), zero_f], "a")
        if "R" in params:  # field-aware AFM: the field pair's weight on the pooled pair
            a = bnode("Mul", [a, bnode("Gather", ["R_upper", field_pair], "r_field")], "a_weighted")
        e3 = bnode("Reshape", [e, e_shape], "e_3d", allowzero=1)  # (B, P, k)
        q = bnode("MatMul", [bnode("Unsqueeze", [a, axis1], "a3"), e3], "q3")  # (B, 1, k)
        score_from(bnode, linear, bnode("Squeeze", [q, axis1], "q"))  # block_score (B,)
        body_graph = helper.make_graph(
            body, "score_block",
            [helper.make_tensor_value_info("block_indices", TensorProto.INT64, ["B", "m"]),
             helper.make_tensor_value_info("block_values", TensorProto.FLOAT, ["B", "m"])],
            [helper.make_tensor_value_info("block_score", TensorProto.FLOAT, ["B"])])
        scores = node("Scan", [index_blocks, value_blocks], "block_scores", body=body_graph, num_scan_inputs=2)
        node("Slice", [node("Reshape", [scores, flat], "padded_scores"), axis0, n_1, axis0], "score")

    outputs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["n"])]
    if classifier:
        # 1 / (1 + exp(-score)), not Sigmoid: onnxruntime's Sigmoid is accurate to about 1e-7 absolute, which is
        # a large relative error for probabilities near 0; Exp keeps float32 relative accuracy there.
        one = const("one_f", np.float32(1.0))
        node("Reciprocal", [node("Add", [one, node("Exp", [node("Neg", ["score"], "neg_score")], "exp_neg_score")],
                                 "one_plus_exp")], "probability")
        outputs.append(helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["n"]))
    inputs = [helper.make_tensor_value_info("indices", TensorProto.INT64, ["n", "m"]),
              helper.make_tensor_value_info("values", TensorProto.FLOAT, ["n", "m"])]
    used = {name_ for n_ in main + body for name_ in n_.input}  # the shared constants not all graphs need
    return helper.make_graph(main, f"fastafm_{name}", inputs, outputs, [i for i in inits if i.name in used])


def _field_pairs(onnx, bnode, params: dict, inits: list, first: str, second: str) -> str:
    """Field-aware AFM: the flat index min(f_r, f_s) * F + max(f_r, f_s) of every pair's field pair (B, P), into
    the row-major R_upper and S_upper, which the graph reads in their upper triangles as the core does."""
    n_fields = int(params["R" if "R" in params else "S"].shape[0])
    inits.append(onnx.numpy_helper.from_array(params["field"], "field"))
    inits.append(onnx.numpy_helper.from_array(np.int64(n_fields), "n_fields"))
    for name in ("R", "S"):
        if name in params:
            inits.append(onnx.numpy_helper.from_array(np.ascontiguousarray(params[name].ravel()), f"{name}_upper"))
    fid = bnode("Gather", ["field", "block_ids"], "fid")  # (B, m); rows_of's padding-safe ids
    f_r = bnode("Gather", [fid, first], "f_r", axis=1)
    f_s = bnode("Gather", [fid, second], "f_s", axis=1)
    lo, hi = bnode("Min", [f_r, f_s], "f_lo"), bnode("Max", [f_r, f_s], "f_hi")
    return bnode("Add", [bnode("Mul", [lo, "n_fields"], "f_lo_rows"), hi], "field_pair")


def to_padded(X, m: Optional[int] = None, n_features: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """CSR rows as the graph's inputs: (indices int64 (n, m), values float32 (n, m)), -1/0 in padding slots.

    Parameters
    ----------
    X : scipy.sparse matrix or 2-D array
        The rows `predict` would take: a CSR row's stored entries in storage order (repeated ids and explicit
        zeros kept), a dense row's non-zeros. Other sparse formats are converted with `tocsr()`, as `predict`
        does.
    m : int, optional
        Width of the result, at least the longest row's non-zero count (the default).
    n_features : int, optional
        The model's width; X of another width is a ValueError, as in `predict`.
    """
    if sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got {X.ndim}-D")
        X = X.tocsr()
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(f"X must be 2-D (n_rows, n_features), got shape {arr.shape}")
        X = sp.csr_matrix(arr)
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but the model is expecting {n_features} features as input")
    with np.errstate(over="ignore", invalid="ignore"):
        data = np.asarray(X.data).astype(np.float32)
    if not np.all(np.isfinite(data)):
        raise ValueError("X contains NaN or infinity (or values too large for float32)")
    indptr = np.asarray(X.indptr, dtype=np.int64)
    nnz = np.diff(indptr)
    longest = int(nnz.max()) if nnz.size else 0
    if m is None:
        m = longest
    elif isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < longest:
        raise ValueError(f"m must be an integer >= the longest row's {longest} non-zeros, got {m!r}")
    n = X.shape[0]
    indices = np.full((n, int(m)), -1, dtype=np.int64)
    values = np.zeros((n, int(m)), dtype=np.float32)
    rows = np.repeat(np.arange(n), nnz)
    slots = np.arange(indptr[-1]) - np.repeat(indptr[:-1], nnz)
    indices[rows, slots] = np.asarray(X.indices)[:indptr[-1]]
    values[rows, slots] = data[:indptr[-1]]
    return indices, values
