"""Realistic wrong answers to ps02_exploding, one solution cell each.

See catalog.py for what a Mistake holds and what the grading tests prove with it.
"""

from __future__ import annotations

from assignments.catalog import Alternative, Mistake

ASSIGNMENT = "ps02_exploding"

MISTAKES: list[Mistake] = [
    # ------------------------------------------------------------------ part 1: typical_growth
    Mistake(
        "typical_growth",
        "root_mean_square",
        "the root-mean-square growth prod std * sqrt(n_in): the log of the mean of the square, not the mean of the log",
        '''def typical_growth(stds, shapes):
    """Typical growth factor of the backward pass."""
    return math.prod(s * math.sqrt(shape[1]) for s, shape in zip(stds, shapes))
''',
    ),
    Mistake(
        "typical_growth",
        "fan_out_degrees",
        "counts n_out degrees of freedom (the length of g) where W^T g has n_in entries",
        '''def typical_growth(stds, shapes):
    """Typical growth factor of the backward pass."""
    log_g = 0.0
    for s, (n_out, n_in) in zip(stds, shapes):
        log_g += math.log(s) + 0.5 * (torch.special.digamma(torch.tensor(n_out / 2.0)).item() + math.log(2))
    return math.exp(log_g)
''',
    ),
    Mistake(
        "typical_growth",
        "digamma_of_k",
        "takes psi(k) where psi(k / 2) is due",
        '''def typical_growth(stds, shapes):
    """Typical growth factor of the backward pass."""
    log_g = 0.0
    for s, (n_out, n_in) in zip(stds, shapes):
        log_g += math.log(s) + 0.5 * (torch.special.digamma(torch.tensor(float(n_in))).item() + math.log(2))
    return math.exp(log_g)
''',
    ),
    Mistake(
        "typical_growth",
        "squared_norm",
        "the typical growth of the squared norm: the square root (the 1/2 on the logarithm) left out",
        '''def typical_growth(stds, shapes):
    """Typical growth factor of the backward pass."""
    log_g = 0.0
    for s, (n_out, n_in) in zip(stds, shapes):
        log_g += 2 * math.log(s) + torch.special.digamma(torch.tensor(n_in / 2.0)).item() + math.log(2)
    return math.exp(log_g)
''',
    ),
    Mistake(
        "typical_growth",
        "monte_carlo",
        "estimates the geometric mean from 500 sampled networks instead of deriving it",
        '''def typical_growth(stds, shapes):
    """Typical growth factor of the backward pass, sampled."""
    logs = []
    for _ in range(500):
        g = torch.randn(shapes[-1][0], dtype=torch.float64)
        total = -math.log(g.norm().item())
        for s, (n_out, n_in) in reversed(list(zip(stds, shapes))):
            g = (s * torch.randn(n_out, n_in, dtype=torch.float64)).T @ g
            total += math.log(g.norm().item())
            g = g / g.norm()
        logs.append(total)
    return math.exp(sum(logs) / len(logs))
''',
    ),
    # ------------------------------------------------------------------ part 2: step_gradients
    Mistake(
        "step_gradients",
        "weight_not_transposed_backwards",
        "passes the gradient back through a step with W instead of W^T",
        '''def step_gradients(W, U, b, x, h0, grad_hT):
    """Contributions of each time step to dL/dW."""
    hs = [h0]
    for t in range(x.shape[0]):
        hs.append(torch.tanh(W @ hs[-1] + U @ x[t] + b))
    G = torch.zeros(x.shape[0], *W.shape, dtype=W.dtype)
    delta = grad_hT
    for t in range(x.shape[0], 0, -1):
        dz = delta * (1 - hs[t] ** 2)
        G[t - 1] = torch.outer(dz, hs[t - 1])
        delta = W @ dz
    return G
''',
    ),
    Mistake(
        "step_gradients",
        "outer_with_new_state",
        "forms step t's contribution with h_t, the state it produced, instead of h_{t-1}, the one W multiplied",
        '''def step_gradients(W, U, b, x, h0, grad_hT):
    """Contributions of each time step to dL/dW."""
    hs = [h0]
    for t in range(x.shape[0]):
        hs.append(torch.tanh(W @ hs[-1] + U @ x[t] + b))
    G = torch.zeros(x.shape[0], *W.shape, dtype=W.dtype)
    delta = grad_hT
    for t in range(x.shape[0], 0, -1):
        dz = delta * (1 - hs[t] ** 2)
        G[t - 1] = torch.outer(dz, hs[t])
        delta = W.T @ dz
    return G
''',
    ),
    Mistake(
        "step_gradients",
        "forgot_tanh_derivative",
        "back-propagates as if the recurrence were linear: no 1 - h_t^2 factor",
        '''def step_gradients(W, U, b, x, h0, grad_hT):
    """Contributions of each time step to dL/dW."""
    hs = [h0]
    for t in range(x.shape[0]):
        hs.append(torch.tanh(W @ hs[-1] + U @ x[t] + b))
    G = torch.zeros(x.shape[0], *W.shape, dtype=W.dtype)
    delta = grad_hT
    for t in range(x.shape[0], 0, -1):
        G[t - 1] = torch.outer(delta, hs[t - 1])
        delta = W.T @ delta
    return G
''',
    ),
    Mistake(
        "step_gradients",
        "latest_step_first",
        "stores the contributions in the order they are computed, the last step first",
        '''def step_gradients(W, U, b, x, h0, grad_hT):
    """Contributions of each time step to dL/dW."""
    hs = [h0]
    for t in range(x.shape[0]):
        hs.append(torch.tanh(W @ hs[-1] + U @ x[t] + b))
    out = []
    delta = grad_hT
    for t in range(x.shape[0], 0, -1):
        dz = delta * (1 - hs[t] ** 2)
        out.append(torch.outer(dz, hs[t - 1]))
        delta = W.T @ dz
    return torch.stack(out)
''',
    ),
    Mistake(
        "step_gradients",
        "tanh_derivative_of_previous_state",
        "uses 1 - h_{t-1}^2 for step t's tanh' factor, one step off",
        '''def step_gradients(W, U, b, x, h0, grad_hT):
    """Contributions of each time step to dL/dW."""
    hs = [h0]
    for t in range(x.shape[0]):
        hs.append(torch.tanh(W @ hs[-1] + U @ x[t] + b))
    G = torch.zeros(x.shape[0], *W.shape, dtype=W.dtype)
    delta = grad_hT
    for t in range(x.shape[0], 0, -1):
        dz = delta * (1 - hs[t - 1] ** 2)
        G[t - 1] = torch.outer(dz, hs[t - 1])
        delta = W.T @ dz
    return G
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
    # ------------------------------------------------------------------ part 6: gradient_warning
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
    Mistake(
        "gradient_warning",
        "ignores_k_and_window",
        "uses the usual k = 10 and window = 20 whatever it is given",
        '''def gradient_warning(grad_norms, k=10.0, window=20):
    """First step whose gradient norm is not finite or exceeds k times the window's median."""
    g = np.asarray(grad_norms, dtype=np.float64)
    for t in range(20, len(g)):
        if not np.isfinite(g[t]) or g[t] > 10.0 * np.median(g[t - 20 : t]):
            return t
    return None
''',
    ),
    # ------------------------------------------------------------------ part 7: clip_grad_norm
    Mistake(
        "clip_grad_norm",
        "clip_by_value",
        "clamps every entry to [-max_norm, max_norm]: clipping by value, which changes the direction",
        '''def clip_grad_norm(model, max_norm):
    """Clip gradients; return the global norm before clipping."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
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
        '''def clip_grad_norm(model, max_norm):
    """Clip gradients; return the global norm before clipping."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
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
        '''def clip_grad_norm(model, max_norm):
    """Clip gradients; return the global norm before clipping."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    total = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    for g in grads:
        g.mul_(max_norm / (total.item() + 1e-6))
    return total
''',
    ),
    Mistake(
        "clip_grad_norm",
        "generator_consumed_twice",
        "keeps the generator model.parameters() and iterates over it twice: empty the second time, nothing is clipped",
        '''def clip_grad_norm(model, max_norm):
    """Clip gradients; return the global norm before clipping."""
    parameters = model.parameters()
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
        '''def clip_grad_norm(model, max_norm):
    """Clip gradients; return the global norm before clipping."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
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
        '''def clip_grad_norm(model, max_norm):
    """Clip gradients; return the global norm before clipping."""
    return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
''',
    ),
]

ALTERNATIVES: list[Alternative] = [
    Alternative(
        "typical_growth",
        "digamma_as_harmonic_sum",
        "psi(k / 2) from its closed form at integers and half-integers (harmonic sums), no special functions",
        '''def typical_growth(stds, shapes):
    """Typical growth factor of the backward pass."""
    euler_gamma = 0.5772156649015329

    def digamma_half(k):  # psi(k / 2) for a positive integer k
        if k % 2 == 0:
            return -euler_gamma + sum(1.0 / j for j in range(1, k // 2))
        return -euler_gamma - 2 * math.log(2) + sum(2.0 / (2 * j - 1) for j in range(1, (k - 1) // 2 + 1))

    log_g = 0.0
    for s, (n_out, n_in) in zip(stds, shapes):
        log_g += math.log(s) + 0.5 * (digamma_half(n_in) + math.log(2))
    return math.exp(log_g)
''',
    ),
    Alternative(
        "typical_growth",
        "scipy_product",
        "scipy.special.digamma and a direct product of the per-layer factors, without logarithms of the total",
        '''def typical_growth(stds, shapes):
    """Typical growth factor of the backward pass."""
    from scipy.special import digamma

    growth = 1.0
    for s, shape in zip(stds, shapes):
        growth *= s * math.sqrt(2.0) * math.exp(0.5 * digamma(shape[1] / 2))
    return float(growth)
''',
    ),
    Alternative(
        "typical_growth",
        "vectorised_no_grad",
        "all layers at once with float64 tensors under torch.no_grad(), returned with .item()",
        '''def typical_growth(stds, shapes):
    """Typical growth factor of the backward pass."""
    with torch.no_grad():
        sd = torch.tensor(stds, dtype=torch.float64)
        k = torch.tensor([n_in for _, n_in in shapes], dtype=torch.float64)
        logs = torch.log(sd) + 0.5 * (torch.special.digamma(k / 2) + math.log(2.0))
        return torch.exp(logs.sum()).item()
''',
    ),
    Alternative(
        "step_gradients",
        "jacobian_products",
        "dL/dh_t from the transposed product of the later step Jacobians applied to g, then an outer product",
        '''def step_gradients(W, U, b, x, h0, grad_hT):
    """Contributions of each time step to dL/dW."""
    T, H = x.shape[0], W.shape[0]
    hs = [h0]
    for t in range(T):
        hs.append(torch.tanh(W @ hs[-1] + U @ x[t] + b))
    out = []
    for t in range(1, T + 1):
        J = torch.eye(H, dtype=W.dtype)  # d h_T / d h_t
        for s in range(t + 1, T + 1):
            J = torch.diag(1 - hs[s] ** 2) @ W @ J
        delta = J.T @ grad_hT
        out.append(torch.diag(1 - hs[t] ** 2) @ torch.outer(delta, hs[t - 1]))
    return torch.stack(out)
''',
    ),
    Alternative(
        "step_gradients",
        "float64_inside_no_grad",
        "computes in float64 under torch.no_grad() with einsum, casting back to W's dtype",
        '''def step_gradients(W, U, b, x, h0, grad_hT):
    """Contributions of each time step to dL/dW."""
    with torch.no_grad():
        W64, U64, b64, x64 = W.double(), U.double(), b.double(), x.double()
        hs = [h0.double()]
        for x_t in x64:
            hs.append(torch.tanh(W64 @ hs[-1] + U64 @ x_t + b64))
        delta = grad_hT.double()
        G = []
        for t in reversed(range(1, len(hs))):
            dz = delta * (1 - hs[t] * hs[t])
            G.insert(0, torch.einsum("i,j->ij", dz, hs[t - 1]))
            delta = torch.einsum("ij,i->j", W64, dz)
        return torch.stack(G).to(W.dtype)
''',
    ),
    Alternative(
        "recurrent_verdict",
        "numpy_linalg",
        "numpy's eigvals and 2-norm, and the verdict written with other comparisons",
        '''def recurrent_verdict(W, activation):
    """(spectral radius, largest singular value, verdict)."""
    A = W.detach().double().numpy()
    rho = float(np.max(np.abs(np.linalg.eigvals(A))))
    sigma_max = float(np.linalg.norm(A, 2))
    if activation == "linear":
        verdict = "undetermined" if abs(rho - 1) <= 1e-9 else ("explodes" if rho > 1 else "vanishes")
    elif sigma_max * {"tanh": 1.0, "sigmoid": 0.25}[activation] < 1:
        verdict = "vanishes"
    else:
        verdict = "undetermined"
    return rho, sigma_max, verdict
''',
    ),
    Alternative(
        "gradient_norm_bound",
        "sum_of_logs",
        "adds the logarithms of gamma * sigma_max and exponentiates, with matrix_norm(ord=2)",
        '''def gradient_norm_bound(weights, activation, top_grad_norm):
    """prod_l (gamma * ||W_l||_2) * top_grad_norm."""
    gamma = 0.25 if activation == "sigmoid" else 1.0
    log_bound = math.log(top_grad_norm)
    for W in weights:
        log_bound += math.log(gamma * torch.linalg.matrix_norm(W.double(), ord=2).item())
    return math.exp(log_bound)
''',
    ),
    Alternative(
        "growth_per_layer",
        "polyfit",
        "numpy.polyfit for the slope",
        '''def growth_per_layer(norms):
    """Per-layer growth factor of the backward pass."""
    y = np.log(np.asarray(norms, dtype=np.float64))
    k, a = np.polyfit(np.arange(1, len(y) + 1), y, 1)
    return float(np.exp(-k))
''',
    ),
    Alternative(
        "gradient_warning",
        "not_less_equal",
        "warns when not (g[t] <= k * median), True for nan too, with a median taken from a sorted list",
        '''def gradient_warning(grad_norms, k=10.0, window=20):
    """First step whose gradient norm is not finite or exceeds k times the window's median."""
    g = [float(v) for v in np.asarray(grad_norms, dtype=np.float64).reshape(-1)]
    for t in range(window, len(g)):
        w = sorted(g[t - window : t])
        m = w[window // 2] if window % 2 else (w[window // 2 - 1] + w[window // 2]) / 2
        if not (g[t] <= k * m) or math.isinf(g[t]):
            return t
    return None
''',
    ),
    Alternative(
        "clip_grad_norm",
        "vector_norm_of_norms",
        "the global norm as the norm of the per-parameter norms, scaling with p.grad *= coef",
        '''def clip_grad_norm(model, max_norm):
    """Clip gradients; return the global norm before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.double()) for p in params]))
    if total > max_norm:
        for p in params:
            p.grad *= max_norm / (total.item() + 1e-6)
    return total
''',
    ),
]
