"""Realistic wrong answers to ps05_initialisation, and correct answers written differently.

See catalog.py for what a Mistake and an Alternative hold and what the grading tests prove with them.
"""

from __future__ import annotations

from assignments.catalog import Alternative, Mistake

ASSIGNMENT = "ps05_initialisation"

MISTAKES: list[Mistake] = [
    # ------------------------------------------------------------------ part 1: identical_units
    Mistake(
        "identical_units",
        "compares_columns",
        "takes a unit's weights as a COLUMN of the weight matrix (its outgoing weights in the math layout)",
        '''def identical_units(weight, bias, tol=1e-6):
    """Groups of units whose incoming weights and bias agree within tol."""
    cols = weight.detach().double().T
    groups, placed = [], set()
    for i in range(cols.shape[0]):
        if i in placed:
            continue
        group = [j for j in range(cols.shape[0])
                 if j not in placed and (cols[i] - cols[j]).abs().max() <= tol]
        placed |= set(group)
        groups.append(group)
    return groups
''',
    ),
    Mistake(
        "identical_units",
        "ignores_bias",
        "compares the weight rows only: two units with equal weights but different biases are grouped",
        '''def identical_units(weight, bias, tol=1e-6):
    """Groups of units whose incoming weights and bias agree within tol."""
    rows = weight.detach().double()
    groups, placed = [], set()
    for i in range(rows.shape[0]):
        if i in placed:
            continue
        group = [j for j in range(rows.shape[0])
                 if j not in placed and (rows[i] - rows[j]).abs().max() <= tol]
        placed |= set(group)
        groups.append(group)
    return groups
''',
    ),
    Mistake(
        "identical_units",
        "exact_equality",
        "ignores the tolerance and groups only units that are exactly equal",
        '''def identical_units(weight, bias, tol=1e-6):
    """Groups of units whose incoming weights and bias agree within tol."""
    rows = torch.cat([weight.detach(), bias.detach()[:, None]], dim=1)
    groups, placed = [], set()
    for i in range(rows.shape[0]):
        if i in placed:
            continue
        group = [j for j in range(rows.shape[0]) if j not in placed and torch.equal(rows[i], rows[j])]
        placed |= set(group)
        groups.append(group)
    return groups
''',
    ),
    # ------------------------------------------------------------------ part 2: fans
    Mistake(
        "fans",
        "no_receptive_field",
        "reads the channels only and forgets that a convolution also sums over the kernel's positions",
        '''def fans(shape):
    """(fan_in, fan_out) of a weight of shape (outputs, inputs, *kernel)."""
    return int(shape[1]), int(shape[0])
''',
    ),
    Mistake(
        "fans",
        "swapped_dimensions",
        "takes the first dimension as the inputs (the math layout x W instead of PyTorch's W x)",
        '''def fans(shape):
    """(fan_in, fan_out) of a weight of shape (outputs, inputs, *kernel)."""
    k = 1
    for s in shape[2:]:
        k *= s
    return int(shape[0]) * k, int(shape[1]) * k
''',
    ),
    Mistake(
        "fans",
        "fan_out_is_all_weights",
        "counts every weight for the fan-out (outputs x inputs x kernel) instead of outputs x kernel",
        '''def fans(shape):
    """(fan_in, fan_out) of a weight of shape (outputs, inputs, *kernel)."""
    k = 1
    for s in shape[2:]:
        k *= s
    return int(shape[1]) * k, int(shape[0]) * int(shape[1]) * k
''',
    ),
    # ------------------------------------------------------------------ part 3: xavier_uniform
    Mistake(
        "xavier_uniform",
        "std_used_as_bound",
        "uses the target standard deviation sqrt(2 / (fan_in + fan_out)) as the bound of the uniform",
        '''def xavier_uniform(fan_out, fan_in, generator, gain=1.0):
    """Xavier-uniform weights of shape (fan_out, fan_in)."""
    a = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return (2 * torch.rand(fan_out, fan_in, generator=generator) - 1) * a
''',
    ),
    Mistake(
        "xavier_uniform",
        "global_rng",
        "draws from the global random number generator and never uses the generator it is given",
        '''def xavier_uniform(fan_out, fan_in, generator, gain=1.0):
    """Xavier-uniform weights of shape (fan_out, fan_in)."""
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return (2 * torch.rand(fan_out, fan_in) - 1) * a
''',
    ),
    Mistake(
        "xavier_uniform",
        "normal_not_uniform",
        "draws normal weights with the right variance instead of uniform ones",
        '''def xavier_uniform(fan_out, fan_in, generator, gain=1.0):
    """Xavier-uniform weights of shape (fan_out, fan_in)."""
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return std * torch.randn(fan_out, fan_in, generator=generator)
''',
    ),
    Mistake(
        "xavier_uniform",
        "forgets_gain",
        "leaves out the gain",
        '''def xavier_uniform(fan_out, fan_in, generator, gain=1.0):
    """Xavier-uniform weights of shape (fan_out, fan_in)."""
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return (2 * torch.rand(fan_out, fan_in, generator=generator) - 1) * a
''',
    ),
    Mistake(
        "xavier_uniform",
        "calls_nn_init",
        "fills the tensor with torch.nn.init.xavier_uniform_, which the part forbids",
        '''def xavier_uniform(fan_out, fan_in, generator, gain=1.0):
    """Xavier-uniform weights of shape (fan_out, fan_in)."""
    w = torch.empty(fan_out, fan_in)
    return torch.nn.init.xavier_uniform_(w, gain=gain, generator=generator)
''',
    ),
    # ------------------------------------------------------------------ part 4: he_normal
    Mistake(
        "he_normal",
        "ignores_mode",
        "always uses the fan-in, whatever the mode says",
        '''def he_normal(fan_out, fan_in, mode, generator):
    """He-normal weights of shape (fan_out, fan_in)."""
    return math.sqrt(2.0 / fan_in) * torch.randn(fan_out, fan_in, generator=generator)
''',
    ),
    Mistake(
        "he_normal",
        "fans_swapped",
        "takes fan_out for mode 'fan_in' and fan_in for mode 'fan_out'",
        '''def he_normal(fan_out, fan_in, mode, generator):
    """He-normal weights of shape (fan_out, fan_in)."""
    n = fan_out if mode == "fan_in" else fan_in
    return math.sqrt(2.0 / n) * torch.randn(fan_out, fan_in, generator=generator)
''',
    ),
    Mistake(
        "he_normal",
        "variance_as_std",
        "multiplies by the variance 2 / n instead of the standard deviation sqrt(2 / n)",
        '''def he_normal(fan_out, fan_in, mode, generator):
    """He-normal weights of shape (fan_out, fan_in)."""
    n = fan_in if mode == "fan_in" else fan_out
    return (2.0 / n) * torch.randn(fan_out, fan_in, generator=generator)
''',
    ),
    Mistake(
        "he_normal",
        "uniform_not_normal",
        "draws uniform weights of the right variance (kaiming_uniform_) instead of normal ones",
        '''def he_normal(fan_out, fan_in, mode, generator):
    """He-normal weights of shape (fan_out, fan_in)."""
    n = fan_in if mode == "fan_in" else fan_out
    bound = math.sqrt(6.0 / n)
    return (2 * torch.rand(fan_out, fan_in, generator=generator) - 1) * bound
''',
    ),
    Mistake(
        "he_normal",
        "global_rng",
        "uses torch.randn without the generator",
        '''def he_normal(fan_out, fan_in, mode, generator):
    """He-normal weights of shape (fan_out, fan_in)."""
    n = fan_in if mode == "fan_in" else fan_out
    return math.sqrt(2.0 / n) * torch.randn(fan_out, fan_in)
''',
    ),
    # ------------------------------------------------------------------ part 5: relu_like_gain
    Mistake(
        "relu_like_gain",
        "leaky_relu_formula",
        "uses PyTorch's leaky-ReLU gain sqrt(2 / (1 + a_neg^2)), which assumes a positive slope of 1",
        '''def relu_like_gain(a_pos, a_neg):
    """Variance-preserving gain of a piecewise-linear activation."""
    return math.sqrt(2.0 / (1 + a_neg**2))
''',
    ),
    Mistake(
        "relu_like_gain",
        "variance_not_gain",
        "returns the variance factor g^2 instead of the gain g",
        '''def relu_like_gain(a_pos, a_neg):
    """Variance-preserving gain of a piecewise-linear activation."""
    return 2.0 / (a_pos**2 + a_neg**2)
''',
    ),
    Mistake(
        "relu_like_gain",
        "slopes_not_squared",
        "averages the slopes' absolute values instead of their squares",
        '''def relu_like_gain(a_pos, a_neg):
    """Variance-preserving gain of a piecewise-linear activation."""
    return math.sqrt(2.0 / (abs(a_pos) + abs(a_neg)))
''',
    ),
    # ------------------------------------------------------------------ part 6: predicted_rms
    Mistake(
        "predicted_rms",
        "input_variance",
        "starts from the inputs' variance instead of their mean square (the pixels are not centred)",
        '''def predicted_rms(x, layers):
    """Predicted RMS of the last pre-activations of a bias-free ReLU network."""
    q = x.double().var().item()
    for l, (kind, s, fan_out, fan_in) in enumerate(layers):
        var_w = s**2 if kind == "normal" else s**2 / 3
        q = fan_in * var_w * (q if l == 0 else q / 2)
    return math.sqrt(q)
''',
    ),
    Mistake(
        "predicted_rms",
        "uniform_variance_s_squared",
        "takes the variance of U(-s, s) to be s^2",
        '''def predicted_rms(x, layers):
    """Predicted RMS of the last pre-activations of a bias-free ReLU network."""
    q = x.double().pow(2).mean().item()
    for l, (kind, s, fan_out, fan_in) in enumerate(layers):
        q = fan_in * s**2 * (q if l == 0 else q / 2)
    return math.sqrt(q)
''',
    ),
    Mistake(
        "predicted_rms",
        "halves_before_first_layer",
        "applies the ReLU's factor 1/2 at every layer, the first included, although the input is not a ReLU output",
        '''def predicted_rms(x, layers):
    """Predicted RMS of the last pre-activations of a bias-free ReLU network."""
    q = x.double().pow(2).mean().item()
    for kind, s, fan_out, fan_in in layers:
        var_w = s**2 if kind == "normal" else s**2 / 3
        q = fan_in * var_w * q / 2
    return math.sqrt(q)
''',
    ),
    Mistake(
        "predicted_rms",
        "fan_out_for_fan_in",
        "multiplies by each layer's fan_out instead of its fan_in",
        '''def predicted_rms(x, layers):
    """Predicted RMS of the last pre-activations of a bias-free ReLU network."""
    q = x.double().pow(2).mean().item()
    for l, (kind, s, fan_out, fan_in) in enumerate(layers):
        var_w = s**2 if kind == "normal" else s**2 / 3
        q = fan_out * var_w * (q if l == 0 else q / 2)
    return math.sqrt(q)
''',
    ),
    # ------------------------------------------------------------------ part 7: orthogonal_from_gaussian
    Mistake(
        "orthogonal_from_gaussian",
        "no_sign_fix",
        "returns the Q of torch.linalg.qr as it comes, without making R's diagonal positive",
        '''def orthogonal_from_gaussian(a, gain=1.0):
    """gain * Q of the QR decomposition of a (of a.T if a is wide), sign-fixed."""
    wide = a.shape[0] < a.shape[1]
    q, r = torch.linalg.qr(a.T if wide else a)
    return gain * (q.T if wide else q)
''',
    ),
    Mistake(
        "orthogonal_from_gaussian",
        "signs_on_rows",
        "multiplies the ROWS of Q by the signs of R's diagonal (sign(d)[:, None] * q) instead of its columns",
        '''def orthogonal_from_gaussian(a, gain=1.0):
    """gain * Q of the QR decomposition of a (of a.T if a is wide), sign-fixed."""
    wide = a.shape[0] < a.shape[1]
    m = a.T if wide else a
    q, r = torch.linalg.qr(m, mode="complete")
    d = torch.sign(torch.diagonal(r))
    d = torch.cat([d, torch.ones(q.shape[0] - d.shape[0], dtype=d.dtype)])
    q = (d[:, None] * q)[:, : m.shape[1]]
    return gain * (q.T if wide else q)
''',
    ),
    Mistake(
        "orthogonal_from_gaussian",
        "wide_not_transposed",
        "factors a wide matrix directly and pads Q with zeros to the shape of a, instead of factoring a.T",
        '''def orthogonal_from_gaussian(a, gain=1.0):
    """gain * Q of the QR decomposition of a (of a.T if a is wide), sign-fixed."""
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))
    if q.shape != a.shape:
        q = torch.cat([q, torch.zeros(a.shape[0], a.shape[1] - q.shape[1], dtype=a.dtype)], dim=1)
    return gain * q
''',
    ),
    Mistake(
        "orthogonal_from_gaussian",
        "forgets_gain",
        "returns the sign-fixed Q without multiplying by the gain",
        '''def orthogonal_from_gaussian(a, gain=1.0):
    """gain * Q of the QR decomposition of a (of a.T if a is wide), sign-fixed."""
    wide = a.shape[0] < a.shape[1]
    q, r = torch.linalg.qr(a.T if wide else a)
    q = q * torch.sign(torch.diagonal(r))
    return q.T if wide else q
''',
    ),
]

ALTERNATIVES: list[Alternative] = [
    Alternative(
        "identical_units",
        "union_find_loops",
        "plain Python loops over pairs of units with a union-find, no vectorised distance matrix",
        '''def identical_units(weight, bias, tol=1e-6):
    """Groups of units whose incoming weights and bias agree within tol."""
    w, b = weight.detach().tolist(), bias.detach().tolist()
    n = len(w)
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if abs(b[i] - b[j]) <= tol and all(abs(p - q) <= tol for p, q in zip(w[i], w[j])):
                parent[root(j)] = root(i)
    groups = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])
''',
    ),
    Alternative(
        "identical_units",
        "cdist_infinity_norm",
        "torch.cdist with p = inf gives the largest entrywise difference; units joined to the first match",
        '''def identical_units(weight, bias, tol=1e-6):
    """Groups of units whose incoming weights and bias agree within tol."""
    rows = torch.cat([weight, bias[:, None]], dim=1).double()
    with torch.no_grad():
        dist = torch.cdist(rows, rows, p=float("inf"))
    groups, placed = [], set()
    for i in range(rows.shape[0]):
        if i not in placed:
            group = [j for j in range(rows.shape[0]) if j not in placed and dist[i, j] <= tol]
            placed.update(group)
            groups.append(group)
    return groups
''',
    ),
    Alternative(
        "fans",
        "numel_division",
        "the receptive field as the number of weights divided by outputs x inputs, with math.prod",
        '''def fans(shape):
    """(fan_in, fan_out) of a weight of shape (outputs, inputs, *kernel)."""
    total = math.prod(shape)
    receptive = total // (shape[0] * shape[1])
    return total // shape[0], shape[0] * receptive
''',
    ),
    Alternative(
        "xavier_uniform",
        "tensor_uniform_float64",
        "fills a float64 tensor with Tensor.uniform_(-a, a, generator=...) and casts to float32",
        '''def xavier_uniform(fan_out, fan_in, generator, gain=1.0):
    """Xavier-uniform weights of shape (fan_out, fan_in)."""
    bound = gain * math.sqrt(3.0) * math.sqrt(2.0 / (fan_in + fan_out))
    w = torch.empty(fan_out, fan_in, dtype=torch.float64).uniform_(-bound, bound, generator=generator)
    return w.float()
''',
    ),
    Alternative(
        "xavier_uniform",
        "numpy_from_generator_seed",
        "seeds NumPy's generator from the torch generator and draws with NumPy",
        '''def xavier_uniform(fan_out, fan_in, generator, gain=1.0):
    """Xavier-uniform weights of shape (fan_out, fan_in)."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    rng = np.random.default_rng(seed)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return torch.from_numpy(rng.uniform(-a, a, size=(fan_out, fan_in))).float()
''',
    ),
    Alternative(
        "he_normal",
        "tensor_normal_",
        "Tensor.normal_(0, std, generator=...) on an empty tensor, the mode checked with a dict",
        '''def he_normal(fan_out, fan_in, mode, generator):
    """He-normal weights of shape (fan_out, fan_in)."""
    n = {"fan_in": fan_in, "fan_out": fan_out}[mode]
    return torch.empty(fan_out, fan_in).normal_(0.0, (2.0 / n) ** 0.5, generator=generator)
''',
    ),
    Alternative(
        "relu_like_gain",
        "hypot",
        "sqrt(2) / hypot(a_pos, a_neg), the same number written with the Euclidean norm of the slopes",
        '''def relu_like_gain(a_pos, a_neg):
    """Variance-preserving gain of a piecewise-linear activation."""
    return math.sqrt(2.0) / math.hypot(a_pos, a_neg)
''',
    ),
    Alternative(
        "relu_like_gain",
        "half_normal_moments",
        "E[phi(z)^2] for z ~ N(0, 1) from the two half-normal second moments (1/2 each), as a tensor",
        '''def relu_like_gain(a_pos, a_neg):
    """Variance-preserving gain of a piecewise-linear activation."""
    second_moment = torch.tensor(0.5 * a_pos**2 + 0.5 * a_neg**2, dtype=torch.float64)
    return 1.0 / second_moment.sqrt()
''',
    ),
    Alternative(
        "predicted_rms",
        "log_space_product",
        "sums the logarithms of the per-layer factors, written as one product after the first layer",
        '''def predicted_rms(x, layers):
    """Predicted RMS of the last pre-activations of a bias-free ReLU network."""
    variances = [s * s / (1 if kind == "normal" else 3) for kind, s, _, _ in layers]
    log_q = math.log(float((x.double() ** 2).mean()))
    log_q += math.log(layers[0][3] * variances[0])
    for (kind, s, fan_out, fan_in), v in zip(layers[1:], variances[1:]):
        log_q += math.log(0.5 * fan_in * v)
    return math.exp(0.5 * log_q)
''',
    ),
    Alternative(
        "orthogonal_from_gaussian",
        "gram_schmidt",
        "modified Gram-Schmidt in float64, which makes R's diagonal positive by construction",
        '''def orthogonal_from_gaussian(a, gain=1.0):
    """gain * Q of the QR decomposition of a (of a.T if a is wide), sign-fixed."""
    wide = a.shape[0] < a.shape[1]
    m = (a.T if wide else a).double()
    cols = []
    for j in range(m.shape[1]):
        v = m[:, j].clone()
        for q in cols:
            v = v - (q @ v) * q
        cols.append(v / v.norm())
    q = torch.stack(cols, dim=1)
    return (gain * (q.T if wide else q)).to(a.dtype)
''',
    ),
    Alternative(
        "orthogonal_from_gaussian",
        "numpy_qr",
        "NumPy's QR in float64 and the signs of R's diagonal applied by broadcasting",
        '''def orthogonal_from_gaussian(a, gain=1.0):
    """gain * Q of the QR decomposition of a (of a.T if a is wide), sign-fixed."""
    m = a.detach().double().numpy()
    wide = m.shape[0] < m.shape[1]
    q, r = np.linalg.qr(m.T if wide else m)
    q = q * np.sign(np.diag(r))
    q = q.T if wide else q
    return torch.from_numpy(gain * q).to(a.dtype)
''',
    ),
]
