"""Overhead of the GradientMonitor on a training step of a 20-layer MLP (COURSE_DESIGN.md §8 style).

    .venv/bin/python benchmarks/bench_diagnostics.py [--width 256] [--batch 128] [--steps 200] [--threads 1]
        [--optimizer sgd|momentum|adam]

Two measurements, each monitored against unmonitored, with the monitor's default settings
(every step recorded, update ratios on, no histograms):

1. the course's loop: training.train(..., callbacks=[monitor]) against training.train(...);
2. a bare step (forward, cross-entropy, zero_grad, backward, SGD step) with the monitor's
   callbacks called by hand against the same step without them.

Variants run in interleaved blocks after a warm-up, each pair of blocks in alternating order,
so drift in the machine's speed affects both alike; the median over the pairs of the ratio of
their median step times is reported (goal: <= 1.3x), with its quartiles. Threads
default to 1, the setting seed_everything() gives every chapter. The machine's load average
is printed before and after: on a shared machine, compare only figures taken at a low load,
or time with `--clock cpu` (this thread's CPU time, which other processes do not add to).
With plain SGD (the default) the monitor reads ‖Δθ‖ from the step itself; `--optimizer adam`
times the path that copies the parameters around the optimiser's step. Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.nn import functional as F

from course_lib.models import make_mlp
from course_lib.monitor import GradientMonitor, MonitorConfig
from course_lib.seeding import default_device, seed_everything
from course_lib.training import train

GOAL = 1.3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCK = time.perf_counter  # set by --clock: wall time, or this thread's CPU time


def bare_steps(model, opt, x, y, n: int, monitor: GradientMonitor | None) -> list[float]:
    """Seconds per bare training step, for n steps."""
    times = []
    for step in range(n):
        _sync(x.device)
        t0 = CLOCK()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if monitor is not None:
            monitor.on_after_backward(step, model)
        opt.step()
        value = float(loss.detach())  # train() reads the loss every step too
        if monitor is not None:
            monitor.on_step_end(step, model, value)
        _sync(x.device)
        times.append(CLOCK() - t0)
    return times


def loop_steps(model, opt, x, y, n: int, monitor: GradientMonitor | None, batch: int) -> list[float]:
    """Seconds per step of training.train, from runs of n steps (one time per run, divided by n)."""
    _sync(x.device)
    t0 = CLOCK()
    callbacks = [monitor] if monitor is not None else []
    train(
        model,
        (x, y),
        optimizer=opt,
        batch_size=batch,
        epochs=n,
        max_steps=n,
        callbacks=callbacks,
        progress=False,
    )
    _sync(x.device)
    return [(CLOCK() - t0) / n]


def compare(label: str, run, model, monitor: GradientMonitor, steps: int, block: int) -> float:
    """Median step times of each variant, and the ratio of each adjacent pair of blocks.

    Blocks alternate which variant runs first, so neither always sees the other's cache state;
    a pair's ratio compares times taken seconds apart, so a change in the machine's load
    between pairs cancels out. The figure to read is the median of the pair ratios."""
    plain: list[float] = []
    watched: list[float] = []
    pairs: list[float] = []
    run(None, 10)  # warm-up
    with monitor:
        run(monitor, 10)
    for b in range(max(steps // block, 1)):
        order = (None, monitor) if b % 2 == 0 else (monitor, None)
        got = {}
        for which in order:
            if which is None:
                got["plain"] = run(None, block)
            else:
                with monitor:
                    got["watched"] = run(monitor, block)
        plain += got["plain"]
        watched += got["watched"]
        pairs.append(statistics.median(got["watched"]) / statistics.median(got["plain"]))
    t_plain, t_watched = statistics.median(plain), statistics.median(watched)
    ratio = statistics.median(pairs)
    q = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else [ratio, ratio, ratio]
    verdict = "within the goal" if ratio <= GOAL else "over the goal"
    print(f"{label}")
    print(f"  unmonitored step  {1e3 * t_plain:8.2f} ms (median)   {1e3 * min(plain):8.2f} ms (fastest)")
    print(f"  monitored step    {1e3 * t_watched:8.2f} ms (median)   {1e3 * min(watched):8.2f} ms (fastest)")
    print(
        f"  ratio             {ratio:8.2f} x (median of {len(pairs)} block pairs, quartiles "
        f"{q[0]:.2f}-{q[2]:.2f}: goal <= {GOAL} x, {verdict})"
    )
    print(
        f"                    {t_watched / t_plain:8.2f} x (ratio of the medians);  "
        f"{min(watched) / min(plain):.2f} x (fastest)"
    )
    return ratio


def x_is_cuda() -> bool:
    return default_device().type == "cuda"  # CPU time does not see a GPU's work: wall time there


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per variant")
    parser.add_argument("--block", type=int, default=20, help="steps per interleaved block")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the course uses 1)")
    parser.add_argument("--every", type=int, default=1, help="MonitorConfig.every: record every Nth step")
    parser.add_argument("--optimizer", choices=("sgd", "momentum", "adam"), default="sgd")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or the CPU time of this thread (robust when other processes share the cores)",
    )
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" or x_is_cuda() else time.thread_time
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores")

    seed_everything(0, threads=args.threads, deterministic=False)
    device = default_device()
    model = make_mlp(in_features=args.width, hidden=(args.width,) * args.depth, out_features=10, init="he")
    model = model.to(device)
    opt = {
        "sgd": lambda ps: torch.optim.SGD(ps, lr=1e-3),
        "momentum": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9),
        "adam": lambda ps: torch.optim.Adam(ps, lr=1e-4),
    }[args.optimizer](model.parameters())
    x = torch.randn(args.batch, args.width, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    monitor = GradientMonitor(model, MonitorConfig(every=args.every))
    monitor.detach()
    print(
        f"device: {device}, torch threads: {torch.get_num_threads()}, every={args.every}, "
        f"{args.optimizer}, clock: {'wall' if CLOCK is time.perf_counter else 'thread CPU time'}"
    )
    print(
        f"model: {args.depth} hidden layers of {args.width}, batch {args.batch}, {args.steps} steps per variant"
    )
    compare(
        "1. training.train with the monitor as a callback",
        lambda mon, n: loop_steps(model, opt, x, y, n, mon, args.batch),
        model,
        monitor,
        args.steps,
        args.block,
    )
    compare(
        "2. a bare training step with the callbacks called by hand",
        lambda mon, n: bare_steps(model, opt, x, y, n, mon),
        model,
        monitor,
        args.steps,
        args.block,
    )
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    rec = monitor.record
    print(
        f"record: {rec!r}, {rec.nbytes() / 1e3:.0f} kB ({rec.nbytes() / max(rec.n_steps, 1):.0f} B per step)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
