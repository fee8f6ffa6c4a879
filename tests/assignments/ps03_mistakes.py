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
    # ------------------------------------------------------------------ part 7: lstm_step_jacobian
    Mistake(
        "lstm_step_jacobian",
        "cell_path_only",
        "holds the gates fixed, as chapter 3's cell path does: no route from h_(t-1) through the gates",
        '''def lstm_step_jacobian(W_ih, W_hh, b, x, h_prev, c_prev):
    """d(h_t, c_t) / d(h_{t-1}, c_{t-1}) of one LSTM step."""
    H = h_prev.shape[0]
    z = W_ih @ x + W_hh @ h_prev + b
    i, f, g, o = (z[k * H : (k + 1) * H] for k in range(4))
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    W_i, W_f, W_g, W_o = (W_hh[k * H : (k + 1) * H] for k in range(4))
    tanh_c = torch.tanh(f * c_prev + i * g)
    zero = torch.zeros(H, H, dtype=W_hh.dtype)
    top = torch.cat([zero, torch.diag(o * (1 - tanh_c**2) * f)], dim=1)
    return torch.cat([top, torch.cat([zero, torch.diag(f)], dim=1)], dim=0)
''',
    ),
    Mistake(
        "lstm_step_jacobian",
        "gate_order_ifog",
        "reads the gate blocks in the order input, forget, output, cell (another library's layout), not nn.LSTMCell's",
        '''def lstm_step_jacobian(W_ih, W_hh, b, x, h_prev, c_prev):
    """d(h_t, c_t) / d(h_{t-1}, c_{t-1}) of one LSTM step."""
    H = h_prev.shape[0]
    z = W_ih @ x + W_hh @ h_prev + b
    i, f, o, g = (z[k * H : (k + 1) * H] for k in range(4))
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    W_i, W_f, W_o, W_g = (W_hh[k * H : (k + 1) * H] for k in range(4))
    tanh_c = torch.tanh(f * c_prev + i * g)
    dc_dh = (c_prev * f * (1 - f))[:, None] * W_f + (g * i * (1 - i))[:, None] * W_i + (i * (1 - g**2))[:, None] * W_g
    through_c = o * (1 - tanh_c**2)
    dh_dh = (tanh_c * o * (1 - o))[:, None] * W_o + through_c[:, None] * dc_dh
    dh_dc = torch.diag(through_c * f)
    return torch.cat([torch.cat([dh_dh, dh_dc], dim=1), torch.cat([dc_dh, torch.diag(f)], dim=1)], dim=0)
''',
    ),
    Mistake(
        "lstm_step_jacobian",
        "c_to_h_without_forget_gate",
        "dh_t/dc_(t-1) = diag(o tanh'(c_t)): forgets that c_(t-1) reaches c_t through the forget gate",
        '''def lstm_step_jacobian(W_ih, W_hh, b, x, h_prev, c_prev):
    """d(h_t, c_t) / d(h_{t-1}, c_{t-1}) of one LSTM step."""
    H = h_prev.shape[0]
    z = W_ih @ x + W_hh @ h_prev + b
    i, f, g, o = (z[k * H : (k + 1) * H] for k in range(4))
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    W_i, W_f, W_g, W_o = (W_hh[k * H : (k + 1) * H] for k in range(4))
    tanh_c = torch.tanh(f * c_prev + i * g)
    dc_dh = (c_prev * f * (1 - f))[:, None] * W_f + (g * i * (1 - i))[:, None] * W_i + (i * (1 - g**2))[:, None] * W_g
    through_c = o * (1 - tanh_c**2)
    dh_dh = (tanh_c * o * (1 - o))[:, None] * W_o + through_c[:, None] * dc_dh
    dh_dc = torch.diag(through_c)
    return torch.cat([torch.cat([dh_dh, dh_dc], dim=1), torch.cat([dc_dh, torch.diag(f)], dim=1)], dim=0)
''',
    ),
    Mistake(
        "lstm_step_jacobian",
        "tanh_prime_at_previous_cell",
        "takes tanh' at the previous cell state c_(t-1) instead of the new one c_t",
        '''def lstm_step_jacobian(W_ih, W_hh, b, x, h_prev, c_prev):
    """d(h_t, c_t) / d(h_{t-1}, c_{t-1}) of one LSTM step."""
    H = h_prev.shape[0]
    z = W_ih @ x + W_hh @ h_prev + b
    i, f, g, o = (z[k * H : (k + 1) * H] for k in range(4))
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    W_i, W_f, W_g, W_o = (W_hh[k * H : (k + 1) * H] for k in range(4))
    tanh_c = torch.tanh(f * c_prev + i * g)
    tanh_prev = torch.tanh(c_prev)
    dc_dh = (c_prev * f * (1 - f))[:, None] * W_f + (g * i * (1 - i))[:, None] * W_i + (i * (1 - g**2))[:, None] * W_g
    through_c = o * (1 - tanh_prev**2)
    dh_dh = (tanh_c * o * (1 - o))[:, None] * W_o + through_c[:, None] * dc_dh
    dh_dc = torch.diag(through_c * f)
    return torch.cat([torch.cat([dh_dh, dh_dc], dim=1), torch.cat([dc_dh, torch.diag(f)], dim=1)], dim=0)
''',
    ),
    Mistake(
        "lstm_step_jacobian",
        "transposed",
        "returns the transpose of J_t: the state before the step along the rows, the state after it along the columns",
        '''def lstm_step_jacobian(W_ih, W_hh, b, x, h_prev, c_prev):
    """d(h_t, c_t) / d(h_{t-1}, c_{t-1}) of one LSTM step."""
    H = h_prev.shape[0]
    z = W_ih @ x + W_hh @ h_prev + b
    i, f, g, o = (z[k * H : (k + 1) * H] for k in range(4))
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    W_i, W_f, W_g, W_o = (W_hh[k * H : (k + 1) * H] for k in range(4))
    tanh_c = torch.tanh(f * c_prev + i * g)
    dc_dh = (c_prev * f * (1 - f))[:, None] * W_f + (g * i * (1 - i))[:, None] * W_i + (i * (1 - g**2))[:, None] * W_g
    through_c = o * (1 - tanh_c**2)
    dh_dh = (tanh_c * o * (1 - o))[:, None] * W_o + through_c[:, None] * dc_dh
    dh_dc = torch.diag(through_c * f)
    J = torch.cat([torch.cat([dh_dh, dh_dc], dim=1), torch.cat([dc_dh, torch.diag(f)], dim=1)], dim=0)
    return J.T
''',
    ),
    Mistake(
        "lstm_step_jacobian",
        "forward_mode_jvp",
        "builds the Jacobian column by column with torch.func.jvp (forward-mode autograd) instead of deriving it",
        '''def lstm_step_jacobian(W_ih, W_hh, b, x, h_prev, c_prev):
    """d(h_t, c_t) / d(h_{t-1}, c_{t-1}) of one LSTM step, by forward-mode autograd."""
    H = h_prev.shape[0]

    def step(state):
        z = W_ih @ x + W_hh @ state[:H] + b
        i, f, g, o = (z[k * H : (k + 1) * H] for k in range(4))
        c = torch.sigmoid(f) * state[H:] + torch.sigmoid(i) * torch.tanh(g)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c), c])

    s0 = torch.cat([h_prev, c_prev])
    cols = [torch.func.jvp(step, (s0,), (torch.eye(2 * H, dtype=s0.dtype)[m],))[1] for m in range(2 * H)]
    return torch.stack(cols, dim=1)
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
        "lstm_step_jacobian",
        "chain_through_preactivations",
        "J = A @ B with B = d(z, c_(t-1)) / d(h_(t-1), c_(t-1)) and A = d(h_t, c_t) / d(z, c_(t-1)), built as explicit matrices",
        '''def lstm_step_jacobian(W_ih, W_hh, b, x, h_prev, c_prev):
    """d(h_t, c_t) / d(h_{t-1}, c_{t-1}) of one LSTM step, as a product of two Jacobians."""
    H = h_prev.shape[0]
    dt = W_hh.dtype
    z = W_ih @ x + W_hh @ h_prev + b
    zi, zf, zg, zo = z.chunk(4)
    i, f, g, o = torch.sigmoid(zi), torch.sigmoid(zf), torch.tanh(zg), torch.sigmoid(zo)
    c = f * c_prev + i * g
    # B: (5H, 2H), the pre-activations depend on h_(t-1) through W_hh; c_(t-1) passes through
    B = torch.zeros(5 * H, 2 * H, dtype=dt)
    B[: 4 * H, :H] = W_hh
    B[4 * H :, H:] = torch.eye(H, dtype=dt)
    # A: (2H, 5H), the new state against (z_i, z_f, z_g, z_o, c_(t-1))
    dc = torch.cat([torch.diag(g * i * (1 - i)), torch.diag(c_prev * f * (1 - f)), torch.diag(i * (1 - g * g)),
                    torch.zeros(H, H, dtype=dt), torch.diag(f)], dim=1)
    dh = torch.diag(o * (1 - torch.tanh(c) ** 2)) @ dc
    dh[:, 3 * H : 4 * H] += torch.diag(torch.tanh(c) * o * (1 - o))
    return torch.cat([dh, dc], dim=0) @ B
''',
    ),
    Alternative(
        "lstm_step_jacobian",
        "entry_by_entry_float64",
        "a loop over the 2H columns in float64 under torch.no_grad(), with a torch.tensor copy that prints a warning",
        '''def lstm_step_jacobian(W_ih, W_hh, b, x, h_prev, c_prev):
    """d(h_t, c_t) / d(h_{t-1}, c_{t-1}) of one LSTM step, column by column."""
    with torch.no_grad():
        H = h_prev.shape[0]
        Whh = torch.tensor(W_hh, dtype=torch.float64)  # a copy of a tensor: PyTorch warns, the value is right
        z = W_ih.double() @ x.double() + Whh @ h_prev.double() + b.double()
        i, f = torch.sigmoid(z[:H]), torch.sigmoid(z[H : 2 * H])
        g, o = torch.tanh(z[2 * H : 3 * H]), torch.sigmoid(z[3 * H :])
        cp = c_prev.double()
        tc = torch.tanh(f * cp + i * g)
        J = torch.zeros(2 * H, 2 * H, dtype=torch.float64)
        for m in range(H):  # a unit change of h_(t-1), entry m
            dz = Whh[:, m]
            dc = cp * f * (1 - f) * dz[H : 2 * H] + g * i * (1 - i) * dz[:H] + i * (1 - g * g) * dz[2 * H : 3 * H]
            J[H:, m] = dc
            J[:H, m] = tc * o * (1 - o) * dz[3 * H :] + o * (1 - tc * tc) * dc
        for m in range(H):  # a unit change of c_(t-1), entry m
            J[H + m, H + m] = f[m]
            J[m, H + m] = o[m] * (1 - tc[m] ** 2) * f[m]
        return J.to(W_hh.dtype)
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
