"""Realistic wrong answers to ps02_exploding, one solution cell each.

See catalog.py for what a Mistake holds and what the grading tests prove with it.
"""

from __future__ import annotations

from assignments.catalog import Mistake

ASSIGNMENT = "ps02_exploding"

MISTAKES: list[Mistake] = [
    # ------------------------------------------------------------------ part 1: predicted_growth
    Mistake(
        "predicted_growth",
        "fan_out_instead_of_fan_in",
        "uses n_out (the first number of the shape), the per-unit variance factor, instead of n_in",
        '''def predicted_growth(stds, shapes):
    """Root-mean-square growth factor G of the backward pass."""
    return math.prod(std**2 * n_out for std, (n_out, n_in) in zip(stds, shapes)) ** 0.5
''',
    ),
    Mistake(
        "predicted_growth",
        "forgot_square_root",
        "returns the mean-square factor prod(std^2 * n_in) instead of its square root",
        '''def predicted_growth(stds, shapes):
    """Root-mean-square growth factor G of the backward pass."""
    return math.prod(std**2 * n_in for std, (n_out, n_in) in zip(stds, shapes))
''',
    ),
    Mistake(
        "predicted_growth",
        "std_times_fan_in",
        "multiplies std * n_in per layer, mixing a standard deviation with a variance count",
        '''def predicted_growth(stds, shapes):
    """Root-mean-square growth factor G of the backward pass."""
    return float(math.prod(std * n_in for std, (n_out, n_in) in zip(stds, shapes)))
''',
    ),
    # ------------------------------------------------------------------ part 2: bptt_jacobian
    Mistake(
        "bptt_jacobian",
        "transposed_weight",
        "uses diag(1 - h_t^2) W^T as the step Jacobian: W.T instead of W",
        '''def bptt_jacobian(W, U, b, x, h0):
    """d h_T / d h_0 by the product of step Jacobians."""
    h = h0
    J = torch.eye(W.shape[0], dtype=W.dtype)
    for t in range(x.shape[0]):
        h = torch.tanh(W @ h + U @ x[t] + b)
        J = ((1 - h**2)[:, None] * W.T) @ J
    return J
''',
    ),
    Mistake(
        "bptt_jacobian",
        "forgot_tanh_derivative",
        "multiplies W's only, as if the recurrence were linear: the product is W^T",
        '''def bptt_jacobian(W, U, b, x, h0):
    """d h_T / d h_0 by the product of step Jacobians."""
    J = torch.eye(W.shape[0], dtype=W.dtype)
    for t in range(x.shape[0]):
        J = W @ J
    return J
''',
    ),
    Mistake(
        "bptt_jacobian",
        "derivative_at_previous_state",
        "takes tanh' at the previous state, 1 - h_{t-1}^2, instead of at the new one (off by one step)",
        '''def bptt_jacobian(W, U, b, x, h0):
    """d h_T / d h_0 by the product of step Jacobians."""
    h = h0
    J = torch.eye(W.shape[0], dtype=W.dtype)
    for t in range(x.shape[0]):
        J = ((1 - h**2)[:, None] * W) @ J
        h = torch.tanh(W @ h + U @ x[t] + b)
    return J
''',
    ),
    Mistake(
        "bptt_jacobian",
        "wrong_multiplication_order",
        "puts each new factor on the right, J @ (diag(1 - h_t^2) W), so the product runs in reverse order",
        '''def bptt_jacobian(W, U, b, x, h0):
    """d h_T / d h_0 by the product of step Jacobians."""
    h = h0
    J = torch.eye(W.shape[0], dtype=W.dtype)
    for t in range(x.shape[0]):
        h = torch.tanh(W @ h + U @ x[t] + b)
        J = J @ ((1 - h**2)[:, None] * W)
    return J
''',
    ),
    Mistake(
        "bptt_jacobian",
        "autograd_jacobian",
        "asks autograd for the Jacobian of the unrolled recurrence instead of multiplying the step Jacobians",
        '''def bptt_jacobian(W, U, b, x, h0):
    """d h_T / d h_0 by the product of step Jacobians."""

    def unroll(h):
        for t in range(x.shape[0]):
            h = torch.tanh(W @ h + U @ x[t] + b)
        return h

    return torch.autograd.functional.jacobian(unroll, h0)
''',
    ),
    # ------------------------------------------------------------------ part 3: recurrent_verdict
    Mistake(
        "recurrent_verdict",
        "real_part_of_eigenvalues",
        "takes the largest real part of the eigenvalues instead of the largest modulus",
        '''def recurrent_verdict(W, activation):
    """(spectral radius, largest singular value, verdict)."""
    W64 = W.detach().double()
    rho = float(torch.linalg.eigvals(W64).real.max())
    sigma_max = float(torch.linalg.svdvals(W64)[0])
    if activation == "linear":
        verdict = "undetermined" if abs(rho - 1) <= 1e-9 else ("vanishes" if rho < 1 else "explodes")
    else:
        gamma = 1.0 if activation == "tanh" else 0.25
        verdict = "vanishes" if gamma * sigma_max < 1 else "undetermined"
    return rho, sigma_max, verdict
''',
    ),
    Mistake(
        "recurrent_verdict",
        "spectral_radius_for_tanh",
        "judges tanh and sigmoid by the spectral radius instead of the largest singular value",
        '''def recurrent_verdict(W, activation):
    """(spectral radius, largest singular value, verdict)."""
    W64 = W.detach().double()
    rho = float(torch.linalg.eigvals(W64).abs().max())
    sigma_max = float(torch.linalg.svdvals(W64)[0])
    if activation == "linear":
        verdict = "undetermined" if abs(rho - 1) <= 1e-9 else ("vanishes" if rho < 1 else "explodes")
    else:
        gamma = 1.0 if activation == "tanh" else 0.25
        verdict = "vanishes" if gamma * rho < 1 else "undetermined"
    return rho, sigma_max, verdict
''',
    ),
    Mistake(
        "recurrent_verdict",
        "forgot_sigmoid_gamma",
        "uses gamma = 1 for the sigmoid too, so sigma_max < 1 instead of sigma_max < 4",
        '''def recurrent_verdict(W, activation):
    """(spectral radius, largest singular value, verdict)."""
    W64 = W.detach().double()
    rho = float(torch.linalg.eigvals(W64).abs().max())
    sigma_max = float(torch.linalg.svdvals(W64)[0])
    if activation == "linear":
        verdict = "undetermined" if abs(rho - 1) <= 1e-9 else ("vanishes" if rho < 1 else "explodes")
    else:
        verdict = "vanishes" if sigma_max < 1 else "undetermined"
    return rho, sigma_max, verdict
''',
    ),
    # ------------------------------------------------------------------ part 4: gradient_norm_bound
    Mistake(
        "gradient_norm_bound",
        "frobenius_norm",
        "uses torch.linalg.norm(W), the Frobenius norm, instead of the spectral norm",
        '''def gradient_norm_bound(weights, activation, top_grad_norm):
    """Upper bound on the gradient norm at the input."""
    gamma = 0.25 if activation == "sigmoid" else 1.0
    bound = float(top_grad_norm)
    for W in weights:
        bound *= gamma * float(torch.linalg.norm(W))
    return bound
''',
    ),
    Mistake(
        "gradient_norm_bound",
        "spectral_radius_instead_of_norm",
        "uses the spectral radius max|eigenvalue|, which does not bound ||W v||, instead of the largest singular value",
        '''def gradient_norm_bound(weights, activation, top_grad_norm):
    """Upper bound on the gradient norm at the input."""
    gamma = 0.25 if activation == "sigmoid" else 1.0
    bound = float(top_grad_norm)
    for W in weights:
        bound *= gamma * float(torch.linalg.eigvals(W.double()).abs().max())
    return bound
''',
    ),
    Mistake(
        "gradient_norm_bound",
        "gamma_once",
        "multiplies by gamma once for the whole network instead of once per layer",
        '''def gradient_norm_bound(weights, activation, top_grad_norm):
    """Upper bound on the gradient norm at the input."""
    gamma = 0.25 if activation == "sigmoid" else 1.0
    bound = gamma * float(top_grad_norm)
    for W in weights:
        bound *= float(torch.linalg.matrix_norm(W.double(), ord=2))
    return bound
''',
    ),
    # ------------------------------------------------------------------ part 5: growth_per_layer
    Mistake(
        "growth_per_layer",
        "endpoints_only",
        "uses only the first and last layer, (n_1 / n_L)^(1 / (L - 1)), instead of the least-squares fit",
        '''def growth_per_layer(norms):
    """Per-layer growth factor of the backward pass."""
    n = np.asarray(norms, dtype=np.float64)
    return float((n[0] / n[-1]) ** (1 / (len(n) - 1)))
''',
    ),
    Mistake(
        "growth_per_layer",
        "wrong_direction",
        "returns exp(k), the growth from input to output, instead of exp(-k)",
        '''def growth_per_layer(norms):
    """Per-layer growth factor of the backward pass."""
    y = np.log(np.asarray(norms, dtype=np.float64))
    k, a = np.polyfit(np.arange(1, len(y) + 1), y, 1)
    return float(np.exp(k))
''',
    ),
    Mistake(
        "growth_per_layer",
        "log10_slope_with_exp",
        "fits log10 of the norms but converts the slope back with exp instead of 10**",
        '''def growth_per_layer(norms):
    """Per-layer growth factor of the backward pass."""
    y = np.log10(np.asarray(norms, dtype=np.float64))
    k, a = np.polyfit(np.arange(1, len(y) + 1), y, 1)
    return float(np.exp(-k))
''',
    ),
    # ------------------------------------------------------------------ part 6: first_nonfinite
    Mistake(
        "first_nonfinite",
        "only_nan",
        "looks for nan only, so a loss that overflowed to inf is missed",
        '''def first_nonfinite(values):
    """Index of the first non-finite value."""
    for i, v in enumerate(np.asarray(values, dtype=np.float64)):
        if math.isnan(v):
            return i
    return None
''',
    ),
    Mistake(
        "first_nonfinite",
        "one_based_step",
        "returns the step number counting from 1",
        '''def first_nonfinite(values):
    """Index of the first non-finite value."""
    for i, v in enumerate(np.asarray(values, dtype=np.float64)):
        if not math.isfinite(v):
            return i + 1
    return None
''',
    ),
    Mistake(
        "first_nonfinite",
        "last_finite_step",
        "returns the index of the last finite value before the first non-finite one",
        '''def first_nonfinite(values):
    """Index of the first non-finite value."""
    for i, v in enumerate(np.asarray(values, dtype=np.float64)):
        if not math.isfinite(v):
            return i - 1
    return None
''',
    ),
    # ------------------------------------------------------------------ part 7: gradient_warning
    Mistake(
        "gradient_warning",
        "mean_instead_of_median",
        "compares with the mean of the window, which one earlier spike inflates",
        '''def gradient_warning(grad_norms, k=10.0, window=20):
    """First step whose gradient norm is not finite or exceeds k times the window's typical value."""
    g = np.asarray(grad_norms, dtype=np.float64)
    for t in range(window, len(g)):
        if not np.isfinite(g[t]) or g[t] > k * np.mean(g[t - window : t]):
            return t
    return None
''',
    ),
    Mistake(
        "gradient_warning",
        "nan_never_warns",
        "only tests g[t] > k * median, which is False for nan, so a nan gradient norm raises no warning",
        '''def gradient_warning(grad_norms, k=10.0, window=20):
    """First step whose gradient norm is not finite or exceeds k times the window's median."""
    g = np.asarray(grad_norms, dtype=np.float64)
    for t in range(window, len(g)):
        if g[t] > k * np.median(g[t - window : t]):
            return t
    return None
''',
    ),
    Mistake(
        "gradient_warning",
        "window_includes_current_step",
        "takes the median of the window ending at t (g[t - window + 1 : t + 1]), which contains the value being tested",
        '''def gradient_warning(grad_norms, k=10.0, window=20):
    """First step whose gradient norm is not finite or exceeds k times the window's median."""
    g = np.asarray(grad_norms, dtype=np.float64)
    for t in range(window, len(g)):
        if not np.isfinite(g[t]) or g[t] > k * np.median(g[t - window + 1 : t + 1]):
            return t
    return None
''',
    ),
    Mistake(
        "gradient_warning",
        "partial_first_window",
        "starts at step 1 with whatever steps came before, so a spike inside the first window is flagged",
        '''def gradient_warning(grad_norms, k=10.0, window=20):
    """First step whose gradient norm is not finite or exceeds k times the window's median."""
    g = np.asarray(grad_norms, dtype=np.float64)
    for t in range(1, len(g)):
        if not np.isfinite(g[t]) or g[t] > k * np.median(g[max(0, t - window) : t]):
            return t
    return None
''',
    ),
    # ------------------------------------------------------------------ part 8: clip_grad_norm
    Mistake(
        "clip_grad_norm",
        "clip_by_value",
        "clamps every entry to [-max_norm, max_norm]: clipping by value, which changes the direction",
        '''def clip_grad_norm(parameters, max_norm):
    """Clip gradients; return the global norm before clipping."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    for g in grads:
        g.clamp_(-max_norm, max_norm)
    return total
''',
    ),
    Mistake(
        "clip_grad_norm",
        "per_parameter_norm",
        "clips each parameter's gradient by its own norm instead of the global norm",
        '''def clip_grad_norm(parameters, max_norm):
    """Clip gradients; return the global norm before clipping."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    for g in grads:
        norm = g.norm().item()
        if norm > max_norm:
            g.mul_(max_norm / (norm + 1e-6))
    return total
''',
    ),
    Mistake(
        "clip_grad_norm",
        "always_rescales",
        "scales by max_norm / norm unconditionally, stretching small gradients up to max_norm",
        '''def clip_grad_norm(parameters, max_norm):
    """Clip gradients; return the global norm before clipping."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    for g in grads:
        g.mul_(max_norm / (total.item() + 1e-6))
    return total
''',
    ),
    Mistake(
        "clip_grad_norm",
        "generator_consumed_twice",
        "iterates over model.parameters() twice; the generator is empty the second time, so nothing is clipped",
        '''def clip_grad_norm(parameters, max_norm):
    """Clip gradients; return the global norm before clipping."""
    total = torch.sqrt(sum(p.grad.pow(2).sum() for p in parameters if p.grad is not None))
    coef = min(1.0, max_norm / (total.item() + 1e-6))
    for p in parameters:
        if p.grad is not None:
            p.grad.mul_(coef)
    return total
''',
    ),
    Mistake(
        "clip_grad_norm",
        "returns_norm_after_clipping",
        "returns the norm after clipping instead of before",
        '''def clip_grad_norm(parameters, max_norm):
    """Clip gradients; return the global norm before clipping."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    coef = min(1.0, max_norm / (total.item() + 1e-6))
    for g in grads:
        g.mul_(coef)
    return torch.sqrt(sum(g.pow(2).sum() for g in grads))
''',
    ),
    Mistake(
        "clip_grad_norm",
        "calls_builtin",
        "returns torch.nn.utils.clip_grad_norm_ instead of computing the norm and scaling by hand",
        '''def clip_grad_norm(parameters, max_norm):
    """Clip gradients; return the global norm before clipping."""
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
''',
    ),
]
