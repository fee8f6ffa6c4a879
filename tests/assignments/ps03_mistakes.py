"""Realistic wrong answers to ps03_vanishing, one solution cell each.

See catalog.py for what a Mistake holds and what the grading tests prove with it.
"""

from __future__ import annotations

from assignments.catalog import Alternative, Mistake

ASSIGNMENT = "ps03_vanishing"

MISTAKES: list[Mistake] = [
    # ------------------------------------------------------------------ part 1: sigmoid_fixed_point
    Mistake(
        "sigmoid_fixed_point",
        "bound_as_value",
        "takes the chapter's bound, sigma'(0) = 1/4, as the factor: w / 4",
        '''def sigmoid_fixed_point(w):
    """(h_star, factor) of the chain h_l = sigmoid(w h_{l-1})."""
    h = 0.5
    for _ in range(10_000):
        h = 1.0 / (1.0 + math.exp(-w * h))
    return h, w / 4
''',
    ),
    Mistake(
        "sigmoid_fixed_point",
        "derivative_at_the_state",
        "evaluates sigma' at h* instead of at the pre-activation w h*: w sigma(h*)(1 - sigma(h*))",
        '''def sigmoid_fixed_point(w):
    """(h_star, factor) of the chain h_l = sigmoid(w h_{l-1})."""
    h = 0.5
    for _ in range(10_000):
        h = 1.0 / (1.0 + math.exp(-w * h))
    s = 1.0 / (1.0 + math.exp(-h))
    return h, w * s * (1 - s)
''',
    ),
    Mistake(
        "sigmoid_fixed_point",
        "forgot_the_weight",
        "the factor without the chain rule's w: h*(1 - h*)",
        '''def sigmoid_fixed_point(w):
    """(h_star, factor) of the chain h_l = sigmoid(w h_{l-1})."""
    h = 0.5
    for _ in range(10_000):
        h = 1.0 / (1.0 + math.exp(-w * h))
    return h, h * (1 - h)
''',
    ),
    Mistake(
        "sigmoid_fixed_point",
        "too_few_iterations",
        "iterates the map a fixed five times, which has not converged when w is large",
        '''def sigmoid_fixed_point(w):
    """(h_star, factor) of the chain h_l = sigmoid(w h_{l-1})."""
    h = 0.5
    for _ in range(5):
        h = 1.0 / (1.0 + math.exp(-w * h))
    return h, w * h * (1 - h)
''',
    ),
    # ------------------------------------------------------------------ part 2: layer_gradient_norms
    Mistake(
        "layer_gradient_norms",
        "ratio_upside_down",
        "returns the last layer's norm over the first layer's",
        '''def layer_gradient_norms(model, x, y):
    """Per-layer weight-gradient norms and the first/last ratio."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [m.weight for _, m in linears])
    norms = {name: g.norm().item() for (name, _), g in zip(linears, grads)}
    return norms, norms[linears[-1][0]] / norms[linears[0][0]]
''',
    ),
    Mistake(
        "layer_gradient_norms",
        "bias_included",
        "takes the norm of the gradient of the weight and the bias together",
        '''def layer_gradient_norms(model, x, y):
    """Per-layer weight-gradient norms and the first/last ratio."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    loss = F.cross_entropy(model(x), y)
    norms = {}
    for name, m in linears:
        params = list(m.parameters())
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        norms[name] = torch.cat([g.flatten() for g in grads]).norm().item()
    return norms, norms[linears[0][0]] / norms[linears[-1][0]]
''',
    ),
    Mistake(
        "layer_gradient_norms",
        "leftover_grad_accumulated",
        "calls loss.backward() without clearing .grad first, so leftover gradients are added in",
        '''def layer_gradient_norms(model, x, y):
    """Per-layer weight-gradient norms and the first/last ratio."""
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    norms = {name: m.weight.grad.norm().item() for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    names = list(norms)
    return norms, norms[names[0]] / norms[names[-1]]
''',
    ),
    # ------------------------------------------------------------------ part 3: residual_paths
    Mistake(
        "residual_paths",
        "in_place_upward_update",
        "updates c[k] += a * c[k - 1] in place for k = 1, 2, ...: c[k - 1] already includes this block",
        '''def residual_paths(weights, biases, h0):
    """Path sums c_0..c_L of a scalar residual tanh stack."""
    L = len(weights)
    c = torch.zeros(L + 1, dtype=torch.float64)
    c[0] = 1.0
    h = float(h0)
    for w, b in zip(weights.tolist(), biases.tolist()):
        t = math.tanh(w * h + b)
        a = w * (1 - t * t)
        for k in range(1, L + 1):
            c[k] += a * c[k - 1]
        h = h + t
    return c
''',
    ),
    Mistake(
        "residual_paths",
        "slope_at_the_new_state",
        "takes block l's branch derivative at h_l, after the block, instead of at h_{l-1}",
        '''def residual_paths(weights, biases, h0):
    """Path sums c_0..c_L of a scalar residual tanh stack."""
    L = len(weights)
    c = torch.zeros(L + 1, dtype=torch.float64)
    c[0] = 1.0
    h = float(h0)
    for w, b in zip(weights.tolist(), biases.tolist()):
        h = h + math.tanh(w * h + b)
        t = math.tanh(w * h + b)
        a = w * (1 - t * t)
        c[1:] = c[1:] + a * c[:-1].clone()
    return c
''',
    ),
    Mistake(
        "residual_paths",
        "forgot_the_weight",
        "the branch derivative without its weight: 1 - tanh^2 only",
        '''def residual_paths(weights, biases, h0):
    """Path sums c_0..c_L of a scalar residual tanh stack."""
    L = len(weights)
    c = torch.zeros(L + 1, dtype=torch.float64)
    c[0] = 1.0
    h = float(h0)
    for w, b in zip(weights.tolist(), biases.tolist()):
        t = math.tanh(w * h + b)
        c[1:] = c[1:] + (1 - t * t) * c[:-1].clone()
        h = h + t
    return c
''',
    ),
    Mistake(
        "residual_paths",
        "binomial_of_the_mean",
        "uses C(L, k) times the mean slope to the k: right only when every block has the same slope",
        '''def residual_paths(weights, biases, h0):
    """Path sums c_0..c_L of a scalar residual tanh stack."""
    slopes, h = [], float(h0)
    for w, b in zip(weights.tolist(), biases.tolist()):
        t = math.tanh(w * h + b)
        slopes.append(w * (1 - t * t))
        h = h + t
    a, L = sum(slopes) / len(slopes), len(slopes)
    return torch.tensor([math.comb(L, k) * a**k for k in range(L + 1)], dtype=torch.float64)
''',
    ),
    # ------------------------------------------------------------------ part 4: stalled_layers
    Mistake(
        "stalled_layers",
        "comparison_inverted",
        "keeps the layers whose median ratio is above the threshold: the ones that are learning",
        '''def stalled_layers(update_ratios, threshold=1e-6):
    """Names whose median update-to-data ratio is below threshold."""
    out = []
    for name, ratios in update_ratios.items():
        values = np.asarray(ratios, dtype=np.float64)
        values = values[~np.isnan(values)]
        if values.size and np.median(values) > threshold:
            out.append(name)
    return out
''',
    ),
    Mistake(
        "stalled_layers",
        "mean_instead_of_median",
        "averages the ratios over the steps, so one large step hides a stalled layer",
        '''def stalled_layers(update_ratios, threshold=1e-6):
    """Names whose median update-to-data ratio is below threshold."""
    out = []
    for name, ratios in update_ratios.items():
        values = np.asarray(ratios, dtype=np.float64)
        values = values[~np.isnan(values)]
        if values.size and values.mean() < threshold:
            out.append(name)
    return out
''',
    ),
    Mistake(
        "stalled_layers",
        "nan_not_ignored",
        "takes torch.median over all steps: a NaN step makes the median NaN and the layer is never reported",
        '''def stalled_layers(update_ratios, threshold=1e-6):
    """Names whose median update-to-data ratio is below threshold."""
    out = []
    for name, ratios in update_ratios.items():
        median = torch.as_tensor(ratios, dtype=torch.float64).median()
        if median < threshold:
            out.append(name)
    return out
''',
    ),
    Mistake(
        "stalled_layers",
        "sorted_by_name",
        "returns the names sorted alphabetically (hidden10 before hidden2) instead of in the dict's order",
        '''def stalled_layers(update_ratios, threshold=1e-6):
    """Names whose median update-to-data ratio is below threshold."""
    out = []
    for name, ratios in update_ratios.items():
        values = np.asarray(ratios, dtype=np.float64)
        values = values[~np.isnan(values)]
        if values.size and np.median(values) < threshold:
            out.append(name)
    return sorted(out)
''',
    ),
    # ------------------------------------------------------------------ part 5: memory_baseline
    Mistake(
        "memory_baseline",
        "one_marker_seen_counts_for_nothing",
        "gives the error 1/6 unless both markers are in the window, ignoring what one seen value tells",
        '''def memory_baseline(T, k):
    """Best mean squared error on the adding problem with a memory of the last k steps."""
    both = k * (k - 1) / 2
    return (1 - both / (T * (T - 1) / 2)) / 6
''',
    ),
    Mistake(
        "memory_baseline",
        "both_must_be_seen_quadratic",
        "(1 - k/T)^2 / 6: squares the unseen fraction, as if the error needed both markers unseen",
        '''def memory_baseline(T, k):
    """Best mean squared error on the adding problem with a memory of the last k steps."""
    return (1 - k / T) ** 2 / 6
''',
    ),
    Mistake(
        "memory_baseline",
        "unseen_value_variance_one_sixth",
        "charges 1/6, the variance of the sum of two values, for each unseen marked value instead of 1/12",
        '''def memory_baseline(T, k):
    """Best mean squared error on the adding problem with a memory of the last k steps."""
    pairs = T * (T - 1) / 2
    one = k * (T - k)
    none = (T - k) * (T - k - 1) / 2
    return (one / 6 + none / 3) / pairs
''',
    ),
    Mistake(
        "memory_baseline",
        "window_one_step_too_long",
        "counts the window as steps T - k - 1 .. T - 1 (k + 1 steps) when enumerating the pairs",
        '''def memory_baseline(T, k):
    """Best mean squared error on the adding problem with a memory of the last k steps."""
    total, count = 0.0, 0
    for i in range(T):
        for j in range(i + 1, T):
            inside = (i >= T - k - 1) + (j >= T - k - 1)
            total += [1 / 6, 1 / 12, 0.0][inside]
            count += 1
    return total / count
''',
    ),
    # ------------------------------------------------------------------ part 6: rnn_jacobian
    Mistake(
        "rnn_jacobian",
        "product_in_wrong_order",
        "multiplies the step Jacobians with the first step on the left: J_1 J_2 ... J_T",
        '''def rnn_jacobian(W_hh, hs):
    """dh_T/dh_0 of a tanh RNN."""
    J = torch.eye(W_hh.shape[0], dtype=W_hh.dtype)
    for h in hs:
        J = J @ (torch.diag(1 - h**2) @ W_hh)
    return J
''',
    ),
    Mistake(
        "rnn_jacobian",
        "diagonal_on_the_right",
        "uses W_hh diag(1 - h_t^2) for one step's Jacobian instead of diag(1 - h_t^2) W_hh",
        '''def rnn_jacobian(W_hh, hs):
    """dh_T/dh_0 of a tanh RNN."""
    J = torch.eye(W_hh.shape[0], dtype=W_hh.dtype)
    for h in hs:
        J = (W_hh @ torch.diag(1 - h**2)) @ J
    return J
''',
    ),
    Mistake(
        "rnn_jacobian",
        "forgot_tanh_derivative",
        "leaves out tanh': returns W_hh to the power T",
        '''def rnn_jacobian(W_hh, hs):
    """dh_T/dh_0 of a tanh RNN."""
    return torch.linalg.matrix_power(W_hh, hs.shape[0])
''',
    ),
    Mistake(
        "rnn_jacobian",
        "calls_autograd",
        "asks autograd for the Jacobian of the linearised chain instead of multiplying the step Jacobians",
        '''def rnn_jacobian(W_hh, hs):
    """dh_T/dh_0 of a tanh RNN."""
    def chain(v):
        for h in hs:
            v = (1 - h**2) * (W_hh @ v)
        return v

    return torch.autograd.functional.jacobian(chain, torch.zeros(W_hh.shape[0], dtype=W_hh.dtype))
''',
    ),
    # ------------------------------------------------------------------ part 7: cell_path_gradient
    Mistake(
        "cell_path_gradient",
        "sum_of_gates",
        "adds the forget gates over time instead of multiplying them",
        '''def cell_path_gradient(forget, grad_c_T):
    """dL/dc_0 along an LSTM's cell path."""
    return grad_c_T * forget.sum(dim=1)
''',
    ),
    Mistake(
        "cell_path_gradient",
        "first_gate_dropped",
        "an off-by-one: multiplies the gates f_2 .. f_T only, leaving out f_1",
        '''def cell_path_gradient(forget, grad_c_T):
    """dL/dc_0 along an LSTM's cell path."""
    return grad_c_T * forget[:, 1:].prod(dim=1)
''',
    ),
    Mistake(
        "cell_path_gradient",
        "last_gate_only",
        "back-propagates through the last step only: grad_c_T * f_T",
        '''def cell_path_gradient(forget, grad_c_T):
    """dL/dc_0 along an LSTM's cell path."""
    return grad_c_T * forget[:, -1]
''',
    ),
    Mistake(
        "cell_path_gradient",
        "calls_autograd",
        "runs the recurrence c_t = f_t * c_{t-1} and back-propagates through it with autograd",
        '''def cell_path_gradient(forget, grad_c_T):
    """dL/dc_0 along an LSTM's cell path."""
    c0 = torch.zeros_like(grad_c_T, requires_grad=True)
    c = c0
    for t in range(forget.shape[1]):
        c = forget[:, t] * c
    (grad,) = torch.autograd.grad(c, c0, grad_outputs=grad_c_T)
    return grad
''',
    ),
    # ------------------------------------------------------------------ part 8: saturation_fractions
    Mistake(
        "saturation_fractions",
        "one_sided",
        "counts only the outputs near 1, not those near 0",
        '''def saturation_fractions(model, x, eps=0.01):
    """Saturated fraction of every nn.Sigmoid's outputs."""
    fractions, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, nn.Sigmoid):
            def hook(module, inputs, output, name=name):
                fractions[name] = (output > 1 - eps).double().mean().item()
            handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return fractions
''',
    ),
    Mistake(
        "saturation_fractions",
        "percentage",
        "returns percentages (0-100) instead of fractions",
        '''def saturation_fractions(model, x, eps=0.01):
    """Saturated fraction of every nn.Sigmoid's outputs."""
    fractions, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, nn.Sigmoid):
            def hook(module, inputs, output, name=name):
                fractions[name] = 100 * ((output < eps) | (output > 1 - eps)).double().mean().item()
            handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return fractions
''',
    ),
    Mistake(
        "saturation_fractions",
        "units_saturated_on_every_example",
        "counts the units that are saturated on every example (the dead-ReLU definition) instead of all entries",
        '''def saturation_fractions(model, x, eps=0.01):
    """Saturated fraction of every nn.Sigmoid's outputs."""
    fractions, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, nn.Sigmoid):
            def hook(module, inputs, output, name=name):
                saturated = (output < eps) | (output > 1 - eps)
                fractions[name] = saturated.all(dim=0).double().mean().item()
            handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return fractions
''',
    ),
    Mistake(
        "saturation_fractions",
        "ignores_eps",
        "uses the usual 0.01 whatever eps it is given",
        '''def saturation_fractions(model, x, eps=0.01):
    """Saturated fraction of every nn.Sigmoid's outputs."""
    fractions, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, nn.Sigmoid):
            def hook(module, inputs, output, name=name):
                fractions[name] = ((output < 0.01) | (output > 0.99)).double().mean().item()
            handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return fractions
''',
    ),
    Mistake(
        "saturation_fractions",
        "uses_the_course_monitor",
        "lets the course's GradientMonitor measure the fractions instead of writing the hooks",
        '''def saturation_fractions(model, x, eps=0.01):
    """Saturated fraction of every nn.Sigmoid's outputs, as the course's monitor records it."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Sigmoid)]
    with GradientMonitor(model, MonitorConfig(saturation_eps=eps), layers=names) as mon:
        model(x).sum().backward()
        mon.record_step()
    model.zero_grad(set_to_none=True)
    return dict(zip(names, mon.record.matrix("saturated", names)[:, 0].tolist()))
''',
    ),
]

ALTERNATIVES: list[Alternative] = [
    Alternative(
        "sigmoid_fixed_point",
        "newton",
        "Newton's method on h - sigmoid(w h) = 0, and the factor written as w sigma'(w h*) with torch.sigmoid",
        '''def sigmoid_fixed_point(w):
    """(h_star, factor) of the chain h_l = sigmoid(w h_{l-1})."""
    h = 0.5
    for _ in range(100):
        s = 1.0 / (1.0 + math.exp(-w * h))
        h = h - (h - s) / (1.0 - w * s * (1.0 - s))
    s = torch.sigmoid(torch.tensor(w * h, dtype=torch.float64)).item()
    return float(h), float(w * s * (1.0 - s))
''',
    ),
    Alternative(
        "sigmoid_fixed_point",
        "bisection",
        "bisection on [0, 1], where sigmoid(w h) - h changes sign once",
        '''def sigmoid_fixed_point(w):
    """(h_star, factor) of the chain h_l = sigmoid(w h_{l-1})."""
    lo, hi = 0.0, 1.0
    while hi - lo > 1e-15:
        mid = (lo + hi) / 2
        if 1.0 / (1.0 + math.exp(-w * mid)) > mid:
            lo = mid
        else:
            hi = mid
    h = (lo + hi) / 2
    return h, w * h * (1 - h)
''',
    ),
    Alternative(
        "layer_gradient_norms",
        "backward_on_a_copy",
        "loss.backward() on a deep copy whose .grad was cleared, then each weight's .grad with linalg.matrix_norm",
        '''def layer_gradient_norms(model, x, y):
    """({name: ||dL/dW||_F}, first / last)."""
    import copy

    model = copy.deepcopy(model)
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    norms = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            norms[name] = float(torch.linalg.matrix_norm(m.weight.grad))
    names = list(norms)
    return norms, norms[names[0]] / norms[names[-1]]
''',
    ),
    Alternative(
        "residual_paths",
        "polynomial_product",
        "multiplies the polynomials (1 + a_l t) with numpy.convolve: the coefficients are the c_k",
        '''def residual_paths(weights, biases, h0):
    """Path sums c_0..c_L of a scalar residual tanh stack."""
    import numpy as np

    poly, h = np.array([1.0]), float(h0)
    for w, b in zip(weights.double().tolist(), biases.double().tolist()):
        t = math.tanh(w * h + b)
        poly = np.convolve(poly, [1.0, w * (1 - t * t)])
        h += t
    return torch.tensor(poly)
''',
    ),
    Alternative(
        "residual_paths",
        "downward_in_place",
        "updates the sums in place from the longest path down, under torch.no_grad()",
        '''def residual_paths(weights, biases, h0):
    """Path sums c_0..c_L of a scalar residual tanh stack."""
    with torch.no_grad():
        L = len(weights)
        c = torch.zeros(L + 1, dtype=torch.float64)
        c[0] = 1
        h = torch.tensor(h0, dtype=torch.float64)
        for l in range(L):
            z = weights[l].double() * h + biases[l].double()
            a = weights[l].double() / torch.cosh(z) ** 2
            for k in range(l + 1, 0, -1):
                c[k] += a * c[k - 1]
            h = h + torch.tanh(z)
        return c
''',
    ),
    Alternative(
        "stalled_layers",
        "torch_nanmedian_lower",
        "torch.nanmedian, which takes the lower middle value for an even count (allowed by the description)",
        '''def stalled_layers(update_ratios, threshold=1e-6):
    """Names whose median non-NaN update ratio is below threshold."""
    out = []
    for name, r in update_ratios.items():
        t = torch.as_tensor(r, dtype=torch.float64).reshape(-1)
        if bool(torch.isnan(t).all()):
            continue
        if torch.nanmedian(t).item() < threshold:
            out.append(name)
    return out
''',
    ),
    Alternative(
        "memory_baseline",
        "linearity_of_expectation",
        "each marked value the predictor misses costs its variance 1/12, and a marker is missed with probability 1 - k/T",
        '''def memory_baseline(T, k):
    """Best mean squared error on the adding problem with a memory of the last k steps."""
    return 2 * (1 - k / T) / 12
''',
    ),
    Alternative(
        "memory_baseline",
        "enumerate_pairs_with_fractions",
        "averages the error over every pair of marked steps, exactly, with fractions.Fraction",
        '''def memory_baseline(T, k):
    """Best mean squared error on the adding problem with a memory of the last k steps."""
    from fractions import Fraction

    errors = []
    for i in range(T):
        for j in range(i + 1, T):
            unseen = (i < T - k) + (j < T - k)
            errors.append(Fraction(unseen, 12))
    return float(sum(errors) / len(errors))
''',
    ),
    Alternative(
        "rnn_jacobian",
        "transposed_accumulation",
        "accumulates the transpose J^T = J_1^T ... J_T^T with the diagonal applied as columns, then transposes back",
        '''def rnn_jacobian(W_hh, hs):
    """dh_T/dh_0 of a tanh RNN from W_hh and the states h_1..h_T."""
    Jt = torch.eye(W_hh.shape[0], dtype=torch.float64)
    for h in hs.double():
        Jt = Jt @ (W_hh.double().T * (1 - h**2)[None, :])
    return Jt.T.to(W_hh.dtype)
''',
    ),
    Alternative(
        "cell_path_gradient",
        "log_space",
        "the product of the gates through a sum of logarithms (the gates are positive), with a torch.tensor copy "
        "that prints a warning",
        '''def cell_path_gradient(forget, grad_c_T):
    """dL/dc_0 along the cell path."""
    f = torch.tensor(forget, dtype=torch.float64)
    return (grad_c_T.double() * torch.exp(torch.log(f).sum(dim=1))).to(grad_c_T.dtype)
''',
    ),
    Alternative(
        "saturation_fractions",
        "record_outputs_then_count",
        "keeps every sigmoid output with its hook and counts afterwards with torch.logical_or",
        '''def saturation_fractions(model, x, eps=0.01):
    """Saturated fraction of every nn.Sigmoid's outputs."""
    outputs, handles = {}, []
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Sigmoid)]
    modules = dict(model.named_modules())
    for name in names:
        handles.append(modules[name].register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o)))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    result = {}
    for name in names:
        o = outputs[name].detach()
        result[name] = torch.logical_or(o < eps, o > 1 - eps).sum().item() / o.numel()
    return result
''',
    ),
]
