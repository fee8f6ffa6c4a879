"""Realistic wrong answers to ps04_learning_rates, and correct answers written differently.

See catalog.py for what a Mistake and an Alternative hold and what the grading tests prove with them.
"""

from __future__ import annotations

from assignments.catalog import Alternative, Mistake

ASSIGNMENT = "ps04_learning_rates"

MISTAKES: list[Mistake] = [
    # ------------------------------------------------------------------ part 1: adam_step
    Mistake(
        "adam_step",
        "no_bias_correction",
        "steps along m / (sqrt(v) + eps) without dividing by 1 - beta**t: the first steps are up to 6x too large",
        '''def adam_step(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """Step number t (1 for the first) of Adam; returns (new_param, new_m, new_v)."""
    beta1, beta2 = betas
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    return param - lr * m / (v.sqrt() + eps), m, v
''',
    ),
    Mistake(
        "adam_step",
        "eps_inside_sqrt",
        "adds eps under the square root, sqrt(v_hat + eps), as some write-ups do; PyTorch adds it outside",
        '''def adam_step(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """Step number t (1 for the first) of Adam; returns (new_param, new_m, new_v)."""
    beta1, beta2 = betas
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return param - lr * m_hat / torch.sqrt(v_hat + eps), m, v
''',
    ),
    Mistake(
        "adam_step",
        "bias_correction_off_by_one",
        "treats t as counting from 0 and corrects with beta**(t + 1)",
        '''def adam_step(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """Step number t (1 for the first) of Adam; returns (new_param, new_m, new_v)."""
    beta1, beta2 = betas
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1 ** (t + 1))
    v_hat = v / (1 - beta2 ** (t + 1))
    return param - lr * m_hat / (v_hat.sqrt() + eps), m, v
''',
    ),
    Mistake(
        "adam_step",
        "second_moment_of_abs_grad",
        "averages |g| instead of g^2 in the second moment (AdaMax-like confusion)",
        '''def adam_step(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """Step number t (1 for the first) of Adam; returns (new_param, new_m, new_v)."""
    beta1, beta2 = betas
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad.abs()
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return param - lr * m_hat / (v_hat.sqrt() + eps), m, v
''',
    ),
    Mistake(
        "adam_step",
        "calls_torch_adam",
        "runs torch.optim.Adam on a copy with the given state instead of writing the update",
        '''def adam_step(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """Step number t (1 for the first) of Adam; returns (new_param, new_m, new_v)."""
    p = torch.nn.Parameter(param.clone())
    opt = torch.optim.Adam([p], lr=lr, betas=betas, eps=eps)
    p.grad = grad.clone()
    opt.state[p] = {"step": torch.tensor(float(t - 1)), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
    opt.step()
    return p.detach().clone(), opt.state[p]["exp_avg"].clone(), opt.state[p]["exp_avg_sq"].clone()
''',
    ),
    # ------------------------------------------------------------------ part 2: nesterov_step
    Mistake(
        "nesterov_step",
        "plain_momentum",
        "steps along the buffer, as heavy-ball momentum does, forgetting the look-ahead",
        '''def nesterov_step(param, grad, buf, lr, momentum):
    """One step of SGD with Nesterov momentum in PyTorch's form; returns (new_param, new_buf)."""
    buf = grad.clone() if buf is None else momentum * buf + grad
    return param - lr * buf, buf
''',
    ),
    Mistake(
        "nesterov_step",
        "look_ahead_with_old_buffer",
        "uses the buffer from before this step's update in the look-ahead term",
        '''def nesterov_step(param, grad, buf, lr, momentum):
    """One step of SGD with Nesterov momentum in PyTorch's form; returns (new_param, new_buf)."""
    old = torch.zeros_like(grad) if buf is None else buf
    new_buf = momentum * old + grad
    return param - lr * (grad + momentum * old), new_buf
''',
    ),
    Mistake(
        "nesterov_step",
        "dampened_buffer",
        "averages the gradient into the buffer with weight (1 - momentum), as in an exponential moving average",
        '''def nesterov_step(param, grad, buf, lr, momentum):
    """One step of SGD with Nesterov momentum in PyTorch's form; returns (new_param, new_buf)."""
    buf = grad.clone() if buf is None else momentum * buf + (1 - momentum) * grad
    return param - lr * (grad + momentum * buf), buf
''',
    ),
    # ------------------------------------------------------------------ part 3: warmup_cosine
    Mistake(
        "warmup_cosine",
        "cosine_over_total_steps",
        "runs the cosine from step 0 over total_steps instead of from warmup_steps over the remaining steps",
        '''def warmup_cosine(step, base_lr, warmup_steps, total_steps, min_lr=0.0, start_factor=0.1):
    """Learning rate of optimiser step `step` (from 0): linear warmup, then cosine decay to min_lr."""
    if step < warmup_steps:
        return base_lr * (start_factor + (1 - start_factor) * step / warmup_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * step / total_steps))
''',
    ),
    Mistake(
        "warmup_cosine",
        "warmup_off_by_one",
        "reaches base_lr one step early: (step + 1) / warmup_steps in the warmup",
        '''def warmup_cosine(step, base_lr, warmup_steps, total_steps, min_lr=0.0, start_factor=0.1):
    """Learning rate of optimiser step `step` (from 0): linear warmup, then cosine decay to min_lr."""
    if step < warmup_steps:
        return base_lr * (start_factor + (1 - start_factor) * (step + 1) / warmup_steps)
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))
''',
    ),
    Mistake(
        "warmup_cosine",
        "ignores_min_lr",
        "decays to 0 whatever min_lr is",
        '''def warmup_cosine(step, base_lr, warmup_steps, total_steps, min_lr=0.0, start_factor=0.1):
    """Learning rate of optimiser step `step` (from 0): linear warmup, then cosine decay to min_lr."""
    if step < warmup_steps:
        return base_lr * (start_factor + (1 - start_factor) * step / warmup_steps)
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return 0.5 * base_lr * (1 + math.cos(math.pi * progress))
''',
    ),
    Mistake(
        "warmup_cosine",
        "warmup_from_zero",
        "warms up from 0 instead of from start_factor * base_lr",
        '''def warmup_cosine(step, base_lr, warmup_steps, total_steps, min_lr=0.0, start_factor=0.1):
    """Learning rate of optimiser step `step` (from 0): linear warmup, then cosine decay to min_lr."""
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))
''',
    ),
    # ------------------------------------------------------------------ part 4: heavy_ball_rate
    Mistake(
        "heavy_ball_rate",
        "always_sqrt_beta",
        "returns sqrt(beta), the rate at Polyak's optimum, for every lr, beta and h",
        '''def heavy_ball_rate(lr, beta, h):
    """Asymptotic per-step factor of |w_t| for heavy-ball momentum on f(w) = h w^2 / 2 (a float)."""
    return math.sqrt(beta)
''',
    ),
    Mistake(
        "heavy_ball_rate",
        "trace_without_beta",
        "writes the recurrence as w_{t+1} = (1 - lr h) w_t - beta w_{t-1}, losing the beta of the trace",
        '''def heavy_ball_rate(lr, beta, h):
    """Asymptotic per-step factor of |w_t| for heavy-ball momentum on f(w) = h w^2 / 2 (a float)."""
    roots = np.roots([1.0, -(1 - lr * h), beta])
    return float(np.abs(roots).max())
''',
    ),
    Mistake(
        "heavy_ball_rate",
        "lr_missing_in_matrix",
        "the (w, b) matrix with -beta instead of -lr * beta in its corner",
        '''def heavy_ball_rate(lr, beta, h):
    """Asymptotic per-step factor of |w_t| for heavy-ball momentum on f(w) = h w^2 / 2 (a float)."""
    m = torch.tensor([[1 - lr * h, -beta], [h, beta]], dtype=torch.float64)
    return float(torch.linalg.eigvals(m).abs().max())
''',
    ),
    Mistake(
        "heavy_ball_rate",
        "real_part_only",
        "takes the real part of the complex roots, so a spiralling run seems to converge faster than it does",
        '''def heavy_ball_rate(lr, beta, h):
    """Asymptotic per-step factor of |w_t| for heavy-ball momentum on f(w) = h w^2 / 2 (a float)."""
    trace = 1 + beta - lr * h
    disc = trace * trace - 4 * beta
    if disc < 0:
        return abs(trace) / 2
    return max(abs(trace + math.sqrt(disc)), abs(trace - math.sqrt(disc))) / 2
''',
    ),
    # ------------------------------------------------------------------ part 5: best_momentum
    Mistake(
        "best_momentum",
        "polyak_beta_ignoring_lr",
        "returns Polyak's beta* = ((sqrt(kappa) - 1) / (sqrt(kappa) + 1))^2, which is optimal only at lr = eta*",
        '''def best_momentum(lr, mu, big_l):
    """The momentum beta that minimises the worst rate over curvatures in [mu, big_l] at learning rate lr."""
    k = math.sqrt(big_l / mu)
    return ((k - 1) / (k + 1)) ** 2
''',
    ),
    Mistake(
        "best_momentum",
        "only_the_flat_end",
        "damps only the flattest direction, (1 - sqrt(lr mu))^2, forgetting that the steepest can limit too",
        '''def best_momentum(lr, mu, big_l):
    """The momentum beta that minimises the worst rate over curvatures in [mu, big_l] at learning rate lr."""
    return (1 - math.sqrt(lr * mu)) ** 2
''',
    ),
    Mistake(
        "best_momentum",
        "forgot_square",
        "returns the critical sqrt(beta) instead of beta",
        '''def best_momentum(lr, mu, big_l):
    """The momentum beta that minimises the worst rate over curvatures in [mu, big_l] at learning rate lr."""
    return max(1 - math.sqrt(lr * mu), math.sqrt(lr * big_l) - 1, 0.0)
''',
    ),
    # ------------------------------------------------------------------ part 6: power_iteration
    Mistake(
        "power_iteration",
        "norm_instead_of_rayleigh",
        "returns ||H v|| as the eigenvalue: right in size, but the sign of a negative dominant eigenvalue is lost",
        '''def power_iteration(hvp, v0, iters):
    """Power iteration with products v -> H v: returns (eigenvalue estimate, unit v)."""
    v = v0 / v0.norm()
    for _ in range(iters):
        w = hvp(v)
        v = w / w.norm()
    return float(hvp(v).norm()), v
''',
    ),
    Mistake(
        "power_iteration",
        "normalise_only_at_the_end",
        "multiplies by H iters times and normalises once at the end: overflows for large eigenvalues",
        '''def power_iteration(hvp, v0, iters):
    """Power iteration with products v -> H v: returns (eigenvalue estimate, unit v)."""
    v = v0.clone()
    for _ in range(iters):
        v = hvp(v)
    v = v / v.norm()
    return float(v @ hvp(v)), v
''',
    ),
    Mistake(
        "power_iteration",
        "random_start_ignores_v0",
        "starts from a fresh random vector instead of v0",
        '''def power_iteration(hvp, v0, iters):
    """Power iteration with products v -> H v: returns (eigenvalue estimate, unit v)."""
    v = torch.randn(v0.shape, dtype=v0.dtype)
    v = v / v.norm()
    for _ in range(iters):
        w = hvp(v)
        v = w / w.norm()
    return float(v @ hvp(v)), v
''',
    ),
    Mistake(
        "power_iteration",
        "one_iteration_short",
        "counts the first normalisation of v0 as an iteration and does iters - 1 products",
        '''def power_iteration(hvp, v0, iters):
    """Power iteration with products v -> H v: returns (eigenvalue estimate, unit v)."""
    v = v0 / v0.norm()
    for _ in range(iters - 1):
        w = hvp(v)
        v = w / w.norm()
    return float(v @ hvp(v)), v
''',
    ),
    # ------------------------------------------------------------------ part 7: critical_lr
    Mistake(
        "critical_lr",
        "forgot_bias_column",
        "uses x^T x, leaving out the bias, whose constant input 1 adds the largest curvature when x has a mean",
        '''def critical_lr(x, n_outputs):
    """2 / lambda_max of the Hessian of F.mse_loss(nn.Linear(d, n_outputs)(x), y) in all parameters."""
    n = x.shape[0]
    lam_max = 2 * torch.linalg.eigvalsh(x.T @ x)[-1].item() / (n * n_outputs)
    return 2 / lam_max
''',
    ),
    Mistake(
        "critical_lr",
        "half_mse",
        "differentiates the loss as if it had a factor 1/2 (Hessian x1^T x1 / (n k)): predicts twice the limit",
        '''def critical_lr(x, n_outputs):
    """2 / lambda_max of the Hessian of F.mse_loss(nn.Linear(d, n_outputs)(x), y) in all parameters."""
    n = x.shape[0]
    x1 = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], dim=1)
    lam_max = torch.linalg.eigvalsh(x1.T @ x1)[-1].item() / (n * n_outputs)
    return 2 / lam_max
''',
    ),
    Mistake(
        "critical_lr",
        "mean_over_examples_only",
        "divides by N only, forgetting that mse_loss also averages over the k outputs",
        '''def critical_lr(x, n_outputs):
    """2 / lambda_max of the Hessian of F.mse_loss(nn.Linear(d, n_outputs)(x), y) in all parameters."""
    n = x.shape[0]
    x1 = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], dim=1)
    lam_max = 2 * torch.linalg.eigvalsh(x1.T @ x1)[-1].item() / n
    return 2 / lam_max
''',
    ),
    Mistake(
        "critical_lr",
        "one_over_lambda",
        "returns 1 / lambda_max, the edge of the monotone regime, instead of the stability limit 2 / lambda_max",
        '''def critical_lr(x, n_outputs):
    """2 / lambda_max of the Hessian of F.mse_loss(nn.Linear(d, n_outputs)(x), y) in all parameters."""
    n = x.shape[0]
    x1 = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], dim=1)
    lam_max = 2 * torch.linalg.eigvalsh(x1.T @ x1)[-1].item() / (n * n_outputs)
    return 1 / lam_max
''',
    ),
]


ALTERNATIVES: list[Alternative] = [
    Alternative(
        "adam_step",
        "paper_step_size_form",
        "Kingma & Ba's efficient form: step size lr * sqrt(1 - b2^t) / (1 - b1^t) with eps scaled by sqrt(1 - b2^t)",
        '''def adam_step(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """Step number t (1 for the first) of Adam; returns (new_param, new_m, new_v)."""
    b1, b2 = betas
    new_m = torch.lerp(grad, m, b1)  # b1 * m + (1 - b1) * grad
    new_v = b2 * v + (1 - b2) * grad**2
    c2 = math.sqrt(1 - b2**t)
    step = lr * c2 / (1 - b1**t)
    return param - step * new_m / (new_v.sqrt() + eps * c2), new_m, new_v
''',
    ),
    Alternative(
        "adam_step",
        "elementwise_loop",
        "a Python loop over the flattened entries with math.sqrt, under torch.no_grad()",
        '''def adam_step(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """Step number t (1 for the first) of Adam; returns (new_param, new_m, new_v)."""
    b1, b2 = betas
    with torch.no_grad():
        p, g, m2, v2 = (a.detach().clone().reshape(-1) for a in (param, grad, m, v))
        for i in range(p.numel()):
            mi = b1 * float(m2[i]) + (1 - b1) * float(g[i])
            vi = b2 * float(v2[i]) + (1 - b2) * float(g[i]) ** 2
            m2[i], v2[i] = mi, vi
            p[i] = float(p[i]) - lr * (mi / (1 - b1**t)) / (math.sqrt(vi / (1 - b2**t)) + eps)
    return p.reshape(param.shape), m2.reshape(param.shape), v2.reshape(param.shape)
''',
    ),
    Alternative(
        "nesterov_step",
        "zero_buffer_start",
        "starts from a zero buffer (b_0 = 0), which gives the same first buffer as PyTorch's copy of the gradient",
        '''def nesterov_step(param, grad, buf, lr, momentum):
    """One step of SGD with Nesterov momentum in PyTorch's form; returns (new_param, new_buf)."""
    if buf is None:
        buf = torch.zeros_like(grad)
    new_buf = torch.add(grad, buf, alpha=momentum)
    look_ahead = torch.add(grad, new_buf, alpha=momentum)
    return torch.add(param, look_ahead, alpha=-lr), new_buf
''',
    ),
    Alternative(
        "warmup_cosine",
        "cos_squared_and_interp",
        "warmup by numpy.interp and the decay written as cos^2 of half the angle: the same numbers",
        '''def warmup_cosine(step, base_lr, warmup_steps, total_steps, min_lr=0.0, start_factor=0.1):
    """Learning rate of optimiser step `step` (from 0): linear warmup, then cosine decay to min_lr."""
    if step < warmup_steps:
        return float(np.interp(step, [0, warmup_steps], [start_factor * base_lr, base_lr]))
    angle = math.pi * (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * math.cos(angle / 2) ** 2
''',
    ),
    Alternative(
        "heavy_ball_rate",
        "eigenvalues_of_w_b_matrix",
        "the spectral radius of the (w, b) update matrix from torch.linalg.eigvals",
        '''def heavy_ball_rate(lr, beta, h):
    """Asymptotic per-step factor of |w_t| for heavy-ball momentum on f(w) = h w^2 / 2 (a float)."""
    m = torch.tensor([[1 - lr * h, -lr * beta], [h, beta]], dtype=torch.float64)
    return float(torch.linalg.eigvals(m).abs().max())
''',
    ),
    Alternative(
        "heavy_ball_rate",
        "numpy_roots_of_recurrence",
        "the roots of z^2 - (1 + beta - lr h) z + beta from numpy.roots",
        '''def heavy_ball_rate(lr, beta, h):
    """Asymptotic per-step factor of |w_t| for heavy-ball momentum on f(w) = h w^2 / 2 (a float)."""
    return float(np.abs(np.roots([1.0, -(1 + beta - lr * h), beta])).max())
''',
    ),
    Alternative(
        "best_momentum",
        "both_ends_in_turn",
        "the critical beta of each end of the range, then the larger, written with if statements",
        '''def best_momentum(lr, mu, big_l):
    """The momentum beta that minimises the worst rate over curvatures in [mu, big_l] at learning rate lr."""
    best = 0.0
    for h in (mu, big_l):
        critical = (1 - math.sqrt(lr * h)) ** 2  # the smallest beta with complex eigenvalues at h
        if math.sqrt(lr * h) < 1 or h == big_l:
            best = max(best, critical)
    return best
''',
    ),
    Alternative(
        "power_iteration",
        "rayleigh_in_loop_float32_safe",
        "tracks the Rayleigh quotient inside the loop and returns the one of the final vector, via torch.dot",
        '''def power_iteration(hvp, v0, iters):
    """Power iteration with products v -> H v: returns (eigenvalue estimate, unit v)."""
    v = v0 / torch.linalg.vector_norm(v0)
    hv = hvp(v)
    for _ in range(iters):
        v = hv / torch.linalg.vector_norm(hv)
        hv = hvp(v)
    return torch.dot(v, hv).item(), v
''',
    ),
    Alternative(
        "critical_lr",
        "largest_singular_value",
        "sigma_max of the augmented data matrix by torch.linalg.matrix_norm(ord=2): sigma_max^2 = lambda_max(x1^T x1)",
        '''def critical_lr(x, n_outputs):
    """2 / lambda_max of the Hessian of F.mse_loss(nn.Linear(d, n_outputs)(x), y) in all parameters."""
    x1 = F.pad(x, (0, 1), value=1.0)
    sigma = torch.linalg.matrix_norm(x1, ord=2).item()
    return x.shape[0] * n_outputs / sigma**2
''',
    ),
    Alternative(
        "critical_lr",
        "autograd_hessian",
        "forms the Hessian of the actual loss with torch.autograd.functional.hessian and takes its top eigenvalue",
        '''def critical_lr(x, n_outputs):
    """2 / lambda_max of the Hessian of F.mse_loss(nn.Linear(d, n_outputs)(x), y) in all parameters."""
    n, d = x.shape
    y = torch.zeros(n, n_outputs, dtype=x.dtype)

    def loss(theta):
        w = theta[: d * n_outputs].view(n_outputs, d)
        b = theta[d * n_outputs :]
        return F.mse_loss(x @ w.T + b, y)

    h = torch.autograd.functional.hessian(loss, torch.zeros(d * n_outputs + n_outputs, dtype=x.dtype))
    return 2 / torch.linalg.eigvalsh(h)[-1].item()
''',
    ),
]
