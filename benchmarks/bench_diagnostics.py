"""Overhead of the GradientMonitor: one training step of a 20-layer MLP, monitored against unmonitored.

    .venv/bin/python benchmarks/bench_diagnostics.py [--width 256] [--batch 128] [--steps 200]

A step is forward, cross-entropy, zero_grad, backward, SGD step, as in training.train; the
monitored step adds the monitor's callbacks (activation statistics, output and parameter
gradient norms, the parameter copy for the update ratio, one transfer per step). The two
are timed in interleaved blocks after a warm-up, so drift in the machine's speed affects
both alike; the ratio of medians is reported (goal: <= 1.3x). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F

from course_lib.models import make_mlp
from course_lib.monitor import GradientMonitor, MonitorConfig
from course_lib.seeding import default_device, seed_everything

GOAL = 1.3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model, opt, x, y, n: int, monitor: GradientMonitor | None) -> list[float]:
    """Seconds per training step, for n steps."""
    times = []
    device = x.device
    for step in range(n):
        _sync(device)
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if monitor is not None:
            monitor.on_after_backward(step, model)
        opt.step()
        if monitor is not None:
            monitor.on_step_end(step, model, float(loss.detach()))
        else:
            float(loss.detach())  # train() reads the loss every step too
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per variant")
    parser.add_argument("--block", type=int, default=20, help="steps per interleaved block")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: leave as is)")
    args = parser.parse_args()

    seed_everything(0, threads=args.threads, deterministic=False)
    device = default_device()
    model = make_mlp(in_features=args.width, hidden=(args.width,) * args.depth, out_features=10, init="he").to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, args.width, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    monitor = GradientMonitor(model, MonitorConfig())
    monitor.detach()

    plain: list[float] = []
    watched: list[float] = []
    time_steps(model, opt, x, y, 20, None)  # warm-up
    with monitor:
        time_steps(model, opt, x, y, 20, monitor)
    for _ in range(max(args.steps // args.block, 1)):
        plain += time_steps(model, opt, x, y, args.block, None)
        with monitor:
            watched += time_steps(model, opt, x, y, args.block, monitor)

    t_plain, t_watched = statistics.median(plain), statistics.median(watched)
    ratio = t_watched / t_plain
    print(f"device: {device}, torch threads: {torch.get_num_threads()}")
    print(f"model: {args.depth} hidden layers of {args.width}, batch {args.batch}; {len(plain)} steps each")
    print(f"  unmonitored step  {1e3 * t_plain:8.2f} ms (median)")
    print(f"  monitored step    {1e3 * t_watched:8.2f} ms (median)")
    verdict = "within the goal" if ratio <= GOAL else "OVER THE GOAL"
    print(f"  ratio             {ratio:8.2f} x   (goal <= {GOAL} x: {verdict})")
    print(f"  record: {monitor.record!r}, {monitor.record.nbytes() / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
