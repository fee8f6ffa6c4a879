"""course_lib.training: the loop against a hand-written PyTorch loop, and its History against what happened."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_lib.data import batches, load_digits
from course_lib.models import make_mlp
from course_lib.training import Callback, History, evaluate, global_grad_norm, train


def _toy(n: int = 50, d: int = 6, k: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return x, y


def _model(d: int = 6, k: int = 3, seed: int = 0, **kw) -> nn.Sequential:
    torch.manual_seed(seed)
    return make_mlp(in_features=d, hidden=(16,), out_features=k, activation="tanh", **kw)


def _manual_sgd(model, x, y, *, lr, epochs, batch_size, seed, clip_norm=None):
    """The five-line loop, written out, with the same batches as train() given the same generator seed."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        for xb, yb in batches(x, y, batch_size, shuffle=True, generator=gen):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            opt.step()
            losses.append(float(loss.detach()))
    return losses


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


# ---- global_grad_norm ------------------------------------------------------------------------


def test_global_grad_norm_matches_clip_grad_norm():
    x, y = _toy()
    model = _model()
    F.cross_entropy(model(x), y).backward()
    ours = global_grad_norm(model)
    assert ours == global_grad_norm(list(model.parameters()))
    total = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e12)
    assert ours == pytest.approx(float(total), rel=1e-6)
    manual = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in model.parameters()))
    assert ours == pytest.approx(manual, rel=1e-6)


def test_global_grad_norm_skips_params_without_grad():
    a = nn.Parameter(torch.zeros(2))
    b = nn.Parameter(torch.zeros(3))
    assert global_grad_norm([a, b]) == 0.0
    b.grad = torch.tensor([3.0, 0.0, 4.0])
    assert global_grad_norm([a, b]) == pytest.approx(5.0)


# ---- train() against a manual loop -----------------------------------------------------------


@pytest.mark.parametrize("clip_norm", [None, 0.05])
def test_train_reproduces_manual_sgd_loop(clip_norm):
    x, y = _toy()
    model_a, model_b = _model(), _model()
    assert all(torch.equal(p, q) for p, q in zip(_params(model_a), _params(model_b), strict=True))
    hist = train(
        model_a,
        (x, y),
        lr=0.3,
        epochs=3,
        batch_size=16,
        clip_norm=clip_norm,
        generator=torch.Generator().manual_seed(9),
        progress=False,
    )
    losses = _manual_sgd(model_b, x, y, lr=0.3, epochs=3, batch_size=16, seed=9, clip_norm=clip_norm)
    # same batches, same arithmetic: bit-identical parameters
    assert all(torch.equal(p, q) for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True))
    assert hist.step_loss == losses


def test_different_generator_gives_different_run():
    x, y = _toy()
    model_a, model_b = _model(), _model()
    train(model_a, (x, y), epochs=1, batch_size=8, generator=torch.Generator().manual_seed(1), progress=False)
    train(model_b, (x, y), epochs=1, batch_size=8, generator=torch.Generator().manual_seed(2), progress=False)
    assert not torch.equal(model_a.out.weight, model_b.out.weight)


def test_custom_optimizer_is_used():
    x, y = _toy()
    model_a, model_b = _model(), _model()
    opt = torch.optim.Adam(model_a.parameters(), lr=1e-2)
    train(model_a, (x, y), optimizer=opt, epochs=2, batch_size=50, progress=False)
    opt_b = torch.optim.Adam(model_b.parameters(), lr=1e-2)
    for _ in range(2):  # full batch: the order does not matter
        loss = F.cross_entropy(model_b(x), y)
        opt_b.zero_grad()
        loss.backward()
        opt_b.step()
    for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


# ---- History ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n, batch_size, epochs", [(50, 16, 3), (48, 16, 2), (10, 64, 4)])
def test_history_lengths(n, batch_size, epochs):
    x, y = _toy(n)
    hist = train(_model(), (x, y), epochs=epochs, batch_size=batch_size, progress=False)
    steps = epochs * math.ceil(n / batch_size)
    assert hist.steps == len(hist.step_loss) == len(hist.step_grad_norm) == len(hist.step_lr) == steps
    assert len(hist.epoch_train_loss) == epochs
    assert hist.epoch_val_loss == [] and hist.epoch_val_acc == []
    assert hist.stopped_at_step is None and not hist.diverged
    per_epoch = math.ceil(n / batch_size)
    first = hist.step_loss[:per_epoch]
    assert hist.epoch_train_loss[0] == pytest.approx(sum(first) / len(first))
    assert all(g > 0 for g in hist.step_grad_norm)
    assert f"steps={steps}" in repr(hist)


def test_lr_recorded_follows_scheduler():
    x, y = _toy()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    hist = train(model, (x, y), optimizer=opt, scheduler=sched, epochs=3, batch_size=16, progress=False)
    assert hist.steps == 12
    expected = [0.4 * 0.5 ** (i // 3) for i in range(12)]  # stepped once per optimiser step
    assert hist.step_lr == pytest.approx(expected)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.4 * 0.5**4)


def test_lr_recorded_without_scheduler():
    x, y = _toy()
    hist = train(_model(), (x, y), lr=0.07, epochs=1, batch_size=16, progress=False)
    assert hist.step_lr == [0.07] * 4


def test_clip_norm_bounds_the_update():
    x, y = _toy()
    model = _model()
    lr, clip = 1.0, 0.01

    class Moves(Callback):
        def __init__(self):
            self.before: list[torch.Tensor] = []
            self.sizes: list[float] = []

        def on_after_backward(self, step, model):
            self.before = _params(model)

        def on_step_end(self, step, model, loss):
            delta = [p.detach() - b for p, b in zip(model.parameters(), self.before, strict=True)]
            self.sizes.append(float(torch.sqrt(sum((d.double() ** 2).sum() for d in delta))))

    moves = Moves()
    hist = train(
        model, (x, y), lr=lr, clip_norm=clip, epochs=2, batch_size=16, callbacks=[moves], progress=False
    )
    # the History keeps the norm before clipping, which was well above the bound ...
    assert min(hist.step_grad_norm) > 10 * clip
    # ... while every SGD step moved the parameters by lr * clip exactly
    assert moves.sizes == pytest.approx([lr * clip] * hist.steps, rel=1e-4)


def test_callbacks_order_and_gradients():
    x, y = _toy()
    events: list[tuple] = []

    class Recorder(Callback):
        def __init__(self, name):
            self.name = name

        def on_after_backward(self, step, model):
            grads = [p.grad for p in model.parameters()]
            assert all(g is not None for g in grads)
            events.append((step, self.name, "after_backward", global_grad_norm(model)))

        def on_step_end(self, step, model, loss):
            events.append((step, self.name, "step_end", loss))

    hist = train(
        _model(), (x, y), epochs=1, batch_size=16, callbacks=[Recorder("a"), Recorder("b")], progress=False
    )
    expected_order = [
        (s, name, kind) for s in range(4) for kind in ("after_backward", "step_end") for name in ("a", "b")
    ]
    assert [e[:3] for e in events] == expected_order
    for s in range(4):
        norms = [e[3] for e in events if e[0] == s and e[2] == "after_backward"]
        losses = [e[3] for e in events if e[0] == s and e[2] == "step_end"]
        assert norms == [hist.step_grad_norm[s]] * 2  # the gradients the callbacks saw are the recorded ones
        assert losses == [hist.step_loss[s]] * 2


def test_base_callback_is_a_no_op():
    x, y = _toy()
    a, b = _model(), _model()
    train(
        a,
        (x, y),
        epochs=1,
        batch_size=16,
        callbacks=[Callback()],
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    train(b, (x, y), epochs=1, batch_size=16, generator=torch.Generator().manual_seed(0), progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_max_steps_stops_mid_epoch():
    x, y = _toy()
    seen: list[int] = []

    class Count(Callback):
        def on_step_end(self, step, model, loss):
            seen.append(step)

    hist = train(_model(), (x, y), epochs=5, batch_size=16, max_steps=6, callbacks=[Count()], progress=False)
    assert hist.steps == 6 and seen == list(range(6))
    assert len(hist.epoch_train_loss) == 2  # one full epoch of 4 steps, then 2 steps of the next
    assert hist.epoch_train_loss[1] == pytest.approx(sum(hist.step_loss[4:6]) / 2)
    assert not hist.diverged


def _diverging_regression():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g) * 3
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    torch.manual_seed(0)
    return nn.Linear(4, 1), x, y


def test_divergence_is_recorded_and_stops():
    lr = 5.0
    model, x, y = _diverging_regression()
    manual = copy.deepcopy(model)
    hist = train(model, (x, y), loss_fn=F.mse_loss, lr=lr, epochs=1000, batch_size=32, progress=False)

    # the same full-batch gradient descent by hand: where does the loss first stop being finite?
    opt = torch.optim.SGD(manual.parameters(), lr=lr)
    first_bad = None
    for step in range(1000):
        loss = F.mse_loss(manual(x), y)
        if not math.isfinite(float(loss.detach())):
            first_bad = step
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first_bad is not None and 1 < first_bad < 1000

    assert hist.diverged and hist.stopped_at_step == first_bad
    assert hist.steps == first_bad + 1  # the non-finite step is recorded, then the run stops
    assert all(math.isfinite(v) for v in hist.step_loss[:-1])
    assert not math.isfinite(hist.step_loss[-1])
    assert math.isnan(hist.step_grad_norm[-1])
    assert len(hist.step_lr) == hist.steps
    assert f"diverged at step {first_bad}" in repr(hist)


def test_a_non_finite_loss_is_told_to_the_callbacks():
    """The loop stops before backward; callbacks hear the step and its loss (a monitor records it)."""
    model, x, y = _diverging_regression()
    events: list[tuple] = []

    class Recorder(Callback):
        def on_step_end(self, step, model, loss):
            events.append(("step_end", step))

        def on_nonfinite_loss(self, step, model, loss):
            events.append(("nonfinite", step, loss))

    hist = train(
        model,
        (x, y),
        loss_fn=F.mse_loss,
        lr=5.0,
        epochs=1000,
        batch_size=32,
        callbacks=[Recorder()],
        progress=False,
    )
    assert events[-1][:2] == ("nonfinite", hist.stopped_at_step)
    assert (
        not math.isfinite(events[-1][2]) and events[-1][2] == hist.step_loss[-1] or math.isnan(events[-1][2])
    )
    assert [e[1] for e in events[:-1]] == list(range(hist.stopped_at_step)), (
        "every finite step ended normally"
    )


def test_stable_regression_does_not_diverge():
    model, x, y = _diverging_regression()
    hist = train(model, (x, y), loss_fn=F.mse_loss, lr=0.01, epochs=50, batch_size=32, progress=False)
    assert not hist.diverged and hist.steps == 50
    assert hist.step_loss[-1] < hist.step_loss[0]


# ---- evaluate and validation -----------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_restores_mode_and_matches_manual(training):
    x, y = _toy(64)
    model = _model(norm="batch")
    model.train(training)
    loss, acc = evaluate(model, x, y)
    assert model.training is training
    assert all(m.training is training for m in model.modules())
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert acc == pytest.approx(float((logits.argmax(dim=1) == y).float().mean()))
    assert loss == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)


def test_evaluate_restores_mode_after_an_error():
    x, y = _toy()
    model = _model()
    model.train()

    def broken_loss(logits, target):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        evaluate(model, x, y, loss_fn=broken_loss)
    assert model.training


def test_val_metrics_recorded_per_epoch():
    x, y = _toy(60)
    xv, yv = _toy(30, seed=1)
    model = _model()
    hist = train(model, (x, y), val_data=(xv, yv), epochs=3, batch_size=20, progress=False)
    assert len(hist.epoch_val_loss) == len(hist.epoch_val_acc) == 3
    assert all(0.0 <= a <= 1.0 for a in hist.epoch_val_acc)
    final_loss, final_acc = evaluate(model, xv, yv)
    assert hist.epoch_val_loss[-1] == pytest.approx(final_loss)
    assert hist.epoch_val_acc[-1] == pytest.approx(final_acc)
    assert model.training  # train() leaves the model in training mode


def test_empty_data_raises():
    with pytest.raises(ValueError, match="empty"):
        train(_model(), (torch.zeros(0, 6), torch.zeros(0, dtype=torch.long)), progress=False)


@pytest.mark.parametrize("clip_norm", [0.0, -1.0, float("nan")])
def test_bad_clip_norm_raises(clip_norm):
    x, y = _toy()
    model = _model()
    before = _params(model)
    with pytest.raises(ValueError, match="clip_norm"):
        train(model, (x, y), clip_norm=clip_norm, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_history_defaults():
    hist = History()
    assert hist.steps == 0 and not hist.diverged
    assert "last_loss=n/a" in repr(hist)


def test_short_real_run_on_digits():
    data = load_digits(seed=0)
    torch.manual_seed(0)
    model = make_mlp(hidden=(64,), activation="relu", init="he")
    hist = train(
        model,
        data.train,
        val_data=data.val,
        lr=0.1,
        epochs=8,
        batch_size=32,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert not hist.diverged
    assert hist.epoch_train_loss[-1] < hist.epoch_train_loss[0]
    assert hist.epoch_val_acc[-1] > 0.85
