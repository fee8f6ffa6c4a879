"""course_lib.monitor: every number the monitor reports against a direct autograd computation,
activation statistics against initialisation theory, and the monitor's behaviour on bad input."""

from __future__ import annotations

import gc
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_lib.data import load_digits
from course_lib.models import make_mlp
from course_lib.monitor import (
    LAYER_STATS,
    PARAM_STATS,
    STEP_STATS,
    GradientMonitor,
    LayerInfo,
    MonitorConfig,
    MonitorRecord,
)
from course_lib.recurrent import make_rnn
from course_lib.training import Callback, train

RTOL = 1e-5  # float64 models: the monitor's sums and norms against autograd's


def _data(n: int = 32, d: int = 12, k: int = 5, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randint(0, k, (n,), generator=g)


def _model(activation: str, norm: str | None = None, seed: int = 0, **kw) -> nn.Sequential:
    torch.manual_seed(seed)
    model = make_mlp(in_features=12, hidden=(16, 16), out_features=5, activation=activation, norm=norm, **kw)
    return model.double()


def _direct(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor):
    """Forward through each submodule by hand, keeping every output and its gradient (retain_grad)."""
    outs: dict[str, torch.Tensor] = {}
    h = x
    for name, block in model.named_children():
        parts = [(f"{name}.{n}", m) for n, m in block.named_children()] or [(name, block)]
        for full, m in parts:
            h = m(h)
            if not isinstance(m, nn.Identity):
                h.retain_grad()
                outs[full] = h
    loss = F.cross_entropy(h, y)
    loss.backward()
    return loss, outs


def _close(got: float, want: float, what: str, rtol: float = RTOL) -> None:
    assert math.isclose(got, want, rel_tol=rtol, abs_tol=1e-12), f"{what}: monitor {got!r}, autograd {want!r}"


# ---- equality with autograd ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("activation", "norm", "kw"),
    [
        ("tanh", None, {"init": "normal", "init_std": 0.6}),  # some tanh outputs saturate
        ("relu", None, {"bias_init": -0.3, "init": "he"}),  # some ReLU units die
        ("sigmoid", "batch", {}),
        ("relu", "layer", {}),
    ],
)
def test_every_number_equals_autograd(activation, norm, kw):
    model = _model(activation, norm, **kw)
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    cfg = MonitorConfig(saturation_eps=0.05)
    with GradientMonitor(model, cfg) as mon:
        loss, outs = _direct(model, x, y)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        mon.on_after_backward(0, model)
        opt.step()
        mon.on_step_end(0, model, float(loss.detach()))
    rec = mon.record
    assert rec.layers == list(outs), "layers are listed in forward order"
    assert rec.loss == [pytest.approx(float(loss.detach()))]
    for name, out in outs.items():
        col = {s: float(rec.matrix(s, [name])[0, 0]) for s in LAYER_STATS}
        v = out.detach()
        _close(col["act_mean"], float(v.mean()), f"{name} mean")
        _close(col["act_std"], float(v.std(unbiased=False)), f"{name} std")
        _close(col["out_grad_norm"], float(out.grad.norm()), f"{name} ‖∂L/∂h‖")
        assert col["nonfinite"] == 0.0 and col["calls"] == 1.0
        module = model.get_submodule(name)
        if isinstance(module, nn.Tanh):
            _close(col["saturated"], float((v.abs() > 1 - 0.05).double().mean()), f"{name} saturated")
        elif isinstance(module, nn.Sigmoid):
            _close(col["saturated"], float(((v < 0.05) | (v > 0.95)).double().mean()), f"{name} saturated")
        else:
            assert math.isnan(col["saturated"]), f"{name} has no bounds, so no saturated fraction"
        if isinstance(module, nn.ReLU):
            _close(col["dead"], float((v <= 0).all(dim=0).double().mean()), f"{name} dead")
        else:
            assert math.isnan(col["dead"])
        own = dict(module.named_parameters(recurse=False))
        if own:
            g = math.sqrt(sum(float(p.grad.norm()) ** 2 for p in own.values()))
            w = math.sqrt(sum(float(before[f"{name}.{n}"].norm()) ** 2 for n in own))
            d = math.sqrt(
                sum(float((p.detach() - before[f"{name}.{n}"]).norm()) ** 2 for n, p in own.items())
            )
            _close(col["grad_norm"], g, f"{name} ‖∂L/∂θ‖")
            _close(col["param_norm"], w, f"{name} ‖θ‖")
            _close(col["update_ratio"], d / w, f"{name} update ratio")
    for i, (pname, p) in enumerate(model.named_parameters()):
        assert rec.params[i] == pname
        _close(float(rec.param_matrix("grad_norm")[i, 0]), float(p.grad.norm()), f"{pname} grad")
        _close(float(rec.param_matrix("param_norm")[i, 0]), float(before[pname].norm()), f"{pname} norm")
        ratio = float(rec.param_matrix("update_ratio")[i, 0])
        if float(before[pname].norm()) == 0:  # a zero-initialised bias: the ratio is undefined, not inf
            assert math.isnan(ratio), f"{pname}: ‖θ‖ = 0 should give NaN, got {ratio}"
        else:
            want = float((p.detach() - before[pname]).norm() / before[pname].norm())
            _close(ratio, want, f"{pname} update ratio")
        assert rec.param_matrix("nonfinite")[i, 0] == 0.0


def test_float32_model_matches_autograd_closely():
    torch.manual_seed(1)
    model = make_mlp(in_features=12, hidden=(64, 64), out_features=5, activation="relu", init="he")
    x, y = _data(n=128, dtype=torch.float32)
    with GradientMonitor(model) as mon:
        _, outs = _direct(model, x, y)
        mon.record_step()
    for name, out in outs.items():
        _close(
            float(mon.record.matrix("act_std", [name])[0, 0]),
            float(out.detach().double().std(unbiased=False)),
            name,
            1e-4,
        )
        _close(
            float(mon.record.matrix("out_grad_norm", [name])[0, 0]),
            float(out.grad.double().norm()),
            name,
            1e-4,
        )


def test_tiny_and_huge_values_keep_their_norms():
    """Squares of 1e-30 underflow float32 and squares of 1e25 overflow it; the monitor's norms do neither."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    x = torch.randn(16, 8)
    with GradientMonitor(model) as mon:
        out = model(x)
        out.retain_grad()
        (1e-30 * out.sum()).backward()  # a vanishing gradient: every entry ~1e-30
        mon.record_step()
    rec = mon.record
    _close(float(rec.matrix("out_grad_norm", ["1"])[0, 0]), 1e-30 * math.sqrt(out.numel()), "tiny ‖∂L/∂h‖")
    for i, p in enumerate(model.parameters()):
        _close(float(rec.param_matrix("grad_norm")[i, 0]), float(p.grad.double().norm()), "tiny ‖∂L/∂θ‖")
    assert rec.matrix("nonfinite")[0, 0] == 0
    big = nn.Sequential(nn.Linear(8, 8))
    with GradientMonitor(big) as mon:
        y = big(1e25 * x)
        y.sum().backward()
        mon.record_step()
    _close(
        float(mon.record.matrix("act_std")[0, 0]), float(y.detach().double().std(unbiased=False)), "huge std"
    )
    assert mon.record.matrix("nonfinite")[0, 0] == 0, "huge but finite is not non-finite"


def test_recurrent_cell_gradients_through_time_equal_autograd():
    torch.manual_seed(0)
    model = make_rnn("rnn", input_size=3, hidden_size=8, output_size=2).double()
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (5,))
    cell = model.cells[0]
    with GradientMonitor(model) as mon:
        hs, h = [], None
        for t in range(x.shape[1]):  # the same unrolled loop RecurrentNet runs, keeping each h_t
            h = cell(x[:, t], h)
            h.retain_grad()
            hs.append(h)
        F.cross_entropy(model.head(h), y).backward()
        mon.record_step()
    rec = mon.record
    _close(float(rec.matrix("time_grad_first", ["cells.0"])[0, 0]), float(hs[0].grad.norm()), "‖∂L/∂h_1‖")
    _close(float(rec.matrix("time_grad_last", ["cells.0"])[0, 0]), float(hs[-1].grad.norm()), "‖∂L/∂h_T‖")
    total = math.sqrt(sum(float(h.grad.norm()) ** 2 for h in hs))
    _close(float(rec.matrix("out_grad_norm", ["cells.0"])[0, 0]), total, "‖∂L/∂h‖ over all steps")
    all_h = torch.stack([h.detach() for h in hs])
    _close(float(rec.matrix("act_mean", ["cells.0"])[0, 0]), float(all_h.mean()), "mean over calls")
    _close(
        float(rec.matrix("act_std", ["cells.0"])[0, 0]), float(all_h.std(unbiased=False)), "std over calls"
    )
    assert rec.matrix("calls", ["cells.0"])[0, 0] == 7


def test_long_loop_of_calls_is_folded_without_changing_the_numbers():
    torch.manual_seed(0)
    model = make_rnn("rnn", input_size=1, hidden_size=16, output_size=1, per_step=True).double()
    x = torch.randn(4, 700, 1, dtype=torch.float64)  # 700 calls: more pending values than the fold limit
    with GradientMonitor(model) as mon:
        out = model(x)
        out.pow(2).mean().backward()
        mon.record_step()
    with torch.no_grad():
        hs, h = [], None
        for t in range(x.shape[1]):
            h = model.cells[0](x[:, t], h)
            hs.append(h)
        all_h = torch.stack(hs)
    rec = mon.record
    _close(float(rec.matrix("act_mean", ["cells.0"])[0, 0]), float(all_h.mean()), "mean", 1e-6)
    _close(float(rec.matrix("act_std", ["cells.0"])[0, 0]), float(all_h.std(unbiased=False)), "std", 1e-6)
    _close(
        float(rec.matrix("saturated", ["cells.0"])[0, 0]), float((all_h.abs() > 0.99).double().mean()), "sat"
    )


def test_conv_and_fused_lstm_layers():
    torch.manual_seed(0)
    conv = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(100, 3)
    )
    x = torch.randn(6, 2, 5, 5)
    with torch.no_grad():
        conv[0].bias[0] = -50.0  # channel 0 is negative at every position of every example: dead
    with GradientMonitor(conv) as mon:
        F.cross_entropy(conv(x), torch.randint(0, 3, (6,))).backward()
        mon.record_step()
    relu_out = conv[1](conv[0](x)).detach()  # (B, C, H, W): a channel is a unit
    want = float((relu_out <= 0).permute(1, 0, 2, 3).reshape(4, -1).all(dim=1).float().mean())
    assert want >= 0.25
    assert mon.record.matrix("dead", ["1"])[0, 0] == pytest.approx(want)
    assert mon.record.layers == ["0", "1", "2", "4"]

    lstm = nn.LSTM(3, 5, batch_first=True)
    x = torch.randn(2, 4, 3)
    with GradientMonitor(lstm) as mon:
        out, _ = lstm(x)
        out.retain_grad()
        out.sum().backward()
        mon.record_step()
    assert mon.record.layers == ["(model)"]
    assert mon.record.matrix("act_mean")[0, 0] == pytest.approx(float(out.detach().mean()), rel=1e-5)
    assert mon.record.matrix("out_grad_norm")[0, 0] == pytest.approx(float(out.grad.norm()), rel=1e-5)


class Affine(nn.Module):
    """A user's own layer: weight and bias of its own, no nn.Linear inside."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in, dtype=torch.float64) / math.sqrt(n_in))
        self.bias = nn.Parameter(0.1 * torch.randn(n_out, dtype=torch.float64))

    def forward(self, x):
        return x @ self.weight.T + self.bias


def test_custom_layers_are_measured_like_built_in_ones():
    torch.manual_seed(0)
    model = nn.Sequential(Affine(12, 16), nn.Tanh(), Affine(16, 5))
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    with GradientMonitor(model) as mon:
        loss, outs = _direct(model, x, y)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        mon.on_after_backward(0, model)
        opt.step()
        mon.on_step_end(0, model, float(loss.detach()))
    rec = mon.record
    assert rec.layers == ["0", "1", "2"] and [i.kind for i in rec.layer_info] == [
        "custom",
        "activation",
        "custom",
    ]
    assert rec.layer_info[0].label == "Sequential.0 (Affine)"
    for name in ("0", "2"):
        out, module = outs[name], model.get_submodule(name)
        _close(float(rec.matrix("act_mean", [name])[0, 0]), float(out.detach().mean()), f"{name} mean")
        _close(
            float(rec.matrix("act_std", [name])[0, 0]), float(out.detach().std(unbiased=False)), f"{name} std"
        )
        _close(float(rec.matrix("out_grad_norm", [name])[0, 0]), float(out.grad.norm()), f"{name} ‖∂L/∂h‖")
        g = math.sqrt(sum(float(p.grad.norm()) ** 2 for p in module.parameters()))
        _close(float(rec.matrix("grad_norm", [name])[0, 0]), g, f"{name} ‖∂L/∂θ‖")
        w = math.sqrt(sum(float(before[f"{name}.{n}"].norm()) ** 2 for n, _ in module.named_parameters()))
        d = math.sqrt(
            sum(float((p.detach() - before[f"{name}.{n}"]).norm()) ** 2 for n, p in module.named_parameters())
        )
        _close(float(rec.matrix("update_ratio", [name])[0, 0]), d / w, f"{name} update ratio")


def test_per_time_step_gradients_equal_autograd():
    """Chapter 3 computes ‖∂L/∂h_t‖ for every t by hand with retain_grad(); the monitor keeps it on request."""
    torch.manual_seed(0)
    model = make_rnn("lstm", input_size=2, hidden_size=8, output_size=1).double()
    x, y = torch.randn(6, 9, 2, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64)
    cell = model.cells[0]
    with GradientMonitor(model, MonitorConfig(per_time_step=True)) as mon:
        state, hs = None, []
        for t in range(x.shape[1]):
            state = cell(x[:, t], state)
            state[0].retain_grad()
            hs.append(state[0])
        F.mse_loss(model.head(state[0]), y).backward()
        mon.record_step()
    series = mon.record.time_grads[0]["cells.0"]
    want = np.array([float(h.grad.norm()) for h in hs])
    np.testing.assert_allclose(series, want, rtol=1e-5)
    assert mon.record.matrix("time_grad_first", ["cells.0"])[0, 0] == pytest.approx(want[0], rel=1e-5)
    with GradientMonitor(model) as mon:  # off by default: nothing kept
        F.mse_loss(model(x), y).backward()
        mon.record_step()
    assert mon.record.time_grads == {}


def test_a_non_finite_loss_in_train_is_recorded_with_its_value():
    torch.manual_seed(0)
    model = make_mlp(hidden=(8,))

    def loss_fn(logits, y):
        return F.cross_entropy(logits, y) + torch.log(torch.zeros(()))  # -inf from finite logits

    with GradientMonitor(model) as mon:
        hist = train(model, load_digits().train, epochs=1, loss_fn=loss_fn, callbacks=[mon], progress=False)
    rec = mon.record
    assert hist.stopped_at_step == 0 and rec.n_steps == 1
    assert rec.loss == [-math.inf]
    assert rec.step_values("loss_known").tolist() == [1.0] and rec.step_values("backward").tolist() == [0.0]
    assert (rec.matrix("nonfinite")[:, 0] == 0).all(), "the outputs were finite"


def test_statistics_are_addressed_by_name():
    infos = [LayerInfo("a", "linear", "Linear", None, False, ("a.weight",))]
    rec = MonitorRecord(infos, ["a.weight"])
    rec.append(
        {s: np.array([float(k)]) for k, s in enumerate(LAYER_STATS)},
        {s: np.array([10.0 + k]) for k, s in enumerate(PARAM_STATS)},
        {"loss": 2.5, "backward": 1.0},
        step=7,
    )
    for k, s in enumerate(LAYER_STATS):
        assert rec.matrix(s)[0, 0] == k
    for k, s in enumerate(PARAM_STATS):
        assert rec.param_matrix(s)[0, 0] == 10 + k
    assert rec.loss == [2.5] and rec.steps.tolist() == [7]
    assert np.isnan(rec.step_values("input_nonfinite")[0]), "not given: NaN, not 0"
    assert set(STEP_STATS) == {"loss", "loss_known", "backward", "input_nonfinite"}
    with pytest.raises(KeyError, match="unknown step statistic"):
        rec.step_values("nope")


OPTIMISERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.2),
    "sgd momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    "sgd nesterov, weight decay": lambda ps: torch.optim.SGD(
        ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2
    ),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2),
    "by hand": None,
}


@pytest.mark.parametrize("name", list(OPTIMISERS))
@pytest.mark.parametrize("clip", [None, 0.05])
def test_update_ratios_equal_the_parameter_change_for_every_optimiser(name, clip):
    """Over several steps: read from the optimiser (plain SGD, momentum), from a copy around its
    step (others), or from a copy of the whole model (an update by hand), always the true ‖Δθ‖/‖θ‖."""
    torch.manual_seed(0)
    model = _model("tanh")
    x, y = _data()
    frozen_out = list(model.parameters())[-1]  # in no optimiser: it must read 0
    params = [p for p in model.parameters() if p is not frozen_out]
    opt = OPTIMISERS[name](params) if OPTIMISERS[name] else None
    with GradientMonitor(model) as mon:
        want = []
        for step in range(4):
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            mon.on_after_backward(step, model)
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            before = [p.detach().clone() for p in model.parameters()]
            if opt is not None:
                opt.step()
            else:
                with torch.no_grad():
                    for p in params:
                        p -= 0.1 * p.grad
            want.append(
                [
                    float((p.detach() - b).norm() / b.norm())
                    for p, b in zip(model.parameters(), before, strict=True)
                ]
            )
            mon.on_step_end(step, model, float(loss.detach()))
    got = mon.record.param_matrix("update_ratio").T
    np.testing.assert_allclose(got, np.array(want), rtol=1e-6, atol=1e-15)
    assert (got[:, -1] == 0).all(), "a parameter no optimiser holds did not move"


# ---- theory: activation std through 50 layers ----------------------------------------------------


def _std_profile(init: str, std: float = 1.0) -> np.ndarray:
    torch.manual_seed(0)
    model = make_mlp(
        in_features=256, hidden=(256,) * 50, out_features=10, activation="relu", init=init, init_std=std
    )
    x = torch.randn(256, 256)
    linear = [f"hidden{i}.linear" for i in range(1, 51)]
    with GradientMonitor(model, layers=linear, config=MonitorConfig(track_updates=False)) as mon:
        model(x).sum().backward()
        mon.record_step()
    return mon.record.matrix("act_std", linear)[:, 0]


def test_he_init_keeps_activation_std_while_bad_scales_explode_or_vanish():
    he = _std_profile("he")
    assert np.all(np.isfinite(he))
    assert 0.25 < he[-1] / he[0] < 4, f"He init drifted by {he[-1] / he[0]:.2f} over 50 layers"
    assert np.all((he / he[0] > 0.25) & (he / he[0] < 4))
    big = _std_profile("normal", 1.0)  # N(0, 1): sqrt(256/2) ≈ 11× per layer
    assert not np.isfinite(big[-1]) or big[-1] / big[0] > 1e30, "N(0, 1) should explode"
    assert big[5] / big[0] == pytest.approx((256 / 2) ** 2.5, rel=0.5)  # the variance recursion, 5 layers
    small = _std_profile("normal", 0.01)  # N(0, 0.01²): 0.01·sqrt(128) ≈ 0.11× per layer
    assert small[-1] / small[0] < 1e-30, "N(0, 0.01) should vanish"
    assert small[5] / small[0] == pytest.approx((0.01**2 * 128) ** 2.5, rel=0.5)


# ---- the training loop, memory, detaching -------------------------------------------------------


def test_plugs_into_train_and_matches_history():
    torch.manual_seed(0)
    data = load_digits()
    model = make_mlp(hidden=(32, 32), activation="tanh")
    mon = GradientMonitor(model)
    assert isinstance(mon, Callback)
    hist = train(
        model, data.train, epochs=1, max_steps=12, val_data=data.val, callbacks=[mon], progress=False
    )
    rec = mon.record
    assert rec.n_steps == hist.steps == 12
    np.testing.assert_allclose(rec.loss, hist.step_loss, rtol=1e-6)
    total = np.sqrt(np.nansum(rec.param_matrix("grad_norm") ** 2, axis=0))
    np.testing.assert_allclose(total, hist.step_grad_norm, rtol=1e-5)
    assert (rec.matrix("calls") == 1).all(), "evaluate() runs under no_grad and must not be recorded"
    mon.detach()


def test_memory_stays_flat_and_no_tensor_outlives_a_step():
    torch.manual_seed(0)
    model = make_mlp(in_features=16, hidden=(32,) * 4, out_features=3)
    x, y = torch.randn(64, 16), torch.randint(0, 3, (64,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(s, mon):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        mon.on_after_backward(s, model)
        opt.step()
        mon.on_step_end(s, model, float(loss.detach()))

    def live_tensors() -> int:
        gc.collect()
        with warnings.catch_warnings():  # isinstance() on some torch objects warns of deprecations
            warnings.simplefilter("ignore")
            return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    with GradientMonitor(model) as mon:
        for s in range(5):
            step(s, mon)
        baseline, size = live_tensors(), mon.record.nbytes()
        for s in range(5, 105):
            step(s, mon)
            assert not mon._updates.armed and mon._pending.empty()
        assert live_tensors() <= baseline
        per_step = (mon.record.nbytes() - size) / 100
        assert per_step < 2 * 4 * (len(LAYER_STATS) * 9 + len(PARAM_STATS) * 10), "summaries only"


def test_detach_removes_every_hook_and_the_model_is_unchanged():
    torch.manual_seed(0)
    model = make_mlp(in_features=8, hidden=(8, 8), out_features=2)
    x = torch.randn(4, 8)
    ref = model(x).detach()
    with GradientMonitor(model) as mon:
        assert all(len(m._forward_hooks) == 1 for m in mon._modules)
        torch.testing.assert_close(model(x), ref)  # hooks observe; they never change the output
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    steps = mon.record.n_steps
    model(x).sum().backward()
    assert mon.record.n_steps == steps
    with mon:  # a detached monitor re-attaches in `with`
        model(x).sum().backward()
        mon.record_step()
    assert mon.record.n_steps == steps + 1 and not mon.attached


def test_every_n_steps_and_histograms():
    torch.manual_seed(0)
    data = load_digits()
    model = make_mlp(hidden=(32, 32))
    cfg = MonitorConfig(every=2, histogram_every=4, histogram_size=100)
    with GradientMonitor(model, cfg) as mon:
        train(model, data.train, epochs=1, max_steps=9, callbacks=[mon], progress=False)
    rec = mon.record
    assert rec.steps.tolist() == [0, 2, 4, 6, 8]
    assert sorted(rec.samples) == [0, 4, 8]
    sample = rec.samples[4]["hidden1.act"]
    assert sample["act"].shape == (100,) and sample["grad"].shape == (100,)
    assert np.all(sample["act"] >= 0), "ReLU samples are ReLU outputs"


def test_histogram_samples_are_values_of_the_tensor():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 50), nn.Tanh())
    x = torch.randn(40, 4)
    with GradientMonitor(model, MonitorConfig(histogram_every=1, histogram_size=64)) as mon:
        out = model(x)
        out.retain_grad()
        out.sum().backward()
        mon.record_step()
    kept = mon.record.samples[0]["1"]
    assert np.isin(kept["act"], out.detach().numpy()).all()
    assert len(set(kept["act"].tolist())) > 50, "samples spread over the tensor"


# ---- bad input --------------------------------------------------------------------------------


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 3))

    def forward(self, x):
        return torch.relu(x @ self.w)


def test_model_without_supported_layers_is_refused_clearly():
    with pytest.raises(ValueError, match="no supported layer"):
        GradientMonitor(nn.Sequential(nn.Flatten(), nn.Dropout()))  # nothing to measure in it
    assert GradientMonitor(_Functional()).detach() is None, "a module holding parameters is measured"
    with pytest.raises(TypeError, match="nn.Module"):
        GradientMonitor(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no module named"):
        GradientMonitor(make_mlp(), layers=["nope"])
    with pytest.raises(ValueError, match="does not support"):
        GradientMonitor(make_mlp(), layers=["hidden1"])  # a Block is a container, not a layer


def test_attaching_twice_is_refused():
    model = make_mlp(hidden=(8,))
    with GradientMonitor(model) as mon:
        with pytest.raises(RuntimeError, match="already watched"):
            GradientMonitor(model)
        with pytest.raises(RuntimeError, match="already watched"):
            GradientMonitor(model.hidden1)  # a part of a watched model
        with pytest.raises(RuntimeError, match="already attached"):
            mon.attach()
    GradientMonitor(model).detach()  # free again once the first is detached


def test_steps_without_gradients_are_refused():
    model = make_mlp(in_features=4, hidden=(4,), out_features=2)
    with GradientMonitor(model) as mon:
        with pytest.raises(RuntimeError, match="nothing to record"):
            mon.record_step()
        model(torch.randn(3, 4))  # a forward pass, but no backward
        with pytest.raises(RuntimeError, match="no gradient"):
            mon.record_step()
        with pytest.raises(RuntimeError, match="on_after_backward"):
            mon.on_step_end(0, model, 0.0)
    with pytest.raises(RuntimeError, match="detached"):
        mon.on_after_backward(0, model)


def test_non_finite_values_are_recorded_not_hidden():
    model = make_mlp(in_features=4, hidden=(4,), out_features=2)
    x = torch.randn(3, 4)
    x[0, 0] = float("inf")
    with GradientMonitor(model) as mon:
        F.cross_entropy(model(x), torch.tensor([0, 1, 0])).backward()
        mon.record_step()
    flags = mon.record.matrix("nonfinite")[:, 0]
    assert flags[0] % 2 == 1, "the first layer's output held inf"
    assert (mon.record.param_matrix("nonfinite")[:, 0] == 8).any(), "its gradients are not finite (bit 8)"


def test_a_diverged_step_is_kept():
    """train() stops before backward when the loss is not finite; the monitor still keeps that forward pass."""
    torch.manual_seed(0)
    data = load_digits()
    model = make_mlp(hidden=(64,) * 6, init="he")
    with GradientMonitor(model) as mon:
        hist = train(model, data.train, lr=5.0, epochs=2, callbacks=[mon], progress=False)
    assert hist.diverged
    rec = mon.record
    assert rec.n_steps == hist.steps
    assert (rec.matrix("nonfinite")[:, -1] > 0).any()
    assert np.isnan(rec.loss[-1])


def test_record_api_errors_and_reprs():
    model = make_mlp(in_features=4, hidden=(4,), out_features=2)
    with GradientMonitor(model) as mon:
        model(torch.randn(3, 4)).sum().backward()
        mon.record_step(torch.tensor(1.5))
        assert "attached" in repr(mon)
    rec = mon.record
    assert isinstance(rec, MonitorRecord) and "steps=1" in repr(rec)
    assert rec.loss == [1.5]
    with pytest.raises(KeyError, match="unknown layer statistic"):
        rec.matrix("gradnorm")
    with pytest.raises(KeyError, match="unknown parameter statistic"):
        rec.param_matrix("act_mean")
    with pytest.raises(KeyError, match="not monitored"):
        rec.matrix("act_mean", ["nope"])
    with pytest.raises(ValueError):
        MonitorConfig(saturation_eps=0.7)
    with pytest.raises(ValueError):
        MonitorConfig(every=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_numbers():
    """Three steps on each device, through every update path: the whole-model copy (step 0), then
    plain SGD read from the step, momentum read from its buffer, Adam's copy around its step;
    a custom layer, ReLU dead units and tanh saturation included."""
    results = {}
    for device in ("cpu", "cuda"):
        for name in ("sgd", "sgd momentum", "adamw"):
            torch.manual_seed(0)
            model = nn.Sequential(Affine(12, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 5))
            model = model.to(device, torch.float64)
            x, y = (t.to(device) for t in _data())
            opt = OPTIMISERS[name](model.parameters())
            with GradientMonitor(model) as mon:
                for step in range(3):
                    opt.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(model(x), y)
                    loss.backward()
                    mon.on_after_backward(step, model)
                    opt.step()
                    mon.on_step_end(step, model, float(loss.detach()))
            rec = mon.record
            results[device, name] = np.stack([rec.matrix(s) for s in LAYER_STATS])
            assert not np.isnan(rec.matrix("update_ratio", ["0", "2", "4"])).any()
    for name in ("sgd", "sgd momentum", "adamw"):
        np.testing.assert_allclose(results["cuda", name], results["cpu", name], rtol=1e-6, equal_nan=True)


# ---- the fast path against a plain per-layer computation ----------------------------------------


class _Plain(Callback):
    """Every statistic the hard way: clones of each output and output gradient, per-layer numbers
    in float64 torch, the parameters copied around each step. What the monitor's batched,
    device-side arithmetic must reproduce."""

    def __init__(self, model: nn.Module, eps: float):
        self.model, self.eps, self.rows = model, eps, []
        self.names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.ReLU | nn.Tanh)]
        self.outs: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}
        for name in self.names:
            model.get_submodule(name).register_forward_hook(self._keep(name))

    def _keep(self, name):
        def hook(module, args, out):
            if torch.is_grad_enabled():
                self.outs[name] = out.detach().double().clone()
                out.register_hook(lambda g: self.grads.__setitem__(name, g.detach().double().clone()))

        return hook

    def on_after_backward(self, step, model):
        self.before = {n: p.detach().double().clone() for n, p in model.named_parameters()}
        self.grad_now = {n: p.grad.detach().double().clone() for n, p in model.named_parameters()}

    def on_step_end(self, step, model, loss):
        row = {}
        for name in self.names:
            y, g = self.outs[name], self.grads[name]
            module = model.get_submodule(name)
            own = [f"{name}.{p}" for p, _ in module.named_parameters(recurse=False)]
            r = {"act_mean": y.mean(), "act_std": y.std(unbiased=False), "out_grad_norm": g.norm()}
            r["dead"] = (y <= 0).all(dim=0).double().mean() if isinstance(module, nn.ReLU) else math.nan
            r["saturated"] = (
                (y.abs() > 1 - self.eps).double().mean() if isinstance(module, nn.Tanh) else math.nan
            )
            if own:
                new = dict(model.named_parameters())
                r["grad_norm"] = math.sqrt(sum(float(self.grad_now[p].norm()) ** 2 for p in own))
                r["param_norm"] = math.sqrt(sum(float(self.before[p].norm()) ** 2 for p in own))
                moved = math.sqrt(
                    sum(float((new[p].detach().double() - self.before[p]).norm()) ** 2 for p in own)
                )
                r["update_ratio"] = moved / r["param_norm"]
            row[name] = {k: float(v) for k, v in r.items()}
        row["params"] = {
            n: (
                float(self.grad_now[n].norm()),
                float(self.before[n].norm()),
                float((p.detach().double() - self.before[n]).norm() / self.before[n].norm()),
            )
            for n, p in model.named_parameters()
        }
        self.rows.append(row)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_batched_recording_equals_a_plain_per_layer_computation(optimizer):
    """Float32, ReLU and tanh layers, batches of two sizes, more steps than the monitor holds
    before it summarises (so several batches of steps), both ways of measuring ‖Δθ‖:
    every recorded number equals the one computed layer by layer from clones."""
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Linear(12, 24),
        nn.ReLU(),
        nn.Linear(24, 24),
        nn.Tanh(),
        nn.Linear(24, 16),
        nn.ReLU(),
        nn.Linear(16, 5),
    )
    with torch.no_grad():
        model[2].bias.fill_(-2.0)  # some tanh outputs saturate
        model[0].bias[:6].fill_(-50.0)  # some ReLU units die
    x, y = _data(n=100, dtype=torch.float32)  # batches of 32, 32, 32 and 4
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.05)
        if optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=1e-3)
    )
    plain = _Plain(model, eps=0.01)
    with GradientMonitor(model) as mon:
        hist = train(
            model,
            (x, y),
            optimizer=opt,
            batch_size=32,
            epochs=20,
            max_steps=75,
            callbacks=[mon, plain],
            progress=False,
        )
    rec = mon.record
    assert rec.n_steps == hist.steps == len(plain.rows) == 75
    np.testing.assert_allclose(rec.loss, hist.step_loss, rtol=1e-6)
    table = {
        stat: np.array([[row[n].get(stat, math.nan) for row in plain.rows] for n in plain.names])
        for stat in (
            "act_mean",
            "act_std",
            "dead",
            "saturated",
            "out_grad_norm",
            "grad_norm",
            "param_norm",
            "update_ratio",
        )
    }
    for stat, want in table.items():
        got = rec.matrix(stat, plain.names)
        rtol = 2e-5
        if stat == "act_std":  # E[y²] - E[y]² from float32 sums: about 1e-7·(mean/std)² relative
            rtol = 2e-6 * (1 + (table["act_mean"] / table["act_std"]) ** 2)
        assert np.array_equal(np.isnan(got), np.isnan(want)), stat
        ok = np.isnan(want) | (np.abs(got - want) <= rtol * np.abs(want) + 1e-7)
        assert ok.all(), f"{stat}: {got[~ok][:5]} against {want[~ok][:5]}"
    assert (rec.matrix("calls", plain.names) == 1).all() and (rec.matrix("nonfinite", plain.names) == 0).all()
    for k, stat in enumerate(("grad_norm", "param_norm", "update_ratio")):
        want = np.array([[row["params"][n][k] for row in plain.rows] for n in rec.params])
        atol = 1e-7 if stat == "update_ratio" else 0.0  # the plain θ_new - θ_old is rounded to float32
        np.testing.assert_allclose(rec.param_matrix(stat), want, rtol=2e-5, atol=atol, err_msg=stat)
    assert (rec.step_values("backward") == 1).all() and (rec.step_values("input_nonfinite") == 0).all()
