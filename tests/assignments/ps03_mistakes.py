"""Realistic wrong answers to ps03_vanishing, one solution cell each.

See catalog.py for what a Mistake holds and what the grading tests prove with it.
"""

from __future__ import annotations

from assignments.catalog import Mistake

ASSIGNMENT = "ps03_vanishing"

MISTAKES: list[Mistake] = [
    # ------------------------------------------------------------------ part 1: sigmoid_chain_bound
    Mistake(
        "sigmoid_chain_bound",
        "max_derivative_one_half",
        "takes the largest value of sigma' as 1/2 (the value of sigma(0)) instead of 1/4",
        '''def sigmoid_chain_bound(weights):
    """Upper bound on ||dh_L/dh_0||_2 for a stack of sigmoid layers."""
    bound = 1.0
    for W in weights:
        bound *= torch.linalg.matrix_norm(W.double(), ord=2).item() / 2
    return bound
''',
    ),
    Mistake(
        "sigmoid_chain_bound",
        "frobenius_norm",
        "uses the Frobenius norm (W.norm()) instead of the spectral norm",
        '''def sigmoid_chain_bound(weights):
    """Upper bound on ||dh_L/dh_0||_2 for a stack of sigmoid layers."""
    bound = 1.0
    for W in weights:
        bound *= W.double().norm().item() / 4
    return bound
''',
    ),
    Mistake(
        "sigmoid_chain_bound",
        "one_quarter_in_total",
        "multiplies the spectral norms and divides by 4 once, instead of once per layer",
        '''def sigmoid_chain_bound(weights):
    """Upper bound on ||dh_L/dh_0||_2 for a stack of sigmoid layers."""
    bound = 1.0
    for W in weights:
        bound *= torch.linalg.matrix_norm(W.double(), ord=2).item()
    return bound / 4
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
    # ------------------------------------------------------------------ part 3: residual_block
    Mistake(
        "residual_block",
        "forgot_skip_connection",
        "forward returns activation(linear(h)): a plain layer, without the skip connection",
        '''class ResidualBlock(nn.Module):
    """h -> h + activation(linear(h))."""

    def __init__(self, width, activation):
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.activation = activation

    def forward(self, h):
        return self.activation(self.linear(h))
''',
    ),
    Mistake(
        "residual_block",
        "skip_inside_activation",
        "adds the input before the activation: activation(h + linear(h))",
        '''class ResidualBlock(nn.Module):
    """h -> h + activation(linear(h))."""

    def __init__(self, width, activation):
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.activation = activation

    def forward(self, h):
        return self.activation(h + self.linear(h))
''',
    ),
    Mistake(
        "residual_block",
        "linear_created_in_forward",
        "creates the nn.Linear inside forward, so the block has no parameters and new weights at every call",
        '''class ResidualBlock(nn.Module):
    """h -> h + activation(linear(h))."""

    def __init__(self, width, activation):
        super().__init__()
        self.width = width
        self.activation = activation

    def forward(self, h):
        linear = nn.Linear(self.width, self.width)
        return h + self.activation(linear(h))
''',
    ),
    Mistake(
        "residual_block",
        "ignores_activation_argument",
        "always uses ReLU, whatever activation the block is given",
        '''class ResidualBlock(nn.Module):
    """h -> h + activation(linear(h))."""

    def __init__(self, width, activation):
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, h):
        return h + torch.relu(self.linear(h))
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
    # ------------------------------------------------------------------ part 5: adding_problem
    Mistake(
        "adding_problem",
        "marker_placed_twice",
        "draws the two marker positions independently, so sometimes both land on the same step",
        '''def adding_problem(n, T, generator):
    """A batch of the adding problem."""
    values = torch.rand(n, T, generator=generator)
    first = torch.randint(0, T, (n,), generator=generator)
    second = torch.randint(0, T, (n,), generator=generator)
    markers = torch.zeros(n, T)
    markers[torch.arange(n), first] = 1.0
    markers[torch.arange(n), second] = 1.0
    y = (values * markers).sum(dim=1, keepdim=True)
    return torch.stack([values, markers], dim=-1), y
''',
    ),
    Mistake(
        "adding_problem",
        "last_step_never_marked",
        "an off-by-one in randint's exclusive upper bound: the last step is never marked",
        '''def adding_problem(n, T, generator):
    """A batch of the adding problem."""
    values = torch.rand(n, T, generator=generator)
    first = torch.randint(0, T - 1, (n,), generator=generator)
    second = torch.randint(0, T - 2, (n,), generator=generator) if T > 2 else torch.zeros(n, dtype=torch.long)
    second = second + (second >= first).long()
    markers = torch.zeros(n, T)
    markers[torch.arange(n), first] = 1.0
    markers[torch.arange(n), second] = 1.0
    y = (values * markers).sum(dim=1, keepdim=True)
    return torch.stack([values, markers], dim=-1), y
''',
    ),
    Mistake(
        "adding_problem",
        "global_random_state",
        "ignores the generator and draws from PyTorch's global random state",
        '''def adding_problem(n, T, generator):
    """A batch of the adding problem."""
    values = torch.rand(n, T)
    first = torch.randint(0, T, (n,))
    second = torch.randint(0, T - 1, (n,))
    second = second + (second >= first).long()
    markers = torch.zeros(n, T)
    markers[torch.arange(n), first] = 1.0
    markers[torch.arange(n), second] = 1.0
    y = (values * markers).sum(dim=1, keepdim=True)
    return torch.stack([values, markers], dim=-1), y
''',
    ),
    Mistake(
        "adding_problem",
        "target_is_mean",
        "the target is the mean of the two marked values instead of their sum",
        '''def adding_problem(n, T, generator):
    """A batch of the adding problem."""
    values = torch.rand(n, T, generator=generator)
    first = torch.randint(0, T, (n,), generator=generator)
    second = torch.randint(0, T - 1, (n,), generator=generator)
    second = second + (second >= first).long()
    markers = torch.zeros(n, T)
    markers[torch.arange(n), first] = 1.0
    markers[torch.arange(n), second] = 1.0
    y = (values * markers).sum(dim=1, keepdim=True) / 2
    return torch.stack([values, markers], dim=-1), y
''',
    ),
    # ------------------------------------------------------------------ part 6: best_constant_mse
    Mistake(
        "best_constant_mse",
        "sample_variance",
        "divides by N - 1 (the sample variance) instead of N",
        '''def best_constant_mse(y):
    """(c, mse) of the best constant predictor."""
    y = y.double().flatten()
    c = y.mean()
    return c.item(), (((y - c) ** 2).sum() / (y.numel() - 1)).item()
''',
    ),
    Mistake(
        "best_constant_mse",
        "predicts_zero",
        "returns the mean of y^2, the loss of predicting 0, not of predicting the mean",
        '''def best_constant_mse(y):
    """(c, mse) of the best constant predictor."""
    y = y.double()
    return y.mean().item(), (y**2).mean().item()
''',
    ),
    Mistake(
        "best_constant_mse",
        "returns_std",
        "returns the standard deviation (a square root too many) instead of the mean squared error",
        '''def best_constant_mse(y):
    """(c, mse) of the best constant predictor."""
    y = y.double()
    c = y.mean()
    return c.item(), ((y - c) ** 2).mean().sqrt().item()
''',
    ),
    Mistake(
        "best_constant_mse",
        "calls_torch_var",
        "calls the built-in population variance (torch.var with correction=0) instead of the formula",
        '''def best_constant_mse(y):
    """(c, mse) of the best constant predictor."""
    y = y.double()
    return y.mean().item(), torch.var(y, correction=0).item()
''',
    ),
    # ------------------------------------------------------------------ part 7: rnn_jacobian
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
    # ------------------------------------------------------------------ part 8: cell_path_gradient
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
    # ------------------------------------------------------------------ part 9: saturation_fractions
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
        "hooks_left_attached",
        "never removes the forward hooks it registered",
        '''def saturation_fractions(model, x, eps=0.01):
    """Saturated fraction of every nn.Sigmoid's outputs."""
    fractions = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Sigmoid):
            def hook(module, inputs, output, name=name):
                fractions[name] = ((output < eps) | (output > 1 - eps)).double().mean().item()
            module.register_forward_hook(hook)
    with torch.no_grad():
        model(x)
    return fractions
''',
    ),
]
